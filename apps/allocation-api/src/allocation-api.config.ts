import { CommonSettings, EnvReader, readCommonSettings } from '@smart-router/config';
import { DispatcherToken, parseApiTokens } from '@smart-router/http';

/** A TokenReview result is trusted this long at most (SPEC 10.1). */
export const MAX_AGENT_TOKEN_CACHE_SECONDS = 60;

export interface AllocationApiConfig {
  common: CommonSettings;
  port: number;
  /** Dispatcher tokens (`secret` or `secret@merchant_a|merchant_b`). */
  apiTokens: DispatcherToken[];
  /** Set: voice agents' projected ServiceAccount tokens for this audience are accepted (TokenReview). */
  agentTokenAudience?: string;
  /** How long a TokenReview answer is reused (0 = review every request). */
  agentTokenCacheSeconds: number;
  /** Serve requests without a token when no API_TOKENS are configured (SPEC 10.1 open mode). */
  allowUnauthenticated: boolean;
  /** Path to a kubeconfig for TokenReview; unset = in-cluster service account. */
  kubeconfig?: string;
  otlpEndpoint?: string;
}

export function readAllocationApiConfig(env = new EnvReader()): AllocationApiConfig {
  return {
    common: readCommonSettings(env),
    port: env.port('HTTP_PORT', 8080),
    apiTokens: parseApiTokens(env.list('API_TOKENS')),
    agentTokenAudience: env.optionalString('AGENT_TOKEN_AUDIENCE'),
    agentTokenCacheSeconds: env.int('AGENT_TOKEN_CACHE_SECONDS', 30, { min: 0, max: MAX_AGENT_TOKEN_CACHE_SECONDS }),
    allowUnauthenticated: env.bool('ALLOW_UNAUTHENTICATED', false),
    kubeconfig: env.optionalString('KUBECONFIG'),
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
  };
}
