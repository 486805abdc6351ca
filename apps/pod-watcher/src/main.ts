import 'reflect-metadata';
import { Env, EnvReader } from '@smart-router/config';
import { runMain, startHttpApp } from '@smart-router/http';
import { JsonLogger, Telemetry } from '@smart-router/telemetry';
import { AppModule } from './app.module';
import { readPodWatcherConfig } from './pod-watcher.config';

export async function bootstrap(env: Env = process.env) {
  const config = readPodWatcherConfig(new EnvReader(env));
  const logger = new JsonLogger('pod-watcher', config.logLevel);
  const telemetry = Telemetry.start('pod-watcher', config.otlpEndpoint);
  const app = await startHttpApp({ module: AppModule.register(config, telemetry, logger), logger, host: config.host, port: config.port, exportSpans: telemetry.exportsSpans, trustedProxies: config.trustedProxies });
  logger.info('pod-watcher listening', { url: `http://${config.host}:${config.port}`, identity: config.identity, namespace: config.namespace, selector: config.labelSelector });
  return app;
}

if (require.main === module) runMain('pod-watcher', () => bootstrap());
