import { TierConfig } from '@smart-router/config';

export interface ObservedPod {
  name: string;
  /** A `smart-router.io/tier` label pins the pod to a tier. */
  pinnedTier?: string;
}

/** Orders pods by StatefulSet ordinal (voice-agent-2 before voice-agent-10). */
export function compareByOrdinal(a: string, b: string): number {
  const ordinal = (name: string) => {
    const match = /-(\d+)$/.exec(name);
    return match ? Number(match[1]) : Number.MAX_SAFE_INTEGER;
  };
  const byOrdinal = ordinal(a) - ordinal(b);
  return byOrdinal !== 0 ? byOrdinal : a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The tier a pod belongs in, from the config and the pod alone (the same rule
 * as `ordinalTier` in the Lua include pod-state.lua): a configured pinned tier
 * wins; otherwise the StatefulSet ordinal fills the tiers in config order up
 * to their targets, and ordinals beyond the sum go to the extra tier.
 * Undefined for a name without an ordinal.
 */
export function ordinalTier(name: string, tiers: TierConfig, extraTier: string, pinnedTier?: string): string | undefined {
  if (pinnedTier && tiers.has(pinnedTier)) return pinnedTier;
  const match = /-(\d+)$/.exec(name);
  if (!match) return undefined;
  const ordinal = Number(match[1]);
  let upto = 0;
  for (const [tier, spec] of tiers) {
    upto += spec.target;
    if (ordinal < upto) return tier;
  }
  return extraTier;
}

/**
 * Every pod's tier (what the scripts converge to): `ordinalTier`, and for
 * pods without an ordinal the tier they hold, else the first tier below its
 * target. Deterministic, so a flushed Redis is rebuilt with every pod in the
 * tier it had, whatever order the pods arrive in.
 */
export function planTiers(
  pods: readonly ObservedPod[],
  tiers: TierConfig,
  extraTier: string,
  /** Tiers pods already hold; only consulted for pods without an ordinal. */
  current: ReadonlyMap<string, string> = new Map(),
): Map<string, string> {
  const plan = new Map<string, string>();
  const counts = new Map<string, number>([...tiers.keys()].map((tier) => [tier, 0]));
  const sorted = [...pods].sort((a, b) => compareByOrdinal(a.name, b.name));
  const unplaced: ObservedPod[] = [];
  for (const pod of sorted) {
    const tier = ordinalTier(pod.name, tiers, extraTier, pod.pinnedTier) ?? (tiers.has(current.get(pod.name) ?? '') ? current.get(pod.name) : undefined);
    if (!tier) {
      unplaced.push(pod);
      continue;
    }
    plan.set(pod.name, tier);
    counts.set(tier, (counts.get(tier) ?? 0) + 1);
  }
  for (const pod of unplaced) {
    const tier = [...tiers].find(([name, spec]) => (counts.get(name) ?? 0) < spec.target)?.[0] ?? extraTier;
    plan.set(pod.name, tier);
    counts.set(tier, (counts.get(tier) ?? 0) + 1);
  }
  return plan;
}
