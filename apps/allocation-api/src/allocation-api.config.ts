import { CommonSettings, ConfigError, EnvReader, readAllowUnauthenticated, readCommonSettings, requireCredential } from '@smart-router/config';
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
  /** Agent tokens are accepted only from ServiceAccounts of this namespace (the voice agents', pod-watcher's NAMESPACE). */
  agentNamespace: string;
  /** And only these ServiceAccounts of it; empty = any. */
  agentServiceAccounts: string[];
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
    agentNamespace: readKubeName(env, 'AGENT_NAMESPACE', 'voice-system'),
    agentServiceAccounts: readServiceAccounts(env),
    agentTokenCacheSeconds: env.int('AGENT_TOKEN_CACHE_SECONDS', 30, { min: 0, max: MAX_AGENT_TOKEN_CACHE_SECONDS }),
    allowUnauthenticated,
    kubeconfig: env.optionalString('KUBECONFIG'),
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
  };
}

/** A Kubernetes object name (RFC 1123 label or subdomain): anything else could never match a username. */
const KUBE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function readKubeName(env: EnvReader, name: string, fallback: string): string {
  const value = env.string(name, fallback);
  if (!KUBE_NAME.test(value)) throw new ConfigError(name, `"${value}" is not a Kubernetes name (lower-case a-z, 0-9, "-", ".")`);
  return value;
}

function readServiceAccounts(env: EnvReader): string[] {
  const accounts = env.list('AGENT_SERVICE_ACCOUNTS');
  const bad = accounts.find((account) => !KUBE_NAME.test(account));
  if (bad !== undefined) throw new ConfigError('AGENT_SERVICE_ACCOUNTS', `"${bad}" is not a ServiceAccount name (lower-case a-z, 0-9, "-", ".")`);
  return accounts;
}
