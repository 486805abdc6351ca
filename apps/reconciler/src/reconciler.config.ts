import { hostname } from 'node:os';
import { CommonSettings, EnvReader, FleetSettings, readCommonSettings, readFleetSettings } from '@smart-router/config';

export interface ReconcilerConfig {
  common: CommonSettings;
  port: number;
  namespace: string;
  labelSelector: string;
  kubeconfig?: string;
  /** Consumer name in the pod-stream group; unique per replica. */
  consumer: string;
  /** Pending events idle this long belonged to a dead consumer and are claimed. */
  claimIdleMs: number;
  /** Scale of every job interval (tests shorten them; 1 in production). */
  jobIntervalScale: number;
  otlpEndpoint?: string;
  /** The voice-agent StatefulSet and the autoscaler's defaults (AUTOSCALER_*). */
  fleet: FleetSettings;
}

export function readReconcilerConfig(env = new EnvReader()): ReconcilerConfig {
  return {
    common: readCommonSettings(env),
    port: env.port('HTTP_PORT', 8084),
    namespace: env.string('NAMESPACE', 'voice-system'),
    labelSelector: env.string('POD_LABEL_SELECTOR', 'app=voice-agent'),
    kubeconfig: env.optionalString('KUBECONFIG'),
    consumer: env.string('POD_IDENTITY', `${hostname()}-${process.pid}`),
    claimIdleMs: env.int('STREAM_CLAIM_IDLE_MS', 10000, { min: 100 }),
    jobIntervalScale: Number(env.string('JOB_INTERVAL_SCALE', '1')),
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
    fleet: readFleetSettings(env),
  };
}
