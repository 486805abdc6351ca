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
    trustedProxies: config.common.trustedProxies,
  });
  logger.info('allocation-api listening', { url: `http://${config.common.host}:${config.port}`, auth: app.get(CallerAuthenticator).describe() });
  if (config.apiTokens.length === 0 && config.allowUnauthenticated) {
    // Open mode (SPEC 10.1): without the flag and without AGENT_TOKEN_AUDIENCE the config refused to start.
    logger.warn('allocation-api is OPEN (ALLOW_UNAUTHENTICATED=true): POST /api/v1/allocate, /api/v1/release and /api/v1/connected accept callers without a token (API_TOKENS empty); a voice agent\'s token is still held to its pod');
  }
  // SPEC 10.1: whether ws_urls are credentials here (the value itself is never logged).
  logger.info('media URLs', { media_urls: config.common.mediaUrl.secrets.length > 0 ? `signed, expiring after ${config.common.mediaUrl.ttlSeconds} s` : 'UNSIGNED: no MEDIA_URL_SECRET configured (seed URL format)' });
  return app;
}

if (require.main === module) runMain('allocation-api', () => bootstrap());
