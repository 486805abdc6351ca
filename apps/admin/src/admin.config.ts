import { CommonSettings, EnvReader, FleetSettings, readAllowUnauthenticated, readCommonSettings, readFleetSettings, requireCredential } from '@smart-router/config';

export interface AdminConfig {
  common: CommonSettings;
  port: number;
  /** Read-only tokens (GET). */
  viewerTokens: string[];
  /** Tokens that may change state (drain, config, reconcile). */
  operatorTokens: string[];
  /** ALLOW_UNAUTHENTICATED: started without admin tokens (SPEC 10.1). */
  allowUnauthenticated: boolean;
  otlpEndpoint?: string;
  /** The voice-agent StatefulSet and the autoscaler's defaults (AUTOSCALER_*). */
  fleet: FleetSettings;
}

export function readAdminConfig(env = new EnvReader()): AdminConfig {
  const viewerTokens = env.list('ADMIN_VIEWER_TOKENS');
  const operatorTokens = env.list('ADMIN_OPERATOR_TOKENS');
  const allowUnauthenticated = readAllowUnauthenticated(env);
  // Fail closed (SPEC 10.1). Viewer tokens alone are a configured credential:
  // reads need one, and changes are then refused to everyone (403).
  if (viewerTokens.length + operatorTokens.length === 0) {
    requireCredential(allowUnauthenticated, 'ADMIN_OPERATOR_TOKENS', 'and ADMIN_VIEWER_TOKENS are empty: drain, tier and merchant config, reconcile and every read would accept any caller');
  }
  return {
    common: readCommonSettings(env),
    port: env.port('HTTP_PORT', 8082),
    viewerTokens,
    operatorTokens,
    allowUnauthenticated,
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
    fleet: readFleetSettings(env),
  };
}
