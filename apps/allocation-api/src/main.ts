import 'reflect-metadata';
import { CallerAuthenticator, runMain, startHttpApp } from '@smart-router/http';
import { JsonLogger, Telemetry } from '@smart-router/telemetry';
import { PoolMetrics } from '@smart-router/pool-state';
import { EnvReader, Env } from '@smart-router/config';
import { readAllocationApiConfig } from './allocation-api.config';
import { AppModule } from './app.module';

export async function bootstrap(env: Env = process.env) {
  const config = readAllocationApiConfig(new EnvReader(env));
  const logger = new JsonLogger('allocation-api', config.common.logLevel);
  const telemetry = Telemetry.start('allocation-api', config.otlpEndpoint);
  const app = await startHttpApp({
    module: AppModule.register(config, telemetry),
    logger,
    host: config.common.host,
    port: config.port,
    countError: (status, code) => app.get(PoolMetrics).httpError(status, code),
    exportSpans: telemetry.exportsSpans,
  });
  logger.info('allocation-api listening', { url: `http://${config.common.host}:${config.port}`, auth: app.get(CallerAuthenticator).describe() });
  return app;
}

if (require.main === module) runMain('allocation-api', () => bootstrap());
