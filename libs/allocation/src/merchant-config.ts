import { TierConfig } from '@smart-router/config';

export interface MerchantConfig {
  tier: string;
  pool?: string;
  fallback?: string[];
  /** At this many live calls the next allocation answers 429 MERCHANT_LIMIT (SPEC 9.1). */
  max_calls?: number;
  /** At this many of its requests waiting for a pod the next one answers 503 QUEUE_FULL (SPEC 10.2). */
  max_waiting?: number;
}

/** Names a merchant may use without a tier of that name (they select a fallback chain). */
export const CHAIN_TIERS = new Set(['gold', 'standard', 'overflow', 'basic', 'dedicated']);

/**
 * Validates a merchant config before it is stored. Returns the reason it is
 * bad, or null. The tier must exist (a configured tier or a chain name), and
 * a dedicated merchant needs a pool that is a dedicated tier.
 */
export function merchantConfigProblem(value: unknown, tiers: TierConfig): string | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'body must be a JSON object';
  const config = value as Record<string, unknown>;
  if (typeof config.tier !== 'string' || config.tier.length === 0) return 'tier is required';
  if (!tiers.has(config.tier) && !CHAIN_TIERS.has(config.tier)) return `tier "${config.tier}" does not exist`;
  if (config.pool !== undefined) {
    if (typeof config.pool !== 'string') return 'pool must be a string';
    const spec = tiers.get(config.pool);
    if (!spec || !spec.dedicated) return `pool "${config.pool}" is not a dedicated tier of TIER_CONFIG`;
  }
  if (config.tier === 'dedicated' && config.pool === undefined) return 'a dedicated merchant needs a pool';
  if (config.fallback !== undefined) {
    if (!Array.isArray(config.fallback) || config.fallback.some((tier) => typeof tier !== 'string')) {
      return 'fallback must be a list of tier names';
    }
    for (const tier of config.fallback as string[]) {
      if (!tiers.has(tier) && !CHAIN_TIERS.has(tier)) return `fallback tier "${tier}" does not exist`;
    }
  }
  if (config.max_calls !== undefined) {
    if (typeof config.max_calls !== 'number' || !Number.isSafeInteger(config.max_calls) || config.max_calls < 1) {
      return 'max_calls must be a positive integer';
    }
  }
  if (config.max_waiting !== undefined) {
    if (typeof config.max_waiting !== 'number' || !Number.isSafeInteger(config.max_waiting) || config.max_waiting < 1) {
      return 'max_waiting must be a positive integer';
    }
  }
  return null;
}
