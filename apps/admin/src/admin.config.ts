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
  /** Limits of the live event feed (SPEC 10.2, "The live feed respects slow readers"). */
  eventStream: EventStreamLimits;
}

export interface EventStreamLimits {
  /** A client whose unsent bytes in admin pass this is dropped (EVENT_STREAM_BUFFER_BYTES). */
  bufferBytes: number;
  /** A Last-Event-ID with more entries than this after it, in any stream, resumes this many back with a `resync` event (EVENT_STREAM_REPLAY_MAX). */
  replayMax: number;
  /** A client whose socket has not drained for this long is dropped, ms (EVENT_STREAM_STALL_SECONDS). */
  stallMs: number;
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
    eventStream: {
      bufferBytes: env.int('EVENT_STREAM_BUFFER_BYTES', 1024 * 1024, { min: 16 * 1024, max: 256 * 1024 * 1024 }),
      replayMax: env.int('EVENT_STREAM_REPLAY_MAX', 1000, { min: 1, max: 100_000 }),
      stallMs: env.int('EVENT_STREAM_STALL_SECONDS', 30, { min: 1, max: 3600 }) * 1000,
    },
  };
}
