import { Allocation, Connection, Release, ScriptCode, isCallSid } from '@smart-router/allocation';
import { ApiError, RedisUnavailableError } from '@smart-router/http';
import { NotReplicatedError, PoolScripts } from '@smart-router/redis-scripts';
import { inSpan, Telemetry } from '@smart-router/telemetry';
import { PoolMetrics } from './pool-metrics';
import { WaitWakeups, WakeTicket } from './wait-wakeups';

export interface AllocateRequest {
  callSid: string;
  merchantId: string;
  provider: string;
  metadata: string;
  refuseTombstoned: boolean;
  /** Wait this long (ms) for a pod when none is free (SPEC 9.1); 0 = answer 503 at once. */
  waitMs?: number;
}

/** Past its deadline, a waiting request gets its answer within this (settleWait decides). */
const DEADLINE_SLACK_MS = 20;

export interface AllocatedCall extends Allocation {
  wsUrl: string;
}

/**
 * A failed Redis write as the caller sees it: 503 either way. NOT_REPLICATED
 * means the write happened on the primary but too few replicas confirmed it
 * (retrying the same call is safe); REDIS_UNAVAILABLE means no answer at all.
 */
export function storeFailure(error: unknown): ApiError {
  if (error instanceof NotReplicatedError) return ApiError.unavailable('write not confirmed by enough replicas, retry', 'NOT_REPLICATED');
  return new RedisUnavailableError(error);
}

/**
 * Allocation and release as callers see them: one script call each, with
 * Redis failures turned into a counted 503 and script codes into API errors.
 * Shared by the JSON API and the provider webhooks.
 */
export class CallAllocator {
  constructor(
    private readonly scripts: PoolScripts,
    private readonly metrics: PoolMetrics,
    private readonly telemetry: Telemetry,
    private readonly voiceAgentBaseUrl: string,
    private readonly wakeups: WaitWakeups,
  ) {}

  wsUrl(podName: string, callSid: string): string {
    return `${this.voiceAgentBaseUrl}/ws/pod/${podName}/${callSid}`;
  }

  async allocate(request: AllocateRequest): Promise<AllocatedCall> {
    if (!isCallSid(request.callSid)) throw ApiError.badRequest('call_sid is required (1-128 chars of A-Za-z0-9._:-)');
    const waitMs = request.waitMs ?? 0;
    if (waitMs > 0) await this.wakeups.ready(Math.min(waitMs, 1000));
    // Registered before the script runs: a hand-off right after it must not be missed.
    const ticket = waitMs > 0 ? this.wakeups.register(request.callSid) : null;
    try {
      return await this.allocateOrWait(request, waitMs, ticket);
    } catch (error) {
      if (waitMs > 0 && (error instanceof RedisUnavailableError || (error instanceof ApiError && error.code === 'NOT_REPLICATED'))) {
        // The failed command may have run (a command timeout): leave no waiter
        // behind that a later hand-off could bind a pod to, and answer 200 if
        // the call already holds one. Best effort: Redis may well be down.
        const outcome = await this.scripts.settleWait(request.callSid, true).catch(() => null);
        if (outcome?.state === 'allocated') {
          return { podName: outcome.podName, podUid: outcome.podUid, tier: outcome.tier, sourcePool: `pool:${outcome.tier}`, wasExisting: false, allocationId: outcome.allocationId, state: outcome.callState, wsUrl: this.wsUrl(outcome.podName, request.callSid) };
        }
      }
      throw error;
    } finally {
      ticket?.dispose();
    }
  }

  private async allocateOrWait(request: AllocateRequest, waitMs: number, ticket: WakeTicket | null): Promise<AllocatedCall> {
    const started = process.hrtime.bigint();
    const result = await this.redisCall('allocate', 'allocateCall', request.callSid, () => this.scripts.allocate(request), { 'merchant.id': request.merchantId });
    this.metrics.allocationSeconds.record(Number(process.hrtime.bigint() - started) / 1e9);
    if (result.ok) {
      const { allocation } = result;
      this.metrics.allocations.add(1, { pool: allocation.tier, result: allocation.wasExisting ? 'existing' : 'allocated' });
      return { ...allocation, wsUrl: this.wsUrl(allocation.podName, request.callSid) };
    }
    if (result.code === ScriptCode.Queued || result.code === ScriptCode.AlreadyWaiting) {
      // The first request for the call waits its own wait_ms; a duplicate asks for the first one's outcome.
      const first = result.code === ScriptCode.Queued;
      const allocation = await this.awaitOutcome(request.callSid, ticket ?? this.wakeups.register(request.callSid), first ? waitMs : 0, !first);
      if (allocation) return { ...allocation, wsUrl: this.wsUrl(allocation.podName, request.callSid) };
      throw ApiError.unavailable('no pod available', 'NO_POD_AVAILABLE');
    }
    switch (result.code) {
      case ScriptCode.NoPod:
        this.metrics.allocations.add(1, { pool: 'none', result: 'no_pod' });
        throw ApiError.unavailable('no pod available', 'NO_POD_AVAILABLE');
      case ScriptCode.StateMissing:
        this.metrics.allocations.add(1, { pool: 'none', result: 'state_missing' });
        throw ApiError.unavailable('pool state is being rebuilt, retry shortly', 'STATE_REBUILDING');
      case ScriptCode.Tombstoned:
        this.metrics.allocations.add(1, { pool: 'none', result: 'tombstoned' });
        throw new ApiError(409, 'CALL_ENDED', 'call already ended');
      case ScriptCode.MerchantLimit:
        this.metrics.allocations.add(1, { pool: 'none', result: 'merchant_limit' });
        throw new ApiError(429, 'MERCHANT_LIMIT', 'merchant has reached its max_calls');
      case ScriptCode.BadMerchantConfig:
      default:
        this.metrics.allocations.add(1, { pool: 'none', result: 'bad_merchant_config' });
        throw new ApiError(500, 'MERCHANT_CONFIG_INVALID', 'merchant configuration is invalid');
    }
  }

