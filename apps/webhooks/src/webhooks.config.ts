import { CommonSettings, ConfigError, EnvReader, readCommonSettings } from '@smart-router/config';
import { BasicCredential, parseBasicCredentials } from '@smart-router/providers';

export interface WebhooksConfig {
  common: CommonSettings;
  port: number;
  /** Twilio auth tokens (several during rotation); empty = signatures not checked (local default). */
  twilioAuthTokens: string[];
  /** Plivo auth tokens; empty = X-Plivo-Signature-V3 not checked. */
  plivoAuthTokens: string[];
  /** Basic credentials Exotel must present; empty = not checked. */
  exotelCredentials: BasicCredential[];
  /**
   * The base URL providers call (scheme, host, optional path prefix). The
   * signed URL is this + the request's path and query. Unset: rebuilt from
   * X-Forwarded-Proto/-Host (behind the gateway) or Host.
   */
  publicBaseUrl?: string;
  /** How long an answer webhook waits for a pod when none is free (SPEC 9.1), ms. */
  waitMs: number;
  otlpEndpoint?: string;
}

function readPublicBaseUrl(env: EnvReader): string | undefined {
  const text = env.optionalString('PUBLIC_BASE_URL');
  if (text === undefined) return undefined;
  const url = env.url('PUBLIC_BASE_URL', text, ['http:', 'https:']);
  const parsed = new URL(url);
  if (parsed.search !== '' || parsed.hash !== '') throw new ConfigError('PUBLIC_BASE_URL', 'must not have a query or fragment (the request adds its own)');
  return url;
}

export function readWebhooksConfig(env = new EnvReader()): WebhooksConfig {
  let exotelCredentials: BasicCredential[];
  try {
    exotelCredentials = parseBasicCredentials(env.list('EXOTEL_CREDENTIALS'));
  } catch (error) {
    // The message names the entry's position, never its value: it is a secret.
    throw new ConfigError('EXOTEL_CREDENTIALS', (error as Error).message);
  }
  return {
    common: readCommonSettings(env),
    port: env.port('HTTP_PORT', 8081),
    twilioAuthTokens: env.list('TWILIO_AUTH_TOKENS'),
    plivoAuthTokens: env.list('PLIVO_AUTH_TOKENS'),
    exotelCredentials,
    publicBaseUrl: readPublicBaseUrl(env),
    waitMs: env.int('WEBHOOK_WAIT_MS', 3000, { min: 0, max: 10000 }),
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
  };
}
