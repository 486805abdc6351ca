import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { AppsV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { LoggerService } from '@nestjs/common';
import { Counter } from '@opentelemetry/api';
import { parseStoredRollout } from '@smart-router/allocation';
import { AutoscalerSettings, FleetSettings, parseStoredAutoscaler } from '@smart-router/config';
import { RedisKeys } from '@smart-router/redis-keys';
import { FleetScripts, FleetStep } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';

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
  /**
   * The summed percent of every serving version whose StatefulSet is known
   * (100 once all are): shares are taken of this, since a version whose
   * StatefulSet is not learned yet has no pod and its calls spill to the others.
   */
  of: number;
}

/**
 * The autoscaler's buffer under a rollout (SPEC 12: "keeps its buffer across
 * versions in proportion to the split"): each StatefulSet serving a version
 * with percent > 0 keeps ceil(buffer × percent / whole) free pods (so a canary
 * of 1 % still gets one when the buffer is above 0), waiting requests split
 * the same way; min_replicas likewise (ceil). `whole` is the known shares'
 * sum (FleetShare.of); integers throughout, so no rounding error.
 */
export function shareOf(total: number, percent: number, whole = 100): number {
  return total > 0 && percent > 0 && whole > 0 ? Math.ceil((total * percent) / whole) : 0;
}

/**
 * max_replicas under a split (decision): it stays the bound of the whole fleet
 * the autoscaler sizes (SPEC 9.1), so it is apportioned, never rounded up per
 * StatefulSet: each serving StatefulSet first gets one replica (largest percent
 * first while they last: a canary above 0 % always has a pod to serve it), the
 * rest goes by percent, the largest remainders taking what flooring leaves
 * (ties: the earlier target). The caps sum to exactly `max` (50/50 of 10: 5 and
 * 5; 99/1 of 10: 9 and 1). StatefulSets the autoscaler does not size (versions
 * at 0 %, or not learned yet) are not counted.
 */
