import 'reflect-metadata';
import { runMain, startHttpApp } from '@smart-router/http';
import { JsonLogger, Telemetry } from '@smart-router/telemetry';
import { PoolMetrics } from '@smart-router/pool-state';
import { EnvReader, Env } from '@smart-router/config';
import { readWebhooksConfig } from './webhooks.config';
import { AppModule } from './app.module';

export async function bootstrap(env: Env = process.env) {
  const config = readWebhooksConfig(new EnvReader(env));
  const logger = new JsonLogger('webhooks', config.common.logLevel);
  const telemetry = Telemetry.start('webhooks', config.otlpEndpoint);
  const app = await startHttpApp({
    module: AppModule.register(config, telemetry, logger),
    logger,
    host: config.common.host,
    port: config.port,
    // Signatures are computed over the bytes the provider sent.
    rawBody: true,
    countError: (status, code) => app.get(PoolMetrics).httpError(status, code),
    exportSpans: telemetry.exportsSpans,
  });
  const open = (configured: number, what: string) => (configured > 0 ? `${what} required (${configured} configured)` : 'OPEN: not checked');
  logger.info('webhooks listening', {
    url: `http://${config.common.host}:${config.port}`,
    twilio: open(config.twilioAuthTokens.length, 'X-Twilio-Signature'),
    plivo: open(config.plivoAuthTokens.length, 'X-Plivo-Signature-V3'),
    exotel: open(config.exotelCredentials.length, 'basic credentials'),
    signedUrl: config.publicBaseUrl ?? 'from X-Forwarded-Proto/-Host or Host (PUBLIC_BASE_URL unset)',
  });
  return app;
}

if (require.main === module) runMain('webhooks', () => bootstrap());
