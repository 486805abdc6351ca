import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { AppsV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { LoggerService } from '@nestjs/common';
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
      if (settings.enabled && (await this.redis.exists(this.keys.rolloutMove())) === 0) {
        decision = await this.autoscale(settings, replicas, step.target, now);
        if (decision) step = await this.fleet.step(replicas, this.token, this.lockTtlMs, now);
      }
      if (step.action === 'scale_up' || step.action === 'scale_down') {
        await this.apps.patchNamespacedStatefulSetScale(
          { name: this.settings.statefulSet, namespace: this.namespace, body: { spec: { replicas: step.target } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        this.logger.log(`fleet: spec.replicas ${replicas} -> ${step.target}`, 'Fleet');
      }
      return { replicas, step: step.action, target: 'target' in step ? step.target : undefined, decision };
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
  private async autoscale(settings: AutoscalerSettings, replicas: number, target: number, now: number): Promise<FleetDecision | undefined> {
    const demand = await this.fleet.demand(target);
    const wanted = target + demand.waiting + settings.buffer - demand.free - demand.starting;
    const desired = Math.min(settings.max_replicas, Math.max(settings.min_replicas, wanted));
    const state = this.keys.autoscalerState();
    await this.redis.hset(state, { desired, free: demand.free, waiting: demand.waiting, starting: demand.starting, replicas, at: now });
    let reason: string | null = null;
    if (desired > target) {
      reason = `free ${demand.free} + starting ${demand.starting} < buffer ${settings.buffer} + waiting ${demand.waiting}`;
      if (wanted < settings.min_replicas) reason = `below min_replicas ${settings.min_replicas}`;
      await this.redis.hdel(state, 'surplus_since');
    } else if (desired < target) {
      const since = Number((await this.redis.hget(state, 'surplus_since')) ?? NaN);
      if (!Number.isFinite(since)) {
        await this.redis.hset(state, 'surplus_since', now);
        return undefined;
      }
      if (now - since < settings.scale_down_delay_seconds * 1000) return undefined;
      reason = wanted > settings.max_replicas
        ? `above max_replicas ${settings.max_replicas}`
        : `surplus for ${Math.round((now - since) / 1000)} s: free ${demand.free} > buffer ${settings.buffer} + waiting ${demand.waiting}`;
      await this.redis.hdel(state, 'surplus_since');
    } else {
      await this.redis.hdel(state, 'surplus_since');
      return undefined;
    }
    const planned = await this.fleet.plan(desired, `autoscaler: ${reason}`, now);
    if (!planned) return undefined;
    const decision: FleetDecision = { at: now, from: target, to: desired, reason };
    await this.redis.hset(state, 'last_decision', JSON.stringify(decision));
    this.logger.log(`autoscaler: ${target} -> ${desired} (${reason})`, 'Fleet');
    return decision;
  }
}
