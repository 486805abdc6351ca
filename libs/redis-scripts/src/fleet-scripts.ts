import type Redis from 'ioredis';
import { RedisKeys } from '@smart-router/redis-keys';
import { defineScripts } from './script-loader';
import { ReplicationLimits, replicatedScript } from './pool-scripts';

type Reply = number | (string | number)[];
type ScriptFn = (...args: (string | number)[]) => Promise<Reply>;

/** What the reconciler must do to the StatefulSet after a fleet step. */
export type FleetStep =
  | { action: 'locked' }
  | { action: 'steady'; target: number }
  | { action: 'scale_up'; target: number }
  | { action: 'scale_down'; target: number }
  | { action: 'wait'; target: number; busy: string[] };

export interface FleetDemand {
  extraTier: string;
  free: number;
  waiting: number;
  starting: number;
}

export interface FleetPlanResult {
  previousTarget: number;
  replicas: number;
  cancelled: number;
  marked: number;
}

/**
 * The fleet plan's Lua scripts (planFleet, stepFleet, unlockFleet): one script
 * and one round trip each; Redis errors propagate.
 */
export class FleetScripts {
  private readonly prefixes: string;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly statefulSet: string,
    private readonly streamMaxLen: number,
    private readonly replication: ReplicationLimits = {},
    /**
     * true: the plan of another agent StatefulSet than VOICE_AGENT_STATEFULSET,
     * under its own keys (fleet:plan:{sts}, fleet:removing:{sts}); the same
     * scripts, since they take the StatefulSet's name and its plan keys as
     * arguments (SPEC 12: a promote or rollback moving replicas call-safely).
     */
    private readonly ownKeys = false,
  ) {
    defineScripts(redis);
    this.prefixes = JSON.stringify(keys.podKeyPrefixes());
  }

  private script(name: string): ScriptFn {
    return replicatedScript(this.redis, name, this.replication);
  }

  private planKeys(): string[] {
    const k = this.keys;
    return [this.planKey(), this.ownKeys ? k.fleetRemovingOf(this.statefulSet) : k.fleetRemoving(), k.pods(), k.tierConfig(), k.fleetStream()];
  }

  /** This StatefulSet's plan hash (target, replicas, committing). */
  planKey(): string {
    return this.ownKeys ? this.keys.fleetPlanOf(this.statefulSet) : this.keys.fleetPlan();
  }

  /**
   * Stores the autoscaler settings if the stored document is still `readAs`
   * (what the caller merged into; '' = none): false when it changed meanwhile.
   */
  async setAutoscalerConfig(settingsJson: string, readAs: string, enabled: boolean): Promise<boolean> {
    const k = this.keys;
    return Number(await this.script('setAutoscalerConfig')(k.autoscalerConfig(), k.autoscalerState(), settingsJson, readAs, enabled ? '0' : '1')) === 1;
  }

  /** Sets the target; null when the StatefulSet's size was never observed yet. */
  async plan(target: number, reason: string, now = Date.now()): Promise<FleetPlanResult | null> {
    const reply = await this.script('planFleet')(...this.planKeys(), target, this.statefulSet, now, reason, this.prefixes, this.streamMaxLen);
    if (typeof reply === 'number') return null;
    return { previousTarget: Number(reply[1]), replicas: Number(reply[2]), cancelled: Number(reply[3]), marked: Number(reply[4]) };
  }

  async step(observedReplicas: number, lockToken: string, lockTtlMs: number, now = Date.now()): Promise<FleetStep> {
    const reply = await this.script('stepFleet')(
      ...this.planKeys(), this.keys.fleetLock(), observedReplicas, this.statefulSet, now, this.prefixes, this.streamMaxLen, lockToken, lockTtlMs,
    );
    if (typeof reply === 'number') return { action: 'locked' };
    const target = Number(reply[1]);
    switch (Number(reply[0])) {
      case 2: return { action: 'scale_up', target };
      case 3: return { action: 'scale_down', target };
      case 4: return { action: 'wait', target, busy: reply.slice(2).map(String) };
      default: return { action: 'steady', target };
    }
  }

  /**
   * Demand and supply for the autoscaler, in the `extra` tier of the live tier
   * config: free pods, waiting requests, and pods below `target` in that tier's
   * ordinals that are not Ready yet (capacity already on its way).
   *
   * With `versions` (SPEC 12, a StatefulSet's part of a rollout split): `free`
   * counts only the free pods of those versions (ZINTERCARD of the pool with
   * each version's pods; it takes the exclusive set and the shared zset alike),
   * in the same MULTI as the waiting requests and the per-ordinal reads. The
   * ordinals are this StatefulSet's own: every StatefulSet is tiered by its own
   * ordinals (`ordinalTier`), so the pinned tiers' ordinals are skipped in each.
   */
  async demand(target: number, versions?: string[]): Promise<FleetDemand> {
    const k = this.keys;
    const raw = await this.redis.get(k.tierConfig());
    const document = raw ? (JSON.parse(raw) as { order: string[]; extra: string; tiers: Record<string, { type: string; target: number }> }) : null;
    const extraTier = document?.extra ?? 'standard';
    const pinnedOrdinals = document ? document.order.reduce((sum, tier) => sum + (document.tiers[tier]?.target ?? 0), 0) : 0;
    // One MULTI: a hand-off between separate reads would count the same pod as free and its waiter as demand.
    const pipeline = this.redis.multi();
    if (versions) for (const version of versions) pipeline.zintercard(2, k.poolAvailable(extraTier), k.versionPods(version));
    else if (document?.tiers[extraTier]?.type === 'shared') pipeline.zcard(k.poolAvailable(extraTier));
    else pipeline.scard(k.poolAvailable(extraTier));
    pipeline.zcard(k.waitQueue());
    const candidates: string[] = [];
    for (let ordinal = pinnedOrdinals; ordinal < target; ordinal += 1) candidates.push(`${this.statefulSet}-${ordinal}`);
    for (const name of candidates) pipeline.hmget(k.pod(name), 'ready', 'terminating');
    const replies = (await pipeline.exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    const counts = versions ? versions.length : 1;
    const free = replies.slice(0, counts).reduce((sum, [, count]) => sum + Number(count), 0);
    const starting = replies.slice(counts + 1).filter(([, state]) => {
      const [ready, terminating] = state as (string | null)[];
      return ready !== '1' || terminating === '1';
    }).length;
    return { extraTier, free, waiting: Number(replies[counts][1]), starting };
  }

  async unlock(lockToken: string): Promise<void> {
    await this.script('unlockFleet')(this.keys.fleetLock(), lockToken);
  }
}
