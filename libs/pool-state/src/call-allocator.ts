import { Allocation, CallScope, Connection, Release, ScriptCode, isCallSid } from '@smart-router/allocation';
import { ApiError, RedisUnavailableError } from '@smart-router/http';
import { NotReplicatedError, PoolScripts, RehomeResult, Rehoming } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';
import { MediaUrls } from './media-urls';
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
  /** Who is calling: a sticky_by_caller rollout keys its split on it (SPEC 12). */
  caller?: string;
}

/** Past its deadline, a waiting request gets its answer within this (settleWait decides). */
const DEADLINE_SLACK_MS = 20;

export interface AllocatedCall extends Allocation {
  wsUrl: string;
}

/** A re-homed call (SPEC 11 "Recovery") with the new allocation's ws_url, or why not (the script's code). */
export type RehomeOutcome = { ok: true; rehoming: Rehoming & { wsUrl: string } } | Extract<RehomeResult, { ok: false }>;

/** An expected "no": its HTTP status and `{error, code}` body. Plain data, built once. */
export interface Refusal {
  readonly status: number;
  readonly body: { readonly error: string; readonly code: string };
}

const refusal = (status: number, code: string, error: string): Refusal => Object.freeze({ status, body: Object.freeze({ error, code }) });

export const REFUSALS = {
  noPod: refusal(503, 'NO_POD_AVAILABLE', 'no pod available'),
  queueFull: refusal(503, 'QUEUE_FULL', 'too many requests waiting for a pod, retry later'),
  stateMissing: refusal(503, 'STATE_REBUILDING', 'pool state is being rebuilt, retry shortly'),
  tombstoned: refusal(409, 'CALL_ENDED', 'call already ended'),
  merchantLimit: refusal(429, 'MERCHANT_LIMIT', 'merchant has reached its max_calls'),
  badMerchantConfig: refusal(500, 'MERCHANT_CONFIG_INVALID', 'merchant configuration is invalid'),
  redisUnavailable: refusal(503, 'REDIS_UNAVAILABLE', 'state store unavailable, retry shortly'),
  notReplicated: refusal(503, 'NOT_REPLICATED', 'write not confirmed by enough replicas, retry'),
  callNotFound: refusal(404, 'CALL_NOT_FOUND', 'call not found'),
  staleAllocation: refusal(409, 'STALE_ALLOCATION', 'allocation_id is not the call\'s current allocation'),
  badCallSid: refusal(400, 'INVALID_REQUEST', 'call_sid is required (1-128 chars of A-Za-z0-9._:-)'),
  notYourCall: refusal(403, 'NOT_YOUR_CALL', 'call is not on your pod'),
  merchantForbidden: refusal(403, 'MERCHANT_FORBIDDEN', 'token is not scoped to this merchant'),
} as const;

/** The refusal of a release or connect outside the caller's scope (SPEC 10.1), or null. */
function scopeRefusal(code: ScriptCode): Refusal | null {
  if (code === ScriptCode.NotYourCall) return REFUSALS.notYourCall;
  if (code === ScriptCode.MerchantForbidden) return REFUSALS.merchantForbidden;
  return null;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; refusal: Refusal };

const refuse = (answer: Refusal): { ok: false; refusal: Refusal } => ({ ok: false, refusal: answer });

/**
 * A failed Redis write as the caller sees it: 503 either way. NOT_REPLICATED
 * means the write happened on the primary but too few replicas confirmed it
 * (retrying the same call is safe); REDIS_UNAVAILABLE means no answer at all.
 */
export function storeFailure(error: unknown): ApiError {
  if (error instanceof NotReplicatedError) return refusalError(REFUSALS.notReplicated);
  return new RedisUnavailableError(error);
}

/**
 * Runs Redis work behind an API route: our own answers (ApiError) pass
 * through; any other failure is counted under `operation` when Redis did not
 * answer, and becomes its 503 (never a "false" or an empty answer).
 */
export async function guardStore<T>(metrics: PoolMetrics, operation: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ApiError) throw error;
    const failure = storeFailure(error);
    if (failure instanceof RedisUnavailableError) metrics.redisError(operation);
    throw failure;
  }
}

