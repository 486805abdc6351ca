import { DEFAULT_CHAIN, TierConfig, TierSpec, validateTierConfig } from '@smart-router/config';
import { ChainRules, buildChainRules } from './chain';

/**
 * The tier config as the Lua scripts read it from `config:tiers`: Lua's
 * cjson loses object key order, so the fill order travels as a list. The
 * fallback chains are derived from the tiers and stored with them, so a tier
 * added at run time (PUT /api/v1/admin/tiers) has its chain in every app at
 * once, not only in processes started after the change.
 */
export interface TierDocument {
  order: string[];
  /** Tier that takes pods beyond the sum of targets. */
  extra: string;
  tiers: Record<string, TierSpec>;
  chains: ChainRules;
}

export function toTierDocument(config: TierConfig, extraTier: string, defaultChain: readonly string[] = DEFAULT_CHAIN): TierDocument {
  return { order: [...config.keys()], extra: extraTier, tiers: Object.fromEntries(config), chains: buildChainRules(config, defaultChain) };
}

export function fromTierDocument(text: string): { config: TierConfig; extra: string } {
  const document = JSON.parse(text) as TierDocument;
  const ordered: Record<string, TierSpec> = {};
  for (const name of document.order) ordered[name] = document.tiers[name];
  return { config: validateTierConfig(ordered, 'config:tiers'), extra: document.extra };
}
