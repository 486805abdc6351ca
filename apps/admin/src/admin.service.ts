import { ObservableGauge } from '@opentelemetry/api';
import { ApiError } from '@smart-router/http';
import { MerchantConfig, ScriptCode, fromTierDocument, merchantConfigProblem, toTierDocument } from '@smart-router/allocation';
import { InvariantViolation, PoolScripts, TierInUseError } from '@smart-router/redis-scripts';
import { validateTierConfig, ConfigError, CommonSettings } from '@smart-router/config';
import { Telemetry } from '@smart-router/telemetry';
import { PoolMetrics, guardStore } from '@smart-router/pool-state';
import { PoolStateRepository } from './pool-state.repository';
import { ReconcileQueue } from './reconcile-queue';

/**
 * The admin decisions. Reads may take several round trips (a status page is
 * a snapshot, not a transaction); every write is one Lua script or one
 * single-key command.
 */
export class AdminService {
  private violations = 0;
  private readonly gauge: ObservableGauge;

  constructor(
    private readonly repository: PoolStateRepository,
    private readonly scripts: PoolScripts,
    private readonly queue: ReconcileQueue,
    private readonly settings: CommonSettings,
    telemetry: Telemetry,
    private readonly metrics: PoolMetrics,
  ) {
    const meter = telemetry.meter();
    this.gauge = meter.createObservableGauge('smart_router_invariant_violations', { description: 'Invariant violations found by a check at scrape time' });
    // Checked when Prometheus scrapes, so the alert does not depend on someone calling the API (a failed check observes nothing).
    this.gauge.addCallback(async (result) => {
      try {
        this.violations = (await this.scripts.checkInvariants()).length;
        result.observe(this.violations);
      } catch {
        metrics.redisError('metrics');
      }
    });
    // Pool sizes and live calls, read from Redis when Prometheus scrapes (a failed read observes nothing).
    const poolPods = meter.createObservableGauge('smart_router_pool_pods', { description: 'Pods per tier and state (assigned, available)' });
    const activeCalls = meter.createObservableGauge('smart_router_active_calls', { description: 'Live calls (call records)' });
    const waiting = meter.createObservableGauge('smart_router_waiting_requests', { description: 'Allocations waiting for a pod, across every replica' });
    meter.addBatchObservableCallback(async (observer) => {
      try {
        const { config } = await this.tiers();
        const [pools, calls, queued] = await Promise.all([this.repository.pools(config), this.repository.activeCallCount(), this.repository.waitingCount()]);
        for (const [tier, view] of Object.entries(pools)) {
          observer.observe(poolPods, view.assigned.length, { tier, state: 'assigned' });
          observer.observe(poolPods, view.available.length, { tier, state: 'available' });
        }
        observer.observe(activeCalls, calls);
        observer.observe(waiting, queued);
      } catch {
        metrics.redisError('metrics');
      }
    }, [poolPods, activeCalls, waiting]);
  }

  private guard<T>(operation: string, work: () => Promise<T>): Promise<T> {
    return guardStore(this.metrics, operation, work);
  }

  private async tiers() {
    const stored = await this.repository.tierDocument();
    return stored ?? { config: this.settings.tiers, extra: this.settings.extraPodsTier };
  }

  status() {
    return this.guard('status', async () => {
      const { config } = await this.tiers();
      const [pools, pods, activeCalls, subsystems, waiting] = await Promise.all([
        this.repository.pools(config), this.repository.podNames(), this.repository.activeCallCount(), this.repository.subsystems(),
        this.repository.waitingCount(),
      ]);
      const watcher = subsystems.watcher as { leader: string | null };
      return {
        status: 'up',
        active_calls: activeCalls,
        waiting,
        is_leader: watcher.leader !== null,
        pools,
        draining: await this.repository.draining(pods),
        liveness: await this.repository.liveness(pods),
        pods: pods.length,
        subsystems,
      };
    });
  }

  setDrain(podName: string, draining: boolean) {
    return this.guard('drain', async () => {
      const result = await this.scripts.setDrain(podName, draining);
      if (!result) throw ApiError.notFound('pod not found', 'POD_NOT_FOUND');
      const hasCall = result.activeCalls > 0;
      const message = draining
        ? hasCall ? `pod drained; ${result.activeCalls} active call(s) will finish` : 'pod drained'
        : 'pod undrained';
      return { success: true, pod_name: podName, has_active_call: hasCall, active_calls: result.activeCalls, message };
    });
  }

  pod(name: string) {
    return this.guard('pod', async () => {
      const pod = await this.repository.pod(name);
      if (!pod) throw ApiError.notFound('pod not found', 'POD_NOT_FOUND');
      return pod;
    });
  }

