import { CommonSettings, EnvReader, readAllowUnauthenticated, readCommonSettings, requireCredential } from '@smart-router/config';
import { DispatcherToken, parseApiTokens } from '@smart-router/http';

/** A TokenReview result is trusted this long at most (SPEC 10.1). */
export const MAX_AGENT_TOKEN_CACHE_SECONDS = 60;

export interface AllocationApiConfig {
  common: CommonSettings;
  port: number;
  /** Dispatcher tokens (`secret` or `secret@merchant_a|merchant_b`); empty = open, only with ALLOW_UNAUTHENTICATED (SPEC 10.1). */
  apiTokens: DispatcherToken[];
  /** Set: voice agents' projected ServiceAccount tokens for this audience are accepted (TokenReview). */
  agentTokenAudience?: string;
  /** How long a TokenReview answer is reused (0 = review every request). */
  agentTokenCacheSeconds: number;
  /** ALLOW_UNAUTHENTICATED: requests without a token are served when no API_TOKENS are configured. */
  allowUnauthenticated: boolean;
  /** Path to a kubeconfig for TokenReview; unset = in-cluster service account. */
  kubeconfig?: string;
  otlpEndpoint?: string;
}

export function readAllocationApiConfig(env = new EnvReader()): AllocationApiConfig {
  const apiTokens = parseApiTokens(env.list('API_TOKENS'));
  const agentTokenAudience = env.optionalString('AGENT_TOKEN_AUDIENCE');
  const allowUnauthenticated = readAllowUnauthenticated(env);
  // Fail closed (SPEC 10.1): a caller identity is dispatcher tokens or voice agents'
  // ServiceAccount tokens (AGENT_TOKEN_AUDIENCE); either one configured is enough.
  if (apiTokens.length === 0 && agentTokenAudience === undefined) {
    requireCredential(allowUnauthenticated, 'API_TOKENS', 'is empty and AGENT_TOKEN_AUDIENCE is unset: allocate, release and connected would accept any caller');
  }
  return {
    common: readCommonSettings(env),
    port: env.port('HTTP_PORT', 8080),
    apiTokens,
    agentTokenAudience,
    agentTokenCacheSeconds: env.int('AGENT_TOKEN_CACHE_SECONDS', 30, { min: 0, max: MAX_AGENT_TOKEN_CACHE_SECONDS }),
    allowUnauthenticated,
    kubeconfig: env.optionalString('KUBECONFIG'),
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
  };
}
