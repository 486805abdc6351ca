import 'reflect-metadata';
import { Env, EnvReader } from '@smart-router/config';
import { runMain, startHttpApp } from '@smart-router/http';
import { JsonLogger, Telemetry } from '@smart-router/telemetry';
import { AppModule } from './app.module';
import { readReconcilerConfig } from './reconciler.config';

export async function bootstrap(env: Env = process.env) {
  const config = readReconcilerConfig(new EnvReader(env));
  const logger = new JsonLogger('reconciler', config.common.logLevel);
  const telemetry = Telemetry.start('reconciler', config.otlpEndpoint);
  const app = await startHttpApp({ module: AppModule.register(config, telemetry, logger), logger, host: config.common.host, port: config.port, exportSpans: telemetry.exportsSpans, trustedProxies: config.common.trustedProxies });
  logger.info('reconciler listening', { url: `http://${config.common.host}:${config.port}`, consumer: config.consumer });
  return app;
}

if (require.main === module) runMain('reconciler', () => bootstrap());
