import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { KubeConfig } from '@kubernetes/client-node';
import { LoggerService } from '@nestjs/common';
import { Counter } from '@opentelemetry/api';
import { CommonSettings } from '@smart-router/config';
import { PodEvent } from '@smart-router/events';
import { ScriptCode, toTierDocument } from '@smart-router/allocation';
import { TIER_LABEL, listPods } from '@smart-router/kube';
import { RESERVED_POD_NAMES, RedisKeys } from '@smart-router/redis-keys';
import { PoolScripts, StateMissingError } from '@smart-router/redis-scripts';
import { Telemetry, inSpan, withExtractedContext } from '@smart-router/telemetry';
import { allocationIdsOf, releaseUnconnectedCalls } from './connect-timeout.job';

export interface ReconcileReport {
  pods: number;
  removed: number;
  orphaned: number;
  durationMs: number;
}

/**
 * Every decision about pool membership. The reconciler is the only writer of
 * it; each write is one idempotent Lua script, so replaying an event, running
 * a job twice (BullMQ is at-least-once) or two replicas racing all converge.
 */
export class PoolReconcileService {
  private readonly applied: Counter;
  private readonly orphaned: Counter;
  private readonly staleEvents: Counter;
  private readonly reaped: Counter;
  private readonly sweeps: Counter;
  private readonly connectTimeouts: Counter;
  private rebuilding: Promise<ReconcileReport> | null = null;
  /** Highest watcher term this replica has applied events from. */
  private watcherTerm: number | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly scripts: PoolScripts,
    private readonly kube: KubeConfig,
    private readonly settings: CommonSettings,
    /** versionLabel: VERSION_LABEL as the reconciler's config read it (its default is there, only there). */
    private readonly target: { namespace: string; labelSelector: string; versionLabel: string },
    private readonly telemetry: Telemetry,
    private readonly logger: LoggerService,
  ) {
    const meter = telemetry.meter();
    this.applied = meter.createCounter('smart_router_pod_events_applied_total', { description: 'Pod events applied by result' });
    this.orphaned = meter.createCounter('smart_router_orphaned_calls_total', { description: 'Calls ended because their pod was deleted or replaced' });
    this.staleEvents = meter.createCounter('smart_router_stale_leader_events_total', { description: 'Events from a deposed watcher leader, dropped' });
    this.reaped = meter.createCounter('smart_router_reaped_calls_total', { description: 'Calls released for exceeding the maximum call duration' });
    this.sweeps = meter.createCounter('smart_router_zombie_corrections_total', { description: 'Pod state corrections made by the zombie sweep' });
    this.connectTimeouts = meter.createCounter('smart_router_connect_timeouts_total', { description: 'Calls released because their media stream never connected' });
  }

  /** Applies one watcher event. Returns false when the state must be rebuilt first. */
  async applyEvent(event: PodEvent): Promise<boolean> {
    this.noticeWatcherTerm(event.term);
    return withExtractedContext(event.trace, () =>
      inSpan(this.telemetry.tracer(), 'applyPodEvent', async () => {
        if (event.type === 'pod.deleted') {
          const result = await this.scripts.removePod(event.name, event.uid, event.term);
          return this.record(event, result);
        }
        const result = await this.scripts.upsertPod({
          name: event.name, uid: event.uid, ready: event.ready, terminating: event.terminating,
          metadata: { labels: event.labels, resourceVersion: event.resourceVersion },
          pinnedTier: this.pinnedTier(event.labels), term: event.term, version: this.version(event.labels),
        });
        return this.record(event, result);
      }, { 'pod.name': event.name, 'event.type': event.type }),
    );
  }

  private record(event: PodEvent, result: unknown): boolean {
    if (result === ScriptCode.StaleLeader) {
      this.staleEvents.add(1);
      this.applied.add(1, { type: event.type, result: 'stale_leader' });
      return true;
    }
    if (result === ScriptCode.StateMissing) {
      this.applied.add(1, { type: event.type, result: 'state_missing' });
      return false;
    }
    const orphans = typeof result === 'object' && result !== null ? (result as { orphaned: number }).orphaned : 0;
    if (orphans > 0) {
      this.orphaned.add(orphans);
      this.logger.warn(`${event.name}: ended ${orphans} orphaned call(s) (${event.type === 'pod.deleted' ? 'pod deleted' : 'pod replaced'})`, 'Reconcile');
    }
    this.applied.add(1, { type: event.type, result: 'applied' });
    return true;
  }

  /**
   * A new watcher leader starts from an empty cache: it publishes every pod it
   * lists but cannot know which pods were deleted while nobody was watching.
   * A fresh LIST covers that gap now instead of at the next scheduled run.
   * (This replica's first event sets the baseline: it reconciled at start-up.)
   */
  private noticeWatcherTerm(term: number): void {
    const previous = this.watcherTerm;
    if (previous !== null && term <= previous) return;
    this.watcherTerm = term;
    if (previous === null) return;
    this.logger.log(`watcher term ${previous} -> ${term}: full reconcile for deletions missed in between`, 'Reconcile');
    void this.fullReconcile('new-watcher-term').catch((error: Error) =>
      this.logger.warn(`full reconcile after a watcher change failed (the scheduled one retries): ${error.message}`, 'Reconcile'));
  }

  /** The pin label as given: the scripts check it against the live tier config. */
  private pinnedTier(labels: Record<string, string>): string {
    return labels[TIER_LABEL] ?? '';
  }

  /** The pod's agent version (SPEC 12): its VERSION_LABEL, '' without one. */
  private version(labels: Record<string, string>): string {
    return labels[this.target.versionLabel] ?? '';
  }

  /** Full reconcile against a fresh LIST; concurrent callers share one run. */
  fullReconcile(reason: string): Promise<ReconcileReport> {
    this.rebuilding ??= this.runFullReconcile(reason).finally(() => {
      this.rebuilding = null;
    });
    return this.rebuilding;
  }

  private async runFullReconcile(reason: string): Promise<ReconcileReport> {
    return inSpan(this.telemetry.tracer(), 'fullReconcile', async () => {
      const started = Date.now();
      // The tier config survives in Redis across restarts of the apps; after
      // data loss it comes back from TIER_CONFIG.
      const document = JSON.stringify(toTierDocument(this.settings.tiers, this.settings.extraPodsTier, this.settings.defaultChain));
      await this.redis.set(this.keys.tierConfig(), document, 'NX');
      const snapshotAt = Date.now();
      // A pod named like a key of the schema (`metadata`) is refused here as by the watcher.
      const pods = (await listPods(this.kube, this.target.namespace, this.target.labelSelector)).filter((pod) => !RESERVED_POD_NAMES.has(pod.name));

      let orphaned = 0;
      for (const pod of pods) {
        const result = await this.scripts.upsertPod({
          name: pod.name, uid: pod.uid, ready: pod.ready, terminating: pod.terminating,
          metadata: { labels: pod.labels, resourceVersion: pod.resourceVersion },
          pinnedTier: this.pinnedTier(pod.labels), term: null, snapshotAt, version: this.version(pod.labels),
        });
        if (result === ScriptCode.StateMissing) throw new StateMissingError('fullReconcile');
        if (typeof result === 'object') orphaned += result.orphaned;
      }
      const listed = new Set(pods.map((pod) => pod.name));
      let removed = 0;
      for (const name of await this.redis.smembers(this.keys.pods())) {
        if (listed.has(name)) continue;
        const result = await this.scripts.removePod(name, '', null, snapshotAt);
        if (typeof result === 'object') {
          removed += 1;
          orphaned += result.orphaned;
        }
      }
      if (orphaned > 0) this.orphaned.add(orphaned);
      // Allocation fails closed (STATE_REBUILDING) until this marker exists. Should a flush
      // land right here, the epoch is written onto an empty Redis; checkDataLoss still sees
      // the missing tier config and rebuilds.
      const created = await this.redis.set(this.keys.epoch(), randomUUID(), 'NX');
      const report = { pods: pods.length, removed, orphaned, durationMs: Date.now() - started };
      await this.redis.hset(this.keys.lastReconcile(), { at: Date.now(), reason, pods: report.pods, removed, orphaned, duration_ms: report.durationMs });
      if (created || removed || orphaned) this.logger.log(`full reconcile (${reason}): ${JSON.stringify(report)}${created ? ', state rebuilt' : ''}`, 'Reconcile');
      return report;
    }, { reason });
  }

  /** Zombie sweep: idle pods back to available, shared scores = real calls, dead call ids dropped. */
  async zombieSweep(): Promise<number> {
    let corrections = 0;
    for (const name of await this.redis.smembers(this.keys.pods())) corrections += await this.scripts.sweepPod(name);
    // Pods that had to stay in their old tier while busy move now that they may be idle.
    corrections += await this.scripts.rebalanceTiers();
    if (corrections > 0) {
      this.sweeps.add(corrections);
      this.logger.warn(`zombie sweep made ${corrections} correction(s)`, 'Reconcile');
    }
    return corrections;
  }

  /** Releases calls older than the maximum call duration (a voice agent that never released). */
  async reapStaleCalls(now = Date.now()): Promise<number> {
    const cutoff = now - this.settings.maxCallDurationSeconds * 1000;
    const stale = await this.redis.zrangebyscore(this.keys.activeCalls(), '-inf', cutoff, 'LIMIT', 0, 1000);
    let reaped = 0;
    const allocationIds = stale.length > 0 ? await allocationIdsOf(this.redis, this.keys, stale) : [];
    for (const [index, callSid] of stale.entries()) {
      const result = await this.scripts.release(callSid, 'max_call_duration', 'call.reaped', now, cutoff, { allocationId: allocationIds[index] });
      if (result.ok) reaped += 1;
    }
    if (reaped > 0) {
      this.reaped.add(reaped);
      this.logger.warn(`reaped ${reaped} call(s) older than ${this.settings.maxCallDurationSeconds}s`, 'Reconcile');
    }
    return reaped;
  }

  /** Releases calls past their connect deadline (connect-timeout.job.ts). */
  async releaseUnconnectedCalls(now = Date.now()): Promise<number> {
    const released = await releaseUnconnectedCalls(this.redis, this.keys, this.scripts, now);
    if (released > 0) {
      this.connectTimeouts.add(released);
      this.logger.warn(`released ${released} call(s) never connected by their deadline (connect_timeout)`, 'Reconcile');
    }
    return released;
  }

  /**
   * Data-loss check, by the allocator's own rule: the state is usable only
   * while both the epoch marker and the tier config exist (allocateCall
   * answers STATE_REBUILDING otherwise).
   */
  async checkDataLoss(): Promise<boolean> {
    if (await this.poolsBuilt()) return false;
    this.logger.warn('epoch marker or tier config missing: Redis lost its data, rebuilding pools from Kubernetes', 'Reconcile');
    await this.fullReconcile('data-loss');
    return true;
  }

  /** The pools are built (epoch marker and tier config present): what allocation needs to answer. */
  async poolsBuilt(): Promise<boolean> {
    return (await this.redis.exists(this.keys.epoch(), this.keys.tierConfig())) === 2;
  }
}