/** The refusal of a store failure thrown by redisCall; null for anything else (a bug: rethrown). */
function storeRefusal(error: unknown): Refusal | null {
  if (error instanceof RedisUnavailableError) return REFUSALS.redisUnavailable;
  if (error instanceof ApiError && error.code === REFUSALS.notReplicated.body.code) return REFUSALS.notReplicated;
  return null;
}

/**
 * Allocation and release as callers see them: one script call each. Expected
 * refusals (no pod, unknown call, Redis down) come back as data, not
 * exceptions: the hot path answers them as cheaply as a success, counted in
 * metrics and never logged per request. Shared by the JSON API and the
 * provider webhooks (which use the throwing forms).
 */
export class CallAllocator {
  constructor(
    private readonly scripts: PoolScripts,
    private readonly metrics: PoolMetrics,
    private readonly telemetry: Telemetry,
    private readonly media: MediaUrls,
    private readonly wakeups: WaitWakeups,
  ) {}

  /**
   * The allocation's ws_url (signed when MEDIA_URL_SECRET is set).
   * `allocatedAtMs`: known for a fresh allocation; null reads it from the call
   * record, so a repeat of the same allocation answers the same URL.
   */
  private wsUrl(allocation: Pick<Allocation, 'podName' | 'allocationId'>, callSid: string, allocatedAtMs: number | null): Promise<string> {
    const target = { podName: allocation.podName, callSid, allocationId: allocation.allocationId };
    // A fresh allocation's URL is signed from the time it was made: no Redis read, no span (the hot path).
    if (allocatedAtMs !== null) return this.media.wsUrl(target, allocatedAtMs);
    // A repeat reads allocated_at; that read fails closed like any other: counted, and a 503 for the caller.
    return this.redisCall('media_url', 'mediaUrl', callSid, () => this.media.wsUrl(target, null));
  }

  /**
   * `scope.merchants`: a scoped token allocates only for those merchants (403
   * MERCHANT_FORBIDDEN otherwise, "no merchant" included), decided before
   * Redis is asked anything. `scope.podName` does not apply: who may allocate
   * at all is the route's decision.
   */
  async tryAllocate(request: AllocateRequest, scope: CallScope = {}): Promise<Outcome<AllocatedCall>> {
    if (!isCallSid(request.callSid)) return refuse(REFUSALS.badCallSid);
    if (scope.merchants && !scope.merchants.includes(request.merchantId)) {
      this.metrics.allocated('none', 'merchant_forbidden');
      return refuse(REFUSALS.merchantForbidden);
    }
    const waitMs = request.waitMs ?? 0;
    if (waitMs > 0) await this.wakeups.ready(Math.min(waitMs, 1000));
    // Registered before the script runs: a hand-off right after it must not be missed.
    const ticket = waitMs > 0 ? this.wakeups.register(request.callSid) : null;
    try {
      return await this.allocateOrWait(request, waitMs, ticket, scope);
    } catch (error) {
      const failure = storeRefusal(error);
      if (!failure) throw error;
      if (waitMs > 0) {
        // The failed command may have run (a command timeout): leave no waiter
        // behind that a later hand-off could bind a pod to, and answer 200 if
        // the call already holds one. Best effort: Redis may well be down.
        const outcome = await this.scripts.settleWait(request.callSid, true).catch(() => null);
        if (outcome?.state === 'allocated') {
          const allocation: Allocation = { podName: outcome.podName, podUid: outcome.podUid, tier: outcome.tier, sourcePool: `pool:${outcome.tier}`, wasExisting: false, allocationId: outcome.allocationId, state: outcome.callState };
          const wsUrl = await this.wsUrl(allocation, request.callSid, null).catch(() => null);
          if (wsUrl !== null) return { ok: true, value: { ...allocation, wsUrl } };
        }
      }
      return refuse(failure);
    } finally {
      ticket?.dispose();
    }
  }

