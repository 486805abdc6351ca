import { CommonSettings, EnvReader, readCommonSettings } from '@smart-router/config';

export interface AllocationApiConfig {
  common: CommonSettings;
  port: number;
  /** Bearer tokens accepted on allocate/release; empty = open (local default). */
  apiTokens: string[];
  otlpEndpoint?: string;
}

export function readAllocationApiConfig(env = new EnvReader()): AllocationApiConfig {
  return {
    common: readCommonSettings(env),
    port: env.port('HTTP_PORT', 8080),
    apiTokens: env.list('API_TOKENS'),
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
  };
}
