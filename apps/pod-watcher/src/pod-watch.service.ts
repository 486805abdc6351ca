import { Injectable, LoggerService, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { Counter, ObservableGauge } from '@opentelemetry/api';
import { KubeConfig } from '@kubernetes/client-node';
import { LeaseElector, PodChange, PodInformer } from '@smart-router/kube';
import { RESERVED_POD_NAMES } from '@smart-router/redis-keys';
import { Telemetry, inSpan, injectTraceContext } from '@smart-router/telemetry';
import { PodEventPublisher } from './pod-event.publisher';
import { PodWatcherConfig } from './pod-watcher.config';

/** How many refused pods' UIDs the watcher remembers (one warn line each); beyond, the oldest is forgotten. */
export const MAX_REFUSED_UIDS = 1000;

/**
 * The UIDs of pods already reported as refused, in the order first seen:
 * forgotten when the pod is deleted, and at most `max` kept (the oldest
 * dropped first: such a pod, if it still exists, is warned about once more).
 */
export class RefusedPods {
  private readonly uids = new Set<string>();

  constructor(private readonly max = MAX_REFUSED_UIDS) {}

  get size(): number {
    return this.uids.size;
  }

  /** Records `uid`; true when it was not known yet (warn about it). */
  add(uid: string): boolean {
    if (this.uids.has(uid)) return false;
    this.uids.add(uid);
    while (this.uids.size > this.max) this.uids.delete(this.uids.values().next().value!);
    return true;
  }

  delete(uid: string): void {
    this.uids.delete(uid);
  }
}

/**
 * Campaigns for the watcher Lease; while leading, lists + watches the pods
 * and publishes one event per change, stamped with the leader term. A standby
 * keeps campaigning and takes over within the lease duration.
 */
@Injectable()
export class PodWatchService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly elector: LeaseElector;
  private readonly informer: PodInformer;
  private readonly published: Counter;
  private readonly failures: Counter;
  private readonly refused: Counter;
  /** Pods already reported as refused (one warn line each), bounded. */
  readonly refusedPods = new RefusedPods();
  private readonly leaderGauge: ObservableGauge;
  private chain: Promise<unknown> = Promise.resolve();
  private publishFailing = false;

  constructor(
    kube: KubeConfig,
    private readonly config: PodWatcherConfig,
    private readonly publisher: PodEventPublisher,
    private readonly telemetry: Telemetry,
    private readonly logger: LoggerService,
  ) {
    const meter = telemetry.meter();
    this.published = meter.createCounter('smart_router_pod_events_published_total', { description: 'Pod events appended to the pod stream' });
    this.failures = meter.createCounter('smart_router_pod_watch_errors_total', { description: 'Watch, lease and publish errors' });
    this.refused = meter.createCounter('smart_router_pod_events_refused_total', { description: 'Pod changes not published: the pod name is reserved (e.g. metadata)' });
    this.leaderGauge = meter.createObservableGauge('smart_router_leader', { description: '1 while this watcher holds the lease' });
    this.leaderGauge.addCallback((result) => result.observe(this.isLeader ? 1 : 0, { app: 'pod-watcher' }));
    this.informer = new PodInformer(kube, {
      namespace: config.namespace,
      labelSelector: config.labelSelector,
      onChange: (change) => this.enqueue(change),
      onSynced: () => this.logger.log('pod watch synced', 'PodWatch'),
      onError: (error) => {
        this.failures.add(1, { source: 'watch' });
        this.logger.warn(`pod watch error, relisting: ${(error as Error)?.message ?? String(error)}`, 'PodWatch');
      },
    });
    this.elector = new LeaseElector(kube, {
      namespace: config.namespace,
      leaseName: config.leaseName,
      identity: config.identity,
      leaseDurationSeconds: config.leaseDurationSeconds,
      retryPeriodMs: config.leaseRetryMs,
      onStartedLeading: async (term) => {
        this.logger.log(`became leader (term ${term})`, 'PodWatch');
        await this.informer.start();
      },
      onRenewed: (term) =>
        this.publisher.heartbeat(config.identity, term, config.leaseDurationSeconds * 1000).catch((error: Error) => {
          // Only the admin status page reads it; the next renewal writes it again.
          this.failures.add(1, { source: 'heartbeat' });
          this.logger.warn(`could not record leadership in Redis: ${error.message}`, 'PodWatch');
        }),
      onStoppedLeading: async () => {
        this.logger.warn('lost leadership, stopping the watch', 'PodWatch');
        await this.informer.stop();
      },
      onError: (error) => {
        this.failures.add(1, { source: 'lease' });
        this.logger.warn(`lease error: ${(error as Error)?.message ?? String(error)}`, 'PodWatch');
      },
    });
  }

  get isLeader(): boolean {
    return this.elector.isLeader;
  }

  /** Watching, and every event so far reached the stream. */
  get synced(): boolean {
    return this.informer.synced && !this.publishFailing;
  }

  get term(): number | null {
    return this.elector.term;
  }

  onApplicationBootstrap(): void {
    this.elector.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.elector.stop();
    await this.informer.stop();
    await this.chain;
  }

  /** Publishes in arrival order: a delete must never overtake the add before it. */
  private enqueue(change: PodChange): void {
    const term = this.elector.term;
    if (term === null) return;
    if (RESERVED_POD_NAMES.has(change.pod.name)) return this.refuse(change);
    this.chain = this.chain.then(() => this.publish(change, term));
  }

  /**
   * A pod whose name is a key of the schema (`metadata`: `pod:metadata` is the seed's
   * metadata hash) never reaches the stream, so no script writes its record over that
   * key. Counted per event; one warn line per pod (UID), not one per change; its UID is
   * forgotten when it is deleted (and at most MAX_REFUSED_UIDS are kept).
   */
  private refuse(change: PodChange): void {
    this.refused.add(1, { reason: 'reserved_name' });
    if (change.type === 'deleted') return this.refusedPods.delete(change.pod.uid);
    if (!this.refusedPods.add(change.pod.uid)) return;
    this.logger.warn(`refusing pod "${change.pod.name}" (uid ${change.pod.uid}): its Redis key would be another key of the schema; rename the pod`, 'PodWatch');
  }

  /**
   * Appends one event, retrying with backoff until Redis takes it: dropping it
   * would leave a deleted or not-ready pod allocatable until the next full
   * reconcile. Gives up only when this term is over (the next leader relists
   * everything); meanwhile readiness fails so the outage is visible.
   */
  private async publish(change: PodChange, term: number): Promise<void> {
    const { pod } = change;
    for (let attempt = 1; this.elector.term === term; attempt += 1) {
      try {
        await inSpan(this.telemetry.tracer(), 'publishPodEvent', () => this.publisher.publish({
          type: change.type === 'deleted' ? 'pod.deleted' : 'pod.upsert',
          name: pod.name, uid: pod.uid, ready: pod.ready, terminating: pod.terminating,
          labels: pod.labels, resourceVersion: pod.resourceVersion, term, trace: injectTraceContext(),
        }), { 'pod.name': pod.name });
        this.published.add(1, { type: change.type });
        this.publishFailing = false;
        return;
      } catch (error) {
        this.publishFailing = true;
        this.failures.add(1, { source: 'publish' });
        this.logger.error(`could not publish ${change.type} of ${pod.name} (attempt ${attempt}), retrying: ${(error as Error).message}`, 'PodWatch');
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 2000)));
      }
    }
  }
}
