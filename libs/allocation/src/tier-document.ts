import { TierConfig, TierSpec, validateTierConfig } from '@smart-router/config';

/**
 * The tier config as the Lua scripts read it from `config:tiers`: Lua's
 * cjson loses object key order, so the fill order travels as a list.
 */
export interface TierDocument {
  order: string[];
  /** Tier that takes pods beyond the sum of targets. */
  extra: string;
  tiers: Record<string, TierSpec>;
}

export function toTierDocument(config: TierConfig, extraTier: string): TierDocument {
  return { order: [...config.keys()], extra: extraTier, tiers: Object.fromEntries(config) };
}

export function fromTierDocument(text: string): { config: TierConfig; extra: string } {
  const document = JSON.parse(text) as TierDocument;
  const ordered: Record<string, TierSpec> = {};
  for (const name of document.order) ordered[name] = document.tiers[name];
  return { config: validateTierConfig(ordered, 'config:tiers'), extra: document.extra };
}
