import { hostname } from 'node:os';
import { CommonSettings, ConfigError, EnvReader, FleetSettings, readCommonSettings, readFleetSettings } from '@smart-router/config';

export interface ReconcilerConfig {
  common: CommonSettings;
  port: number;
  namespace: string;
  labelSelector: string;
  /** The pod label holding its agent version (SPEC 12); a pod without it has version "". */
  versionLabel: string;
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
  /** Voice-agent liveness (SPEC 11). */
  liveness: LivenessSettings;
  /** ROLLOUT_MOVE_DEADLINE_SECONDS in ms: a promote's or rollback's replica move whose version has had no pod this long is abandoned (SPEC 12). */
  rolloutMoveDeadlineMs: number;
  /** Re-homing a dead agent's live calls through the providers' REST APIs (SPEC 11 "Recovery"); null = off. */
  rehome: RehomeSettings | null;
}

/**
 * REHOME_ENABLED on: a dead pod's Twilio/Plivo calls stay alive and are
 * redirected to their stream-ended URL (PUBLIC_BASE_URL, the URL the webhooks
 * app serves) with the official SDKs. A provider without its account id and
 * auth token (TWILIO_ACCOUNT_SID + TWILIO_API_AUTH_TOKEN, PLIVO_AUTH_ID +
 * PLIVO_API_AUTH_TOKEN; each defaults to the first token of *_AUTH_TOKENS, the
 * current one of a rotation) cannot be redirected: its calls end with
 * agent_dead as before. The *_API_AUTH_TOKEN variables are REST credentials
 * only (issue 20): a deployment whose webhooks are open (no *_AUTH_TOKENS,
 * as under `npm start`) can still redirect calls.
 */
export interface RehomeSettings {
  publicBaseUrl: string;
  twilio: { accountSid: string; authToken: string; apiBaseUrl: string } | null;
  plivo: { authId: string; authToken: string; apiBaseUrl: string } | null;
}

function readRehomeSettings(env: EnvReader): RehomeSettings | null {
  if (!env.bool('REHOME_ENABLED', false)) return null;
  const first = (name: string) => env.list(name)[0];
  const baseUrl = (name: string, fallback: string) => env.url(name, fallback, ['http:', 'https:']).replace(/\/+$/, '');
  const twilioSid = env.optionalString('TWILIO_ACCOUNT_SID');
  const twilioToken = env.optionalString('TWILIO_API_AUTH_TOKEN') ?? first('TWILIO_AUTH_TOKENS');
  const plivoId = env.optionalString('PLIVO_AUTH_ID');
  const plivoToken = env.optionalString('PLIVO_API_AUTH_TOKEN') ?? first('PLIVO_AUTH_TOKENS');
  const twilioApi = baseUrl('TWILIO_API_BASE_URL', 'https://api.twilio.com');
  const plivoApi = baseUrl('PLIVO_API_BASE_URL', 'https://api.plivo.com');
  const publicText = env.optionalString('PUBLIC_BASE_URL');
  if (publicText === undefined) throw new ConfigError('PUBLIC_BASE_URL', 'is required with REHOME_ENABLED: it is the base of the stream-ended URL a dead agent\'s calls are redirected to');
  return {
    publicBaseUrl: env.url('PUBLIC_BASE_URL', publicText, ['http:', 'https:']).replace(/\/+$/, ''),
    twilio: twilioSid && twilioToken ? { accountSid: twilioSid, authToken: twilioToken, apiBaseUrl: twilioApi } : null,
    plivo: plivoId && plivoToken ? { authId: plivoId, authToken: plivoToken, apiBaseUrl: plivoApi } : null,
  };
}

/** What the liveness job does with a dead pod beyond ending its calls: `keep` it, or `delete` it through the Kubernetes API. */
export type DeadAction = 'keep' | 'delete';

export interface LivenessSettings {
  /** HEARTBEAT_SUSPECT_MS: an enrolled pod silent this long gets no new call. */
  suspectMs: number;
  /** HEARTBEAT_DEAD_MS: silent this long, the pod is dead and its calls are recovered. */
  deadMs: number;
  /** HEARTBEAT_DEAD_ACTION. */
  deadAction: DeadAction;
  /** MEDIA_STALL_SECONDS in ms (0 = off). */
  mediaStallMs: number;
}

export function readLivenessSettings(env: EnvReader): LivenessSettings {
  const suspectMs = env.int('HEARTBEAT_SUSPECT_MS', 4000, { min: 100 });
  const deadMs = env.int('HEARTBEAT_DEAD_MS', 6000, { min: 100 });
  if (deadMs <= suspectMs) throw new ConfigError('HEARTBEAT_DEAD_MS', `must be greater than HEARTBEAT_SUSPECT_MS (${suspectMs})`);
  return {
    suspectMs,
    deadMs,
    deadAction: env.oneOf('HEARTBEAT_DEAD_ACTION', 'keep', ['keep', 'delete'] as const),
    mediaStallMs: env.int('MEDIA_STALL_SECONDS', 0, { min: 0, max: 3600 }) * 1000,
  };
}

export function readReconcilerConfig(env = new EnvReader()): ReconcilerConfig {
  return {
    common: readCommonSettings(env),
    port: env.port('HTTP_PORT', 8084),
    namespace: env.string('NAMESPACE', 'voice-system'),
    labelSelector: env.string('POD_LABEL_SELECTOR', 'app=voice-agent'),
    versionLabel: readVersionLabel(env),
    kubeconfig: env.optionalString('KUBECONFIG'),
    consumer: env.string('POD_IDENTITY', `${hostname()}-${process.pid}`),
    claimIdleMs: env.int('STREAM_CLAIM_IDLE_MS', 10000, { min: 100 }),
    jobIntervalScale: Number(env.string('JOB_INTERVAL_SCALE', '1')),
    otlpEndpoint: env.optionalString('OTEL_EXPORTER_OTLP_ENDPOINT'),
    fleet: readFleetSettings(env),
    liveness: readLivenessSettings(env),
    rolloutMoveDeadlineMs: env.int('ROLLOUT_MOVE_DEADLINE_SECONDS', 600, { min: 1, max: 86400 }) * 1000,
    rehome: readRehomeSettings(env),
  };
}

/** A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a name of up to 63 characters. */
const LABEL_KEY = /^(?:[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

function readVersionLabel(env: EnvReader): string {
  const label = env.string('VERSION_LABEL', 'app.kubernetes.io/version');
  if (!LABEL_KEY.test(label)) throw new ConfigError('VERSION_LABEL', `must be a Kubernetes label key (got ${JSON.stringify(label)})`);
  return label;
}
