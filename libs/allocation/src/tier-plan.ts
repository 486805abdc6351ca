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
 * The deterministic tier of every pod, computed from the config and the pods
 * alone: pinned pods first, then the rest in ordinal order fill the tiers in
 * config order up to their targets; the remainder go to the extra tier.
 * The same pods and config always give the same answer, which is what lets a
 * flushed Redis be rebuilt with every pod in the tier it had.
 */
export function planTiers(
  pods: readonly ObservedPod[],
  tiers: TierConfig,
  extraTier: string,
  /** Tiers pods already hold (sticky while Redis keeps them); empty after data loss. */
  current: ReadonlyMap<string, string> = new Map(),
): Map<string, string> {
  const plan = new Map<string, string>();
  const counts = new Map<string, number>([...tiers.keys()].map((tier) => [tier, 0]));
  const sorted = [...pods].sort((a, b) => compareByOrdinal(a.name, b.name));
  for (const pod of sorted) {
    const held = current.get(pod.name);
    if (held) {
      plan.set(pod.name, held);
      counts.set(held, (counts.get(held) ?? 0) + 1);
    }
  }
  for (const pod of sorted) {
    if (plan.has(pod.name)) continue;
    if (pod.pinnedTier && tiers.has(pod.pinnedTier)) {
      plan.set(pod.name, pod.pinnedTier);
      counts.set(pod.pinnedTier, (counts.get(pod.pinnedTier) ?? 0) + 1);
    }
  }
  for (const pod of sorted) {
    if (plan.has(pod.name)) continue;
    let chosen = extraTier;
    for (const [tier, spec] of tiers) {
      if ((counts.get(tier) ?? 0) < spec.target) {
        chosen = tier;
        break;
      }
    }
    plan.set(pod.name, chosen);
    counts.set(chosen, (counts.get(chosen) ?? 0) + 1);
  }
  return plan;
}
