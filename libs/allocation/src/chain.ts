import { TierConfig } from '@smart-router/config';

/** The chain rules the allocation script applies (SPEC section 1). */
export interface ChainRules {
  byTier: Record<string, string[]>;
  default: string[];
}

/**
 * Builds the per-tier fallback chains. A merchant with a dedicated pool walks
 * that pool first (the script adds it); the chains below come after it.
 * Gold appears only in the chains of gold and dedicated merchants, so a
 * merchant whose chain does not name gold can never get a gold pod.
 */
export function buildChainRules(tiers: TierConfig, defaultChain: readonly string[]): ChainRules {
  const premium = ['gold', 'standard', 'overflow', 'basic'];
  const byTier: Record<string, string[]> = {};
  for (const name of tiers.keys()) {
    byTier[name] = unique([name, ...defaultChain]);
  }
  byTier.gold = premium;
  byTier.dedicated = premium;
  byTier.basic = ['basic', 'standard', 'overflow'];
  byTier.standard = [...defaultChain];
  return { byTier, default: [...defaultChain] };
}

function unique(items: string[]): string[] {
  return [...new Set(items)];
}
