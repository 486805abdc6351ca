import { CoordinationV1Api, KubeConfig, V1Lease } from '@kubernetes/client-node';

export interface LeaseElectorOptions {
  namespace: string;
  leaseName: string;
  identity: string;
  leaseDurationSeconds: number;
  /** How often the holder renews and candidates retry (well under the duration). */
  retryPeriodMs: number;
  onStartedLeading(term: number): void | Promise<void>;
  onStoppedLeading(): void | Promise<void>;
  /** After every successful renewal while leading. */
  onRenewed?(term: number): void | Promise<void>;
  onError?(error: unknown): void;
}

/**
 * Leader election on a coordination.k8s.io/v1 Lease with optimistic
 * concurrency (client-node ships none). Expiry is judged by when *we* last saw
 * the lease change, on our monotonic clock, never by the holder's renewTime,
 * so clock skew between nodes does not matter (client-go's rule).
 * The term is `leaseTransitions`: it increases with every change of holder and
 * travels on every event, so events from a deposed leader can be dropped.
 *
 * The renew loop is a timer by nature (like client-go's); it is the one timer
 * in the system and does no cluster work beyond the Lease itself.
 */
export class LeaseElector {
  private readonly api: CoordinationV1Api;
  private timer: NodeJS.Timeout | null = null;
  private observed: { resourceVersion: string; at: number } | null = null;
  private leadingTerm: number | null = null;
  private stopped = false;

  constructor(config: KubeConfig, private readonly options: LeaseElectorOptions) {
    this.api = config.makeApiClient(CoordinationV1Api);
  }

  get isLeader(): boolean {
    return this.leadingTerm !== null;
  }

  get term(): number | null {
    return this.leadingTerm;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  /** Stops campaigning and, when leading, hands the lease back so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.leadingTerm !== null) {
      await this.releaseLease().catch((error) => this.options.onError?.(error));
      await this.lose();
    }
  }

  private schedule(): void {
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.options.retryPeriodMs);
  }

  private async tick(): Promise<void> {
    try {
      await this.tryAcquireOrRenew();
    } catch (error) {
      this.options.onError?.(error);
      // Could not confirm leadership: past the lease duration we must assume we lost it.
      if (this.leadingTerm !== null && this.observed && this.now() - this.observed.at > this.options.leaseDurationSeconds * 1000) {
        await this.lose();
      }
    }
    this.schedule();
  }

  private now(): number {
    return Number(process.hrtime.bigint() / 1000000n);
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { namespace, leaseName: name, identity } = this.options;
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (error) {
      if ((error as { code?: number }).code !== 404) throw error;
      const created = await this.api.createNamespacedLease({ namespace, body: this.leaseBody(undefined, 0) }).catch((createError) => {
        if ((createError as { code?: number }).code === 409) return null;
        throw createError;
      });
      if (created) await this.win(created);
      return;
    }

    const resourceVersion = lease.metadata?.resourceVersion ?? '';
    if (!this.observed || this.observed.resourceVersion !== resourceVersion) this.observed = { resourceVersion, at: this.now() };
    const holder = lease.spec?.holderIdentity ?? '';
    const duration = (lease.spec?.leaseDurationSeconds ?? this.options.leaseDurationSeconds) * 1000;
    const expired = !holder || this.now() - this.observed.at > duration;

    if (holder !== identity && !expired) {
      if (this.leadingTerm !== null) await this.lose();
      return;
    }
    const transitions = lease.spec?.leaseTransitions ?? 0;
    const term = holder === identity ? transitions : transitions + 1;
    try {
      const updated = await this.api.replaceNamespacedLease({ name, namespace, body: this.leaseBody(lease, term) });
      this.observed = { resourceVersion: updated.metadata?.resourceVersion ?? '', at: this.now() };
      if (this.leadingTerm === null || this.leadingTerm !== term) await this.win(updated);
      await this.options.onRenewed?.(term);
    } catch (error) {
      // 409: somebody else renewed or took it between our read and write.
      if ((error as { code?: number }).code === 409) {
        if (this.leadingTerm !== null) await this.lose();
        return;
      }
      throw error;
    }
  }

  private leaseBody(current: V1Lease | undefined, term: number): V1Lease {
    const now = new Date();
    const keepAcquire = current?.spec?.holderIdentity === this.options.identity;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.options.leaseName, namespace: this.options.namespace, resourceVersion: current?.metadata?.resourceVersion },
      spec: {
        holderIdentity: this.options.identity,
        leaseDurationSeconds: this.options.leaseDurationSeconds,
        acquireTime: keepAcquire ? current?.spec?.acquireTime : (now as unknown as V1Lease['spec'] & Date),
        renewTime: now as never,
        leaseTransitions: term,
      },
    } as V1Lease;
  }

  private async releaseLease(): Promise<void> {
    const { namespace, leaseName: name } = this.options;
    const lease = await this.api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== this.options.identity) return;
    await this.api.replaceNamespacedLease({
      name, namespace,
      body: { ...lease, spec: { ...lease.spec, holderIdentity: undefined, renewTime: undefined, acquireTime: undefined } },
    });
  }

  private async win(lease: V1Lease): Promise<void> {
    this.leadingTerm = lease.spec?.leaseTransitions ?? 0;
    await this.options.onStartedLeading(this.leadingTerm);
  }

  private async lose(): Promise<void> {
    if (this.leadingTerm === null) return;
    this.leadingTerm = null;
    await this.options.onStoppedLeading();
  }
}
