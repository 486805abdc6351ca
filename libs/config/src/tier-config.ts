import { ConfigError } from './env';

export type TierType = 'exclusive' | 'shared';

export interface TierSpec {
  type: TierType;
  /** Number of pods the tier is filled to, in config order. */
  target: number;
  /** Calls per pod; 1 for exclusive tiers. */
  max_concurrent: number;
  /** A merchant's private pool: only merchants naming it as `pool` reach it. */
  dedicated: boolean;
}

/** Tiers in config order: the order in which new pods fill them. */
export type TierConfig = ReadonlyMap<string, TierSpec>;

/** The seeds' production value (testing guide section 2). */
export const SEED_TIER_CONFIG =
  '{"gold":{"type":"exclusive","target":1},"standard":{"type":"exclusive","target":1},"basic":{"type":"shared","target":1,"max_concurrent":3}}';

const TIER_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/**
 * Parses and validates a TIER_CONFIG document. Errors name the exact field so
 * a bad ConfigMap stops the app with a message an SRE can act on.
 */
export function parseTierConfig(text: string, variable = 'TIER_CONFIG'): TierConfig {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw new ConfigError(variable, 'is not valid JSON');
  }
  return validateTierConfig(document, variable);
}

export function validateTierConfig(document: unknown, variable = 'TIER_CONFIG'): TierConfig {
  if (document === null || typeof document !== 'object' || Array.isArray(document)) {
    throw new ConfigError(variable, 'must be a JSON object of tiers');
  }
  const tiers = new Map<string, TierSpec>();
  for (const [name, value] of Object.entries(document as Record<string, unknown>)) {
    const field = `${variable}.${name}`;
    if (!TIER_NAME.test(name)) throw new ConfigError(field, 'is not a valid tier name ([a-z0-9_-], max 63)');
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new ConfigError(field, 'must be an object');
    }
    const spec = value as Record<string, unknown>;
    if (spec.type !== 'exclusive' && spec.type !== 'shared') {
      throw new ConfigError(`${field}.type`, 'must be "exclusive" or "shared"');
    }
    const target = spec.target ?? 0;
    if (!Number.isInteger(target) || (target as number) < 0) {
      throw new ConfigError(`${field}.target`, 'must be an integer >= 0');
    }
    let maxConcurrent = 1;
    if (spec.type === 'shared') {
      if (!Number.isInteger(spec.max_concurrent) || (spec.max_concurrent as number) < 1) {
        throw new ConfigError(`${field}.max_concurrent`, 'must be an integer >= 1 for a shared tier');
      }
      maxConcurrent = spec.max_concurrent as number;
    }
    const dedicated = spec.dedicated === true;
    if (dedicated && spec.type !== 'exclusive') {
      throw new ConfigError(`${field}.dedicated`, 'is only allowed on exclusive tiers');
    }
    tiers.set(name, { type: spec.type, target: target as number, max_concurrent: maxConcurrent, dedicated });
  }
  if (tiers.size === 0) throw new ConfigError(variable, 'must define at least one tier');
  return tiers;
}

/** The JSON document form, as stored in Redis and served by the admin API. */
export function tierConfigToJson(config: TierConfig): Record<string, TierSpec> {
  return Object.fromEntries(config);
}
