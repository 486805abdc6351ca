import { CommonSettings, EnvReader, readAllowUnauthenticated, readCommonSettings, requireCredential } from '@smart-router/config';

export interface AllocationApiConfig {
  common: CommonSettings;
  port: number;
  /** Bearer tokens accepted on allocate/release; empty = open, only with ALLOW_UNAUTHENTICATED (SPEC 10.1). */
  apiTokens: string[];
  /** ALLOW_UNAUTHENTICATED: started without any caller identity configured. */
  allowUnauthenticated: boolean;
  otlpEndpoint?: string;
}

export function readAllocationApiConfig(env = new EnvReader()): AllocationApiConfig {
  const apiTokens = env.list('API_TOKENS');
  const allowUnauthenticated = readAllowUnauthenticated(env);
  // Fail closed (SPEC 10.1): a caller identity is dispatcher tokens or voice agents'
  // ServiceAccount tokens (AGENT_TOKEN_AUDIENCE); either one configured is enough.
  if (apiTokens.length === 0 && env.optionalString('AGENT_TOKEN_AUDIENCE') === undefined) {
    requireCredential(allowUnauthenticated, 'API_TOKENS', 'is empty and AGENT_TOKEN_AUDIENCE is unset: allocate, release and connected would accept any caller');
  }
  return {
    common: readCommonSettings(env),
    port: env.port('HTTP_PORT', 8080),
    apiTokens,
    allowUnauthenticated,
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
  };
}
