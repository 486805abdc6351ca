import { CommonSettings, EnvReader, FleetSettings, readCommonSettings, readFleetSettings } from '@smart-router/config';

export interface AdminConfig {
  common: CommonSettings;
  port: number;
  /** Read-only tokens (GET). */
  viewerTokens: string[];
  /** Tokens that may change state (drain, config, reconcile). */
  operatorTokens: string[];
  otlpEndpoint?: string;
  /** The voice-agent StatefulSet and the autoscaler's defaults (AUTOSCALER_*). */
  fleet: FleetSettings;
}

export function readAdminConfig(env = new EnvReader()): AdminConfig {
  return {
    common: readCommonSettings(env),
    port: env.port('HTTP_PORT', 8082),
    viewerTokens: env.list('ADMIN_VIEWER_TOKENS'),
    operatorTokens: env.list('ADMIN_OPERATOR_TOKENS'),
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
    fleet: readFleetSettings(env),
  };
}