  /**
   * Waits for a queued call's outcome: woken by the hand-off (pub/sub), or at
   * the deadline, when settleWait times the waiter out in the same atomic step
   * that decides it (a hand-off racing with it wins: the answer is 200).
   * No polling: one check per wake-up, and the deadline's.
   */
  private async awaitOutcome(callSid: string, ticket: WakeTicket, firstWaitMs: number, duplicate: boolean): Promise<Allocation | null> {
    const started = process.hrtime.bigint();
    const observe = (result: string) => this.metrics.waitSeconds.record(Number(process.hrtime.bigint() - started) / 1e9, { result });
    let delay = firstWaitMs;
    for (;;) {
      if (delay > 0) await ticket.next(delay);
      const outcome = await this.redisCall('settle_wait', 'settleWait', callSid, () => this.scripts.settleWait(callSid));
      if (outcome.state === 'allocated') {
        observe('allocated');
        this.metrics.allocations.add(1, { pool: outcome.tier, result: duplicate ? 'existing' : 'waited' });
        return { podName: outcome.podName, podUid: outcome.podUid, tier: outcome.tier, sourcePool: `pool:${outcome.tier}`, wasExisting: duplicate, allocationId: outcome.allocationId, state: outcome.callState };
      }
      if (outcome.state === 'timed_out') {
        observe('timed_out');
        this.metrics.allocations.add(1, { pool: 'none', result: 'no_pod' });
        return null;
      }
      delay = outcome.remainingMs + DEADLINE_SLACK_MS;
    }
  }

  /** One script call in a span; a Redis error is counted and becomes a 503, never "false". */
  private async redisCall<T>(operation: string, span: string, callSid: string, work: () => Promise<T>, attributes: Record<string, string> = {}): Promise<T> {
    return inSpan(this.telemetry.tracer(), span, async () => {
      try {
        return await work();
      } catch (error) {
        const failure = storeFailure(error);
        if (failure instanceof RedisUnavailableError) this.metrics.redisErrors.add(1, { operation });
        if (operation === 'allocate') this.metrics.allocations.add(1, { pool: 'none', result: failure instanceof RedisUnavailableError ? 'redis_error' : 'not_replicated' });
        throw failure;
      }
    }, { 'call.sid': callSid, ...attributes });
  }

  /** `allocationId`: release only that allocation of the call_sid (409 STALE_ALLOCATION otherwise). */
  async release(callSid: string, reason: string, allocationId?: number): Promise<Release> {
    if (!isCallSid(callSid)) throw ApiError.badRequest('call_sid is required (1-128 chars of A-Za-z0-9._:-)');
    const result = await this.redisCall('release', 'releaseCall', callSid,
      () => this.scripts.release(callSid, reason, 'call.released', Date.now(), undefined, { allocationId })).catch((error: unknown) => {
      this.metrics.releases.add(1, { result: error instanceof RedisUnavailableError ? 'redis_error' : 'not_replicated' });
      throw error;
    });
    if (!result.ok && result.code === ScriptCode.StaleAllocation) {
      this.metrics.releases.add(1, { result: 'stale_allocation' });
      throw staleAllocation();
    }
    if (!result.ok) {
      this.metrics.releases.add(1, { result: 'not_found' });
      throw new ApiError(404, 'CALL_NOT_FOUND', 'call not found');
    }
    this.metrics.releases.add(1, { result: 'released' });
    return result.release;
  }

  /**
   * The call's media stream reached its voice agent (SPEC 9.2): pending ->
   * connected, which keeps it past the connect deadline. Idempotent.
   */
  async connect(callSid: string, source: string, allocationId?: number): Promise<Connection> {
    if (!isCallSid(callSid)) throw ApiError.badRequest('call_sid is required (1-128 chars of A-Za-z0-9._:-)');
    const result = await this.redisCall('connect', 'connectCall', callSid, () => this.scripts.connect(callSid, source, allocationId));
    if (result.ok) return result.connection;
    if (result.code === ScriptCode.StaleAllocation) throw staleAllocation();
    throw new ApiError(404, 'CALL_NOT_FOUND', 'call not found');
  }
}

function staleAllocation(): ApiError {
  return new ApiError(409, 'STALE_ALLOCATION', 'allocation_id is not the call\'s current allocation');
}