export function splitMaxReplicas(max: number, percents: number[]): number[] {
  const caps = percents.map(() => 0);
  const order = percents.map((_, index) => index).sort((a, b) => percents[b] - percents[a] || a - b);
  let left = max;
  for (const index of order) {
    if (left === 0) break;
    caps[index] = 1;
    left -= 1;
  }
  const whole = percents.reduce((sum, percent) => sum + percent, 0);
  if (left === 0 || whole === 0) return caps;
  const rest = left;
  const exact = percents.map((percent) => (rest * percent) / whole);
  for (const [index, value] of exact.entries()) {
    caps[index] += Math.floor(value);
    left -= Math.floor(value);
  }
  const byRemainder = exact.map((_, index) => index).sort((a, b) => ((rest * percents[b]) % whole) - ((rest * percents[a]) % whole) || a - b);
  for (const index of byRemainder) {
    if (left === 0) break;
    caps[index] += 1;
    left -= 1;
  }
  return caps;
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
  /** Another StatefulSet's step that failed (a Kubernetes or Redis error), by StatefulSet; the tick went on. */
  private readonly otherErrors: Counter | null;

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
    telemetry?: Telemetry,
  ) {
    this.apps = kube.makeApiClient(AppsV1Api);
    this.otherErrors = telemetry?.meter().createCounter('smart_router_fleet_step_errors_total', {
      description: 'Steps of a StatefulSet other than VOICE_AGENT_STATEFULSET under a rollout split that failed and were skipped this tick, by statefulset',
    }) ?? null;
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
          const parts = this.partsOf(settings, shares);
          if (own) decision = await this.autoscale(parts.get(own)!, replicas, step.target, now, this.fleet, own);
          others = await this.autoscaleOthers(parts, shares.filter((share) => share !== own), now);
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
    const demand = share ? await this.shareDemand(fleet, share, target) : await fleet.demand(target);
    const wanted = target + demand.waiting + settings.buffer - demand.free - demand.starting;
    const desired = Math.min(settings.max_replicas, Math.max(settings.min_replicas, wanted));
    const state = this.keys.autoscalerState();
    // Under a split, another StatefulSet's figures and surplus clock are fields suffixed `:{sts}`; the
    // primary keeps the plain ones (admin's GET …/autoscaler reads them).
    const suffix = share && share.statefulSet !== this.settings.statefulSet ? `:${share.statefulSet}` : '';
    const field = (name: string) => `${name}${suffix}`;
    await this.redis.hset(state, {
      [field('desired')]: desired, [field('free')]: demand.free, [field('waiting')]: demand.waiting, [field('starting')]: demand.starting,
      [field('replicas')]: replicas, at: now,
      ...(share ? { [field('buffer')]: settings.buffer, [field('percent')]: share.percent, [field('max_replicas')]: settings.max_replicas } : {}),
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
    if (share) {
      const known = share.of === 100 ? '' : `, taken of the ${share.of} % whose StatefulSets are known`;
      reason = `${reason} (${share.percent} % of the split${known}: versions ${share.versions.map((version) => JSON.stringify(version)).join(', ')})`;
    }
    const planned = await fleet.plan(desired, `autoscaler: ${reason}`, now);
    if (!planned) return undefined;
    const decision: FleetDecision = { at: now, from: target, to: desired, reason };
    await this.redis.hset(state, field('last_decision'), JSON.stringify(decision));
    this.logger.log(`autoscaler${share ? ` ${share.statefulSet}` : ''}: ${target} -> ${desired} (${reason})`, 'Fleet');
    return decision;
  }

  /**
   * The settings each StatefulSet keeps under a split: its share of buffer and
   * min_replicas (rounded up), its apportioned part of max_replicas.
   */
  private partsOf(settings: AutoscalerSettings, shares: FleetShare[]): Map<FleetShare, AutoscalerSettings> {
    const caps = splitMaxReplicas(settings.max_replicas, shares.map((share) => share.percent));
    return new Map(shares.map((share, index) => [share, {
      ...settings,
      buffer: shareOf(settings.buffer, share.percent, share.of),
      min_replicas: shareOf(settings.min_replicas, share.percent, share.of),
      max_replicas: caps[index],
    }]));
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
      const share = byName.get(statefulSet) ?? { statefulSet, versions: [], percent: 0, of: 100 };
      share.versions.push(target.version);
      share.percent += target.percent;
      byName.set(statefulSet, share);
    }
    const shares = [...byName.values()];
    // A serving version whose StatefulSet is not learned yet has no pod here: its calls spill to the
    // others, so the known shares split the whole buffer between them (percent of their sum).
    const known = shares.reduce((sum, share) => sum + share.percent, 0);
    for (const share of shares) share.of = known;
    // Even with only the primary serving, its free pods are counted by its versions: a version at 0 % serves no call.
    return shares.length > 0 ? shares : null;
  }

  /**
   * A StatefulSet's demand under a split: its versions' free pods in the
   * extra tier, its own pods below `target` not Ready yet (one MULTI, in
   * FleetScripts.demand), and its share of the waiting requests (a waiter
   * takes any serving version).
   */
  private async shareDemand(fleet: FleetScripts, share: FleetShare, target: number): Promise<{ free: number; waiting: number; starting: number }> {
    const demand = await fleet.demand(target, share.versions);
    return { free: demand.free, waiting: shareOf(demand.waiting, share.percent, share.of), starting: demand.starting };
  }

  /**
   * Sizes every other serving StatefulSet by its share, under the fleet lock this tick holds: plan, step, patch.
   * One StatefulSet's failure (a 403 for a StatefulSet outside the Role's resourceNames, a timeout) is
   * logged, counted and skipped: the others and the primary's step and patch still run this tick, and
   * the failed one is tried again next tick. A deleted one (404) is skipped silently.
   */
  private async autoscaleOthers(parts: Map<FleetShare, AutoscalerSettings>, shares: FleetShare[], now: number): Promise<Record<string, FleetDecision>> {
    const decisions: Record<string, FleetDecision> = {};
    for (const share of shares) {
      try {
        const decision = await this.autoscaleOther(parts.get(share)!, share, now);
        if (decision) decisions[share.statefulSet] = decision;
      } catch (error) {
        this.otherErrors?.add(1, { statefulset: share.statefulSet });
        this.logger.warn(`fleet: ${share.statefulSet} skipped this tick: ${errorLine(error)}`, 'Fleet');
      }
    }
    return decisions;
  }

  private async autoscaleOther(settings: AutoscalerSettings, share: FleetShare, now: number): Promise<FleetDecision | undefined> {
    const fleet = this.scriptsOf!(share.statefulSet);
    let replicas: number;
    try {
      replicas = (await this.apps.readNamespacedStatefulSetScale({ name: share.statefulSet, namespace: this.namespace })).spec?.replicas ?? 0;
    } catch (error) {
      if ((error as { code?: number }).code === 404) return undefined;
      throw error;
    }
    let step = await fleet.step(replicas, this.token, this.lockTtlMs, now);
    if (step.action === 'locked') return undefined;
    const decision = await this.autoscale(settings, replicas, step.target, now, fleet, share);
    if (decision) step = await fleet.step(replicas, this.token, this.lockTtlMs, now);
    if (step.action === 'scale_up' || step.action === 'scale_down') {
      await this.apps.patchNamespacedStatefulSetScale(
        { name: share.statefulSet, namespace: this.namespace, body: { spec: { replicas: step.target } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      this.logger.log(`fleet: ${share.statefulSet} spec.replicas ${replicas} -> ${step.target}`, 'Fleet');
    }
    return decision;
  }
}

/** One line for a log: a Kubernetes ApiException's code, else the message. */
export function errorLine(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
  return typeof code === 'number' ? `HTTP ${code}: ${message.slice(0, 200)}` : message.slice(0, 200);
}
