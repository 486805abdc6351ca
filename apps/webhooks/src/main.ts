import 'reflect-metadata';
import { runMain, startHttpApp } from '@smart-router/http';
import { JsonLogger, Telemetry } from '@smart-router/telemetry';
import { PoolMetrics } from '@smart-router/pool-state';
import { EnvReader, Env } from '@smart-router/config';
import { PROVIDER_SECRETS, ProviderName, readWebhooksConfig } from './webhooks.config';
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
    trustedProxies: config.common.trustedProxies,
  });
  const configured = { twilio: config.twilioAuthTokens.length, plivo: config.plivoAuthTokens.length, exotel: config.exotelCredentials.length };
  const checks = { twilio: 'X-Twilio-Signature', plivo: 'X-Plivo-Signature-V3', exotel: 'basic credentials' };
  const state = (name: ProviderName) =>
    !config.providers.includes(name) ? 'disabled (PROVIDERS): its routes answer 404' : configured[name] > 0 ? `${checks[name]} required (${configured[name]} configured)` : 'OPEN: not checked';
  logger.info('webhooks listening', {
    url: `http://${config.common.host}:${config.port}`,
    twilio: state('twilio'),
    plivo: state('plivo'),
    exotel: state('exotel'),
    signedUrl: config.publicBaseUrl ?? 'from X-Forwarded-Proto/-Host of TRUSTED_PROXIES, else Host (PUBLIC_BASE_URL unset)',
  });
  const open = config.providers.filter((name) => configured[name] === 0);
  if (open.length > 0) {
    // Reached only in open mode (SPEC 10.1): without the flag the config refused to start.
    logger.warn(`webhooks are OPEN (ALLOW_UNAUTHENTICATED=true): ${open.map((name) => `/api/v1/${name}/... and /agent/voice/breeze-buddy/${name}/...`).join(', ')} accept unsigned requests (${open.map((name) => PROVIDER_SECRETS[name]).join(', ')} empty)`);
  }
  return app;
}

if (require.main === module) runMain('webhooks', () => bootstrap());
