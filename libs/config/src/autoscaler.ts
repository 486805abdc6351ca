import { ConfigError, EnvReader } from './env';

/** The fleet autoscaler's settings (SPEC 9.1), as `GET|PUT /api/v1/admin/autoscaler` shows them. */
export interface AutoscalerSettings {
  enabled: boolean;
  min_replicas: number;
  max_replicas: number;
  /** Free exclusive pods to keep in EXTRA_PODS_TIER (waiting requests count as demand). */
  buffer: number;
  /** Continuous surplus needed before a scale-down. */
  scale_down_delay_seconds: number;
}

/** Upper bound of any replica count we accept (a typo must not ask for a million pods). */
export const MAX_FLEET_REPLICAS = 1000;

export const AUTOSCALER_FIELDS = ['enabled', 'min_replicas', 'max_replicas', 'buffer', 'scale_down_delay_seconds'] as const;

const BOUNDS: Record<Exclude<keyof AutoscalerSettings, 'enabled'>, { min: number; max: number }> = {
  min_replicas: { min: 0, max: MAX_FLEET_REPLICAS },
  max_replicas: { min: 0, max: MAX_FLEET_REPLICAS },
  buffer: { min: 0, max: MAX_FLEET_REPLICAS },
  scale_down_delay_seconds: { min: 0, max: 86400 },
};

/** Where the fleet lives: the voice-agent StatefulSet (pods `{name}-{ordinal}`). */
export interface FleetSettings {
  statefulSet: string;
  autoscaler: AutoscalerSettings;
}

/** Defaults from `AUTOSCALER_*` (the autoscaler starts disabled) and `VOICE_AGENT_STATEFULSET`. */
export function readFleetSettings(env = new EnvReader()): FleetSettings {
  const autoscaler: AutoscalerSettings = {
    enabled: env.bool('AUTOSCALER_ENABLED', false),
    min_replicas: env.int('AUTOSCALER_MIN_REPLICAS', 1, BOUNDS.min_replicas),
    max_replicas: env.int('AUTOSCALER_MAX_REPLICAS', 20, BOUNDS.max_replicas),
    buffer: env.int('AUTOSCALER_BUFFER', 2, BOUNDS.buffer),
    scale_down_delay_seconds: env.int('AUTOSCALER_SCALE_DOWN_DELAY_SECONDS', 300, BOUNDS.scale_down_delay_seconds),
  };
  if (autoscaler.min_replicas > autoscaler.max_replicas) {
    throw new ConfigError('AUTOSCALER_MIN_REPLICAS', `must be <= AUTOSCALER_MAX_REPLICAS (${autoscaler.max_replicas}), got ${autoscaler.min_replicas}`);
  }
  return { statefulSet: env.string('VOICE_AGENT_STATEFULSET', 'voice-agent'), autoscaler };
}

export type AutoscalerValidation =
  | { ok: true; settings: AutoscalerSettings }
  | { ok: false; code: 'INVALID_AUTOSCALER_CONFIG' | 'INVALID_REPLICA_RANGE'; message: string };

/**
 * A PUT body merged onto the current settings: any subset of the fields, each
 * with its type and bounds, nothing else; min_replicas <= max_replicas after the merge.
 */
export function validateAutoscalerUpdate(body: unknown, current: AutoscalerSettings): AutoscalerValidation {
  const invalid = (message: string): AutoscalerValidation => ({ ok: false, code: 'INVALID_AUTOSCALER_CONFIG', message });
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return invalid('body must be a JSON object');
  const settings: AutoscalerSettings = { ...current };
  for (const [field, value] of Object.entries(body as Record<string, unknown>)) {
    if (field === 'enabled') {
      if (typeof value !== 'boolean') return invalid('enabled must be true or false');
      settings.enabled = value;
    } else if (field in BOUNDS) {
      const bounds = BOUNDS[field as keyof typeof BOUNDS];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < bounds.min || value > bounds.max) {
        return invalid(`${field} must be an integer from ${bounds.min} to ${bounds.max}`);
      }
      settings[field as keyof typeof BOUNDS] = value;
    } else {
      return invalid(`unknown field (allowed: ${AUTOSCALER_FIELDS.join(', ')})`);
    }
  }
  if (settings.min_replicas > settings.max_replicas) {
    return { ok: false, code: 'INVALID_REPLICA_RANGE', message: 'min_replicas must not exceed max_replicas' };
  }
  return { ok: true, settings };
}

/** Settings stored in Redis (a JSON document), falling back field by field to the defaults. */
export function parseStoredAutoscaler(raw: string | null, defaults: AutoscalerSettings): AutoscalerSettings {
  if (!raw) return { ...defaults };
  try {
    const result = validateAutoscalerUpdate(JSON.parse(raw), defaults);
    return result.ok ? result.settings : { ...defaults };
  } catch {
    return { ...defaults };
  }
}
