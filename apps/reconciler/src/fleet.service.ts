import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { AppsV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { LoggerService } from '@nestjs/common';
import { parseStoredRollout } from '@smart-router/allocation';
import { AutoscalerSettings, FleetSettings, parseStoredAutoscaler } from '@smart-router/config';
import { RedisKeys } from '@smart-router/redis-keys';
import { FleetScripts, FleetStep } from '@smart-router/redis-scripts';

export interface FleetDecision {
  at: number;
  from: number;
  to: number;
  reason: string;
}

export interface FleetTickReport {
  replicas: number;
  step: FleetStep['action'];
  target?: number;
  decision?: FleetDecision;
  /** Under a rollout split across StatefulSets: each other StatefulSet's decision, by name. */
  others?: Record<string, FleetDecision>;
}

/** One StatefulSet's part of a live rollout (SPEC 12): its versions' summed percent. */
export interface FleetShare {
  statefulSet: string;
  versions: string[];
  percent: number;
}

/**
 * The autoscaler's buffer under a rollout (SPEC 12: "keeps its buffer across
 * versions in proportion to the split"): each StatefulSet serving a version
 * with percent > 0 keeps ceil(buffer × percent / 100) free pods (so a canary
 * of 1 % still gets one when the buffer is above 0), waiting requests split
 * the same way; min_replicas likewise (ceil), max_replicas bounds each.
 */
export function shareOf(total: number, percent: number): number {
  return total > 0 && percent > 0 ? Math.ceil((total * percent) / 100) : 0;
}

/**
 * The fleet job: reads the voice-agent StatefulSet's scale subresource, lets
 * the autoscaler decide (when enabled), and carries out the plan kept in Redis
 * (stepFleet): up at once, down only once the pods to remove hold no call.
 * One decision at a time across replicas: the step takes the fleet lock.
 */
export class FleetService {
  private readonly apps: AppsV1Api;
  /** One lock token per process. */
  private readonly token = `${process.pid}-${randomUUID()}`;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly fleet: FleetScripts,
    kube: KubeConfig,
    private readonly namespace: string,
    private readonly settings: FleetSettings,
    private readonly lockTtlMs: number,
    private readonly logger: LoggerService,
    /**
     * The plan scripts of another agent StatefulSet (fleet:plan:{sts}), as
     * the rollout mover has them; absent = the autoscaler sizes only
     * VOICE_AGENT_STATEFULSET, whatever the rollout.
     */
    private readonly scriptsOf?: (statefulSet: string) => FleetScripts,
  ) {
    this.apps = kube.makeApiClient(AppsV1Api);
  }

  async autoscaler(): Promise<AutoscalerSettings> {
    return parseStoredAutoscaler(await this.redis.get(this.keys.autoscalerConfig()), this.settings.autoscaler);
  }

  async tick(now = Date.now()): Promise<FleetTickReport | null> {
    const scale = await this.apps.readNamespacedStatefulSetScale({ name: this.settings.statefulSet, namespace: this.namespace });
    const replicas = scale.spec?.replicas ?? 0;
    let step = await this.fleet.step(replicas, this.token, this.lockTtlMs, now);
    if (step.action === 'locked') return null;
    try {
      const settings = await this.autoscaler();
      let decision: FleetDecision | undefined;
      // A rollout's replica move (SPEC 12, rollout-move.ts) owns the sizes until it is done.
      let others: Record<string, FleetDecision> | undefined;
      if (settings.enabled && (await this.redis.exists(this.keys.rolloutMove())) === 0) {
        const shares = await this.shares();
        if (shares) {
          // A split across StatefulSets: each keeps its part of the buffer. The primary's
          // version at 0 % (or outside the targets) is left where it is (a move or an operator sizes it).
          const own = shares.find((share) => share.statefulSet === this.settings.statefulSet);
          if (own) decision = await this.autoscale(this.partOf(settings, own.percent), replicas, step.target, now, this.fleet, own);
          others = await this.autoscaleOthers(settings, shares.filter((share) => share !== own), now);
        } else {
          decision = await this.autoscale(settings, replicas, step.target, now);
        }
        if (decision) step = await this.fleet.step(replicas, this.token, this.lockTtlMs, now);
      }
      if (step.action === 'scale_up' || step.action === 'scale_down') {
        await this.apps.patchNamespacedStatefulSetScale(
          { name: this.settings.statefulSet, namespace: this.namespace, body: { spec: { replicas: step.target } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        this.logger.log(`fleet: spec.replicas ${replicas} -> ${step.target}`, 'Fleet');
      }
      return { replicas, step: step.action, target: 'target' in step ? step.target : undefined, decision, ...(others ? { others } : {}) };
    } finally {
      await this.fleet.unlock(this.token).catch(() => undefined);
    }
  }

  /**
   * Keeps `buffer` free pods in the extra tier, waiting requests counting as
   * demand and pods not Ready yet as supply on its way: up at once, down only
   * after `scale_down_delay_seconds` of continuous surplus. Returns the
   * decision when it changed the target.
   */
  private async autoscale(
    settings: AutoscalerSettings, replicas: number, target: number, now: number, fleet = this.fleet, share?: FleetShare,
  ): Promise<FleetDecision | undefined> {
    const demand = share ? await this.shareDemand(share, target) : await fleet.demand(target);
    const wanted = target + demand.waiting + settings.buffer - demand.free - demand.starting;
    const desired = Math.min(settings.max_replicas, Math.max(settings.min_replicas, wanted));
    const state = this.keys.autoscalerState();
    // Under a split, another StatefulSet's figures and surplus clock are fields suffixed `:{sts}`; the
    // primary keeps the plain ones (admin's GET …/autoscaler reads them).
    const suffix = share && share.statefulSet !== this.settings.statefulSet ? `:${share.statefulSet}` : '';
    const field = (name: string) => `${name}${suffix}`;
    await this.redis.hset(state, {
      [field('desired')]: desired, [field('free')]: demand.free, [field('waiting')]: demand.waiting, [field('starting')]: demand.starting,
      [field('replicas')]: replicas, at: now, ...(share ? { [field('buffer')]: settings.buffer, [field('percent')]: share.percent } : {}),
    });
    let reason: string | null = null;
    if (desired > target) {
      reason = `free ${demand.free} + starting ${demand.starting} < buffer ${settings.buffer} + waiting ${demand.waiting}`;
      if (wanted < settings.min_replicas) reason = `below min_replicas ${settings.min_replicas}`;
      await this.redis.hdel(state, field('surplus_since'));
    } else if (desired < target) {
      const since = Number((await this.redis.hget(state, field('surplus_since'))) ?? NaN);
      if (!Number.isFinite(since)) {
        await this.redis.hset(state, field('surplus_since'), now);
        return undefined;
      }
      if (now - since < settings.scale_down_delay_seconds * 1000) return undefined;
      reason = wanted > settings.max_replicas
        ? `above max_replicas ${settings.max_replicas}`
        : `surplus for ${Math.round((now - since) / 1000)} s: free ${demand.free} > buffer ${settings.buffer} + waiting ${demand.waiting}`;
      await this.redis.hdel(state, field('surplus_since'));
    } else {
      await this.redis.hdel(state, field('surplus_since'));
      return undefined;
    }
    if (share) reason = `${reason} (${share.percent} % of the split: versions ${share.versions.map((version) => JSON.stringify(version)).join(', ')})`;
    const planned = await fleet.plan(desired, `autoscaler: ${reason}`, now);
    if (!planned) return undefined;
    const decision: FleetDecision = { at: now, from: target, to: desired, reason };
    await this.redis.hset(state, field('last_decision'), JSON.stringify(decision));
    this.logger.log(`autoscaler${share ? ` ${share.statefulSet}` : ''}: ${target} -> ${desired} (${reason})`, 'Fleet');
    return decision;
  }

  /** The settings one StatefulSet keeps under a split: its share of buffer and min_replicas (rounded up). */
  private partOf(settings: AutoscalerSettings, percent: number): AutoscalerSettings {
    return { ...settings, buffer: shareOf(settings.buffer, percent), min_replicas: shareOf(settings.min_replicas, percent) };
  }

  /**
   * The live rollout's serving versions grouped by StatefulSet (learned by the
   * rollout mover in rollout:statefulsets); null with no rollout or no
   * serving version's StatefulSet known: the autoscaler then works as before.
   */
  private async shares(): Promise<FleetShare[] | null> {
    if (!this.scriptsOf) return null;
    const live = parseStoredRollout(await this.redis.get(this.keys.rollout()));
    if (!live) return null;
    const map = await this.redis.hgetall(this.keys.versionStatefulSets());
    const byName = new Map<string, FleetShare>();
    for (const target of live.targets) {
      const statefulSet = map[target.version];
      if (target.percent <= 0 || !statefulSet) continue;
      const share = byName.get(statefulSet) ?? { statefulSet, versions: [], percent: 0 };
      share.versions.push(target.version);
      share.percent += target.percent;
      byName.set(statefulSet, share);
    }
    const shares = [...byName.values()];
    // Even with only the primary serving, its free pods are counted by its versions: a version at 0 % serves no call.
    return shares.length > 0 ? shares : null;
  }

  /**
   * A StatefulSet's demand under a split: its versions' free pods in the
   * extra tier, its share of the waiting requests (a waiter takes any
   * serving version), and its own pods below `target` not Ready yet.
   */
  private async shareDemand(share: FleetShare, target: number): Promise<{ free: number; waiting: number; starting: number }> {
    const k = this.keys;
    const overall = await this.fleet.demand(target);
    const extra = overall.extraTier;
    const shared = (await this.redis.type(k.poolAvailable(extra))) === 'zset';
    const available = shared ? await this.redis.zrange(k.poolAvailable(extra), 0, -1) : await this.redis.smembers(k.poolAvailable(extra));
    let free = 0;
    if (available.length > 0) {
      for (const version of share.versions) {
        const member = await this.redis.smismember(k.versionPods(version), ...available);
        free += member.filter((value) => value === 1).length;
      }
    }
    let starting = overall.starting;
    if (share.statefulSet !== this.settings.statefulSet) {
      starting = 0;
      for (let ordinal = 0; ordinal < target; ordinal += 1) {
        const [ready, terminating] = await this.redis.hmget(k.pod(`${share.statefulSet}-${ordinal}`), 'ready', 'terminating');
        if (ready !== '1' || terminating === '1') starting += 1;
      }
    }
    return { free, waiting: shareOf(overall.waiting, share.percent), starting };
  }

  /** Sizes every other serving StatefulSet by its share, under the fleet lock this tick holds: plan, step, patch. */
  private async autoscaleOthers(settings: AutoscalerSettings, shares: FleetShare[], now: number): Promise<Record<string, FleetDecision>> {
    const decisions: Record<string, FleetDecision> = {};
    for (const share of shares) {
      const fleet = this.scriptsOf!(share.statefulSet);
      let replicas: number;
      try {
        replicas = (await this.apps.readNamespacedStatefulSetScale({ name: share.statefulSet, namespace: this.namespace })).spec?.replicas ?? 0;
      } catch (error) {
        if ((error as { code?: number }).code === 404) continue;
        throw error;
      }
      let step = await fleet.step(replicas, this.token, this.lockTtlMs, now);
      if (step.action === 'locked') continue;
      const decision = await this.autoscale(this.partOf(settings, share.percent), replicas, step.target, now, fleet, share);
      if (decision) {
        decisions[share.statefulSet] = decision;
        step = await fleet.step(replicas, this.token, this.lockTtlMs, now);
      }
      if (step.action === 'scale_up' || step.action === 'scale_down') {
        await this.apps.patchNamespacedStatefulSetScale(
          { name: share.statefulSet, namespace: this.namespace, body: { spec: { replicas: step.target } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        this.logger.log(`fleet: ${share.statefulSet} spec.replicas ${replicas} -> ${step.target}`, 'Fleet');
      }
    }
    return decisions;
  }
}