  private async allocateOrWait(request: AllocateRequest, waitMs: number, ticket: WakeTicket | null, scope: CallScope = {}): Promise<Outcome<AllocatedCall>> {
    const started = process.hrtime.bigint();
    // The allocation time the script records for a new call: the signed ws_url's expiry counts from it.
    const now = Date.now();
    const result = await this.redisCall('allocate', 'allocateCall', request.callSid, () => this.scripts.allocate(request, now), { 'merchant.id': request.merchantId });
    this.metrics.allocationSeconds.record(Number(process.hrtime.bigint() - started) / 1e9);
    if (result.ok) {
      const { allocation } = result;
      // A call_sid already allocated to another merchant's call is that merchant's: a scoped token gets neither its pod nor its signed ws_url.
      if (scope.merchants && allocation.wasExisting && !scope.merchants.includes(result.existingMerchant ?? '')) {
        this.metrics.allocated('none', 'merchant_forbidden');
        return refuse(REFUSALS.merchantForbidden);
      }
      this.metrics.allocated(allocation.tier, allocation.wasExisting ? 'existing' : 'allocated', allocation.agentVersion);
      return { ok: true, value: { ...allocation, wsUrl: await this.wsUrl(allocation, request.callSid, allocation.wasExisting ? null : now) } };
    }
    // A duplicate of another merchant's waiting request would receive that call's pod and ws_url: refused like a live one.
    if (result.code === ScriptCode.AlreadyWaiting && scope.merchants && !scope.merchants.includes(result.waitingMerchant ?? '')) {
      this.metrics.allocated('none', 'merchant_forbidden');
      return refuse(REFUSALS.merchantForbidden);
    }
    if (result.code === ScriptCode.Queued || result.code === ScriptCode.AlreadyWaiting) {
      // The first request for the call waits its own wait_ms; a duplicate asks for the first one's outcome.
      const first = result.code === ScriptCode.Queued;
      const allocation = await this.awaitOutcome(request.callSid, ticket ?? this.wakeups.register(request.callSid), first ? waitMs : 0, !first);
      if (allocation) return { ok: true, value: { ...allocation, wsUrl: await this.wsUrl(allocation, request.callSid, null) } };
      return refuse(REFUSALS.noPod);
    }
    switch (result.code) {
      case ScriptCode.NoPod:
        this.metrics.allocated('none', 'no_pod');
        return refuse(REFUSALS.noPod);
      case ScriptCode.StateMissing:
        this.metrics.allocated('none', 'state_missing');
        return refuse(REFUSALS.stateMissing);
      case ScriptCode.Tombstoned:
        this.metrics.allocated('none', 'tombstoned');
        return refuse(REFUSALS.tombstoned);
      case ScriptCode.MerchantLimit:
        this.metrics.allocated('none', 'merchant_limit');
        return refuse(REFUSALS.merchantLimit);
      case ScriptCode.QueueFull:
        // SPEC 10.2: refused at once, never queued (WAIT_QUEUE_MAX or the merchant's max_waiting).
        this.metrics.allocated('none', 'queue_full');
        return refuse(REFUSALS.queueFull);
      case ScriptCode.BadMerchantConfig:
      default:
        this.metrics.allocated('none', 'bad_merchant_config');
        return refuse(REFUSALS.badMerchantConfig);
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
        this.metrics.allocated(outcome.tier, duplicate ? 'existing' : 'waited', outcome.agentVersion);
        return { podName: outcome.podName, podUid: outcome.podUid, tier: outcome.tier, sourcePool: `pool:${outcome.tier}`, wasExisting: duplicate, allocationId: outcome.allocationId, state: outcome.callState, agentVersion: outcome.agentVersion };
      }
      if (outcome.state === 'timed_out') {
        observe('timed_out');
        this.metrics.allocated('none', 'no_pod');
        return null;
      }
      delay = outcome.remainingMs + DEADLINE_SLACK_MS;
    }
  }

  /** One script call (in a span when spans are exported); a Redis error is counted and becomes a 503, never "false". */
  private async redisCall<T>(operation: string, span: string, callSid: string, work: () => Promise<T>, attributes: Record<string, string> = {}): Promise<T> {
    return this.telemetry.span(span, { 'call.sid': callSid, ...attributes }, async () => {
      try {
        return await work();
      } catch (error) {
        const failure = storeFailure(error);
        if (failure instanceof RedisUnavailableError) this.metrics.redisError(operation);
        if (operation === 'allocate') this.metrics.allocated('none', failure instanceof RedisUnavailableError ? 'redis_error' : 'not_replicated');
        throw failure;
      }
    });
  }

  /**
   * `allocationId`: release only that allocation of the call_sid (409 STALE_ALLOCATION otherwise).
   * `scope`: only a call on that pod (403 NOT_YOUR_CALL) and of those merchants (403
   * MERCHANT_FORBIDDEN), checked by the script itself: a refusal changes nothing.
   */
  async tryRelease(callSid: string, reason: string, allocationId?: number, scope: CallScope = {}, rehomeTicketTtlSeconds?: number, byProvider = false): Promise<Outcome<Release>> {
    if (!isCallSid(callSid)) return refuse(REFUSALS.badCallSid);
    let result: Awaited<ReturnType<PoolScripts['release']>>;
    try {
      result = await this.redisCall('release', 'releaseCall', callSid,
        () => this.scripts.release(callSid, reason, 'call.released', Date.now(), undefined, { allocationId, scope, rehomeTicketTtlSeconds, endRehome: byProvider }));
    } catch (error) {
      const failure = storeRefusal(error);
      if (!failure) throw error;
      this.metrics.released(failure === REFUSALS.redisUnavailable ? 'redis_error' : 'not_replicated');
      return refuse(failure);
    }
    if (!result.ok && result.code === ScriptCode.StaleAllocation) {
      this.metrics.released('stale_allocation');
      return refuse(REFUSALS.staleAllocation);
    }
    const outOfScope = result.ok ? null : scopeRefusal(result.code);
    if (outOfScope) {
      this.metrics.released(outOfScope === REFUSALS.notYourCall ? 'not_your_call' : 'merchant_forbidden');
      return refuse(outOfScope);
    }
    if (!result.ok) {
      this.metrics.released('not_found');
      return refuse(REFUSALS.callNotFound);
    }
    this.metrics.released('released');
    return { ok: true, value: result.release };
  }

  /**
   * Re-homes a call whose stream of `fromAllocationId` ended while it was not
   * released (rehomeCall-6.lua). A Redis failure throws (503), never reads as
   * "released".
   */
  async rehome(callSid: string, fromAllocationId: number, maxRehomes: number): Promise<RehomeOutcome> {
    if (!isCallSid(callSid)) throw refusalError(REFUSALS.badCallSid);
    const now = Date.now();
    const result = await this.redisCall('rehome', 'rehomeCall', callSid, () => this.scripts.rehome(callSid, fromAllocationId, maxRehomes, 'stream_ended', now));
    if (!result.ok) return result;
    const { rehoming } = result;
    const wsUrl = await this.wsUrl(rehoming, callSid, rehoming.repeated ? null : now);
    return { ok: true, rehoming: { ...rehoming, wsUrl } };
  }

  /** tryAllocate for callers that answer through the exception filter. */
  async allocate(request: AllocateRequest): Promise<AllocatedCall> {
    return unwrap(await this.tryAllocate(request));
  }

  /**
   * tryRelease for callers that answer through the exception filter.
   * `rehomeTicketTtlSeconds`: keep a re-home ticket for the stream-ended request (SPEC 11, issue 20).
   * These are the provider's own releases (webhooks): the stream ended or the call did, so a
   * re-home the liveness job asked for (rehome_requested) does not fence them, whatever
   * REHOME_ENABLED the webhooks app has; only the old agent's release is fenced.
   */
  async release(callSid: string, reason: string, allocationId?: number, rehomeTicketTtlSeconds?: number): Promise<Release> {
    return unwrap(await this.tryRelease(callSid, reason, allocationId, {}, rehomeTicketTtlSeconds, true));
  }

  /**
   * The call's media stream reached its voice agent (SPEC 9.2): pending ->
   * connected, which keeps it past the connect deadline. Idempotent.
   */
  async connect(callSid: string, source: string, allocationId?: number, scope: CallScope = {}): Promise<Connection> {
    if (!isCallSid(callSid)) throw refusalError(REFUSALS.badCallSid);
    const result = await this.redisCall('connect', 'connectCall', callSid, () => this.scripts.connect(callSid, source, allocationId, Date.now(), scope));
    if (result.ok) return result.connection;
    if (result.code === ScriptCode.StaleAllocation) throw refusalError(REFUSALS.staleAllocation);
    const outOfScope = scopeRefusal(result.code);
    if (outOfScope) throw refusalError(outOfScope);
    throw refusalError(REFUSALS.callNotFound);
  }
}

function refusalError(answer: Refusal): ApiError {
  return new ApiError(answer.status, answer.body.code, answer.body.error);
}

function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  throw refusalError(outcome.refusal);
}