  calls(limit: number) {
    return this.guard('calls', async () => {
      const calls = await this.repository.calls(limit);
      return { count: await this.repository.activeCallCount(), calls };
    });
  }

  call(callSid: string) {
    return this.guard('call', async () => {
      const call = await this.repository.call(callSid);
      if (!call) throw ApiError.notFound('call not found', 'CALL_NOT_FOUND');
      return call;
    });
  }

  merchant(id: string) {
    return this.guard('merchant', async () => {
      const stored = await this.repository.merchant(id);
      if (stored === null) throw ApiError.notFound('merchant has no config', 'MERCHANT_NOT_FOUND');
      return { merchant_id: id, config: JSON.parse(stored) as unknown };
    });
  }

  merchants() {
    return this.guard('merchants', async () => {
      const all = await this.repository.merchants();
      return { merchants: Object.fromEntries(Object.entries(all).map(([id, json]) => [id, safeJson(json)])) };
    });
  }

  putMerchant(id: string, body: unknown) {
    return this.guard('merchant', async () => {
      // Validate against the tiers as stored, then write only if they are still
      // that document (one script): a concurrent tier change makes us validate again.
      for (let attempt = 1; ; attempt += 1) {
        const text = await this.repository.tierDocumentText();
        const config = text ? fromTierDocument(text).config : this.settings.tiers;
        const problem = merchantConfigProblem(body, config);
        if (problem) throw ApiError.badRequest(problem, 'INVALID_MERCHANT_CONFIG');
        const { tier, pool, fallback, max_calls: maxCalls, max_waiting: maxWaiting } = body as MerchantConfig;
        const normalized: MerchantConfig = {
          tier, ...(pool !== undefined ? { pool } : {}), ...(fallback !== undefined ? { fallback } : {}), ...(maxCalls !== undefined ? { max_calls: maxCalls } : {}),
          ...(maxWaiting !== undefined ? { max_waiting: maxWaiting } : {}),
        };
        const written = await this.scripts.setMerchantConfig(id, JSON.stringify(normalized), text ?? '');
        if (written !== ScriptCode.ConfigChanged) return { success: true, merchant_id: id, config: normalized };
        if (attempt === 3) throw ApiError.unavailable('tier config keeps changing, retry', 'CONFIG_CHANGING');
      }
    });
  }

  deleteMerchant(id: string) {
    return this.guard('merchant', async () => {
      if (!(await this.scripts.setMerchantConfig(id, '', '*'))) throw ApiError.notFound('merchant has no config', 'MERCHANT_NOT_FOUND');
      return { success: true, merchant_id: id };
    });
  }

  getTiers() {
    return this.guard('tiers', async () => {
      const { config, extra } = await this.tiers();
      return { tiers: Object.fromEntries(config), extra_pods_tier: extra };
    });
  }

  putTiers(body: unknown) {
    return this.guard('tiers', async () => {
      const document = (body as { tiers?: unknown })?.tiers ?? body;
      let config;
      try {
        config = validateTierConfig(document, 'tiers');
      } catch (error) {
        if (error instanceof ConfigError) throw ApiError.badRequest(error.message.replace('invalid configuration: ', ''), 'INVALID_TIER_CONFIG');
        throw error;
      }
      const current = await this.tiers();
      const extra = typeof (body as { extra_pods_tier?: unknown })?.extra_pods_tier === 'string' ? (body as { extra_pods_tier: string }).extra_pods_tier : current.extra;
      if (!config.has(extra)) throw ApiError.badRequest('extra_pods_tier is not one of the tiers', 'INVALID_TIER_CONFIG');
      let moved: number;
      try {
        moved = await this.scripts.rebalanceTiers(JSON.stringify(toTierDocument(config, extra, this.settings.defaultChain)));
      } catch (error) {
        if (error instanceof TierInUseError) {
          throw new ApiError(409, 'TIER_IN_USE', `merchant configs still name a tier this config drops: ${error.merchants.join(', ')}; change or delete them first`);
        }
        throw error;
      }
      return { success: true, tiers: Object.fromEntries(config), extra_pods_tier: extra, pods_moved: moved };
    });
  }

  reconcileNow() {
    return this.guard('reconcile', async () => {
      const job = await this.queue.fullReconcile();
      return { success: true, job_id: job.id, job: job.name };
    });
  }

  invariants() {
    return this.guard('invariants', async () => {
      const violations: InvariantViolation[] = await this.scripts.checkInvariants();
      this.violations = violations.length;
      return { ok: violations.length === 0, violations };
    });
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { invalid_json: text };
  }
}
