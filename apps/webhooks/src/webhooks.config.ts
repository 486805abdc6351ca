import { CommonSettings, ConfigError, EnvReader, readAllowUnauthenticated, readCommonSettings, requireCredential } from '@smart-router/config';
import { BasicCredential, parseBasicCredentials } from '@smart-router/providers';

/** The providers this app knows; `PROVIDERS` enables a subset (SPEC 10.1). */
export const PROVIDER_NAMES = ['twilio', 'plivo', 'exotel'] as const;
export type ProviderName = (typeof PROVIDER_NAMES)[number];

/** The secret each provider's webhooks are checked with. */
export const PROVIDER_SECRETS: Record<ProviderName, string> = { twilio: 'TWILIO_AUTH_TOKENS', plivo: 'PLIVO_AUTH_TOKENS', exotel: 'EXOTEL_CREDENTIALS' };

export interface WebhooksConfig {
  common: CommonSettings;
  port: number;
  /** Enabled providers (PROVIDERS); a disabled provider's routes answer 404. */
  providers: ProviderName[];
  /** ALLOW_UNAUTHENTICATED: started with an enabled provider lacking its secret. */
  allowUnauthenticated: boolean;
  /** Twilio auth tokens (several during rotation); empty = signatures not checked (open mode only). */
  twilioAuthTokens: string[];
  /** Plivo auth tokens; empty = X-Plivo-Signature-V3 not checked. */
  plivoAuthTokens: string[];
  /** Basic credentials Exotel must present; empty = not checked. */
  exotelCredentials: BasicCredential[];
  /**
   * The base URL providers call (scheme, host, optional path prefix). The
   * signed URL is this + the request's path and query. Required once any
   * provider secret is set; unset (open mode): rebuilt from X-Forwarded-Proto/-Host
   * when the request comes from TRUSTED_PROXIES, else from the socket and Host.
   */
  publicBaseUrl?: string;
  /** How long an answer webhook waits for a pod when none is free (SPEC 9.1), ms. */
  waitMs: number;
  /**
   * REHOME_ENABLED (SPEC 11 "Recovery"): Twilio/Plivo answer documents ask the stream-ended URL when
   * the stream ends, which re-homes a call its agent did not release. Stream-stopped callbacks still
   * release the call (SPEC 9.2) and leave a re-home ticket for that request (issue 20). Off by
   * default here: the answer documents stay byte-identical to before, and the reconciler needs
   * PUBLIC_BASE_URL when it is on; `npm start` and compose turn it on (issue 20's decision).
   */
  rehomeEnabled: boolean;
  /** REHOME_MAX: re-homes per call before the provider's failure document. */
  rehomeMax: number;
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

function readProviders(env: EnvReader): ProviderName[] {
  const names = env.list('PROVIDERS', [...PROVIDER_NAMES]);
  for (const name of names) {
    if (!(PROVIDER_NAMES as readonly string[]).includes(name)) throw new ConfigError('PROVIDERS', `must list providers among ${PROVIDER_NAMES.join(', ')}, got "${name}"`);
  }
  return PROVIDER_NAMES.filter((name) => names.includes(name));
}

export function readWebhooksConfig(env = new EnvReader()): WebhooksConfig {
  let exotelCredentials: BasicCredential[];
  try {
    exotelCredentials = parseBasicCredentials(env.list('EXOTEL_CREDENTIALS'));
  } catch (error) {
    // The message names the entry's position, never its value: it is a secret.
    throw new ConfigError('EXOTEL_CREDENTIALS', (error as Error).message);
  }
  const twilioAuthTokens = env.list('TWILIO_AUTH_TOKENS');
  const plivoAuthTokens = env.list('PLIVO_AUTH_TOKENS');
  const providers = readProviders(env);
  const allowUnauthenticated = readAllowUnauthenticated(env);
  // Fail closed (SPEC 10.1): every enabled provider needs its secret.
  const configured: Record<ProviderName, boolean> = { twilio: twilioAuthTokens.length > 0, plivo: plivoAuthTokens.length > 0, exotel: exotelCredentials.length > 0 };
  const unchecked = providers.filter((name) => !configured[name]);
  if (unchecked.length > 0) {
    const others = unchecked.slice(1).map((name) => `${PROVIDER_SECRETS[name]} for ${name}`);
    requireCredential(allowUnauthenticated, PROVIDER_SECRETS[unchecked[0]],
      `is empty but ${unchecked[0]} is enabled (PROVIDERS=${providers.join(',')}${others.length > 0 ? `; also empty: ${others.join(', ')}` : ''}): ` +
      'its webhooks would be accepted unsigned; remove the provider from PROVIDERS');
  }
  const publicBaseUrl = readPublicBaseUrl(env);
  // Twilio and Plivo sign the URL they called; rebuilt from request headers it is whatever
  // the client or a proxy says, and it is also the base of our callback URLs.
  if (publicBaseUrl === undefined && Object.values(configured).some(Boolean)) {
    throw new ConfigError('PUBLIC_BASE_URL', 'is required when provider signatures are checked (TWILIO_AUTH_TOKENS, PLIVO_AUTH_TOKENS or EXOTEL_CREDENTIALS set): set it to the URL providers call');
  }
  return {
    common: readCommonSettings(env),
    port: env.port('HTTP_PORT', 8081),
    providers,
    allowUnauthenticated,
    twilioAuthTokens,
    plivoAuthTokens,
    exotelCredentials,
    publicBaseUrl,
    waitMs: env.int('WEBHOOK_WAIT_MS', 3000, { min: 0, max: 10000 }),
    rehomeEnabled: env.bool('REHOME_ENABLED', false),
    rehomeMax: env.int('REHOME_MAX', 2, { min: 0, max: 10 }),
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
  };
}
