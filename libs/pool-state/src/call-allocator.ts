import { Allocation, Release, ScriptCode, isCallSid } from '@smart-router/allocation';
import { ApiError } from '@smart-router/http';
import { PoolScripts } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';
import { PoolMetrics } from './pool-metrics';

export interface AllocateRequest {
  callSid: string;
  merchantId: string;
  provider: string;
  metadata: string;
  refuseTombstoned: boolean;
}

export interface AllocatedCall extends Allocation {
  wsUrl: string;
}

/** An expected "no": its HTTP status and `{error, code}` body. Plain data, built once. */
export interface Refusal {
  readonly status: number;
  readonly body: { readonly error: string; readonly code: string };
}

const refusal = (status: number, code: string, error: string): Refusal => Object.freeze({ status, body: Object.freeze({ error, code }) });

export const REFUSALS = {
  noPod: refusal(503, 'NO_POD_AVAILABLE', 'no pod available'),
  stateMissing: refusal(503, 'STATE_REBUILDING', 'pool state is being rebuilt, retry shortly'),
  tombstoned: refusal(409, 'CALL_ENDED', 'call already ended'),
  badMerchantConfig: refusal(500, 'MERCHANT_CONFIG_INVALID', 'merchant configuration is invalid'),
  redisUnavailable: refusal(503, 'REDIS_UNAVAILABLE', 'state store unavailable, retry shortly'),
  callNotFound: refusal(404, 'CALL_NOT_FOUND', 'call not found'),
  badCallSid: refusal(400, 'INVALID_REQUEST', 'call_sid is required (1-128 chars of A-Za-z0-9._:-)'),
} as const;

export type Outcome<T> = { ok: true; value: T } | { ok: false; refusal: Refusal };

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
    private readonly voiceAgentBaseUrl: string,
  ) {}

  wsUrl(podName: string, callSid: string): string {
    return `${this.voiceAgentBaseUrl}/ws/pod/${podName}/${callSid}`;
  }

  async tryAllocate(request: AllocateRequest): Promise<Outcome<AllocatedCall>> {
    if (!isCallSid(request.callSid)) return { ok: false, refusal: REFUSALS.badCallSid };
    const started = process.hrtime.bigint();
    let result: Awaited<ReturnType<PoolScripts['allocate']>>;
    try {
      result = await this.telemetry.span('allocateCall', { 'call.sid': request.callSid, 'merchant.id': request.merchantId }, () => this.scripts.allocate(request));
    } catch {
      this.metrics.redisError('allocate');
      this.metrics.allocated('none', 'redis_error');
      return { ok: false, refusal: REFUSALS.redisUnavailable };
    }
    this.metrics.allocationSeconds.record(Number(process.hrtime.bigint() - started) / 1e9);
    if (result.ok) {
      const { allocation } = result;
      this.metrics.allocated(allocation.tier, allocation.wasExisting ? 'existing' : 'allocated');
      return { ok: true, value: { ...allocation, wsUrl: this.wsUrl(allocation.podName, request.callSid) } };
    }
    switch (result.code) {
      case ScriptCode.NoPod:
        this.metrics.allocated('none', 'no_pod');
        return { ok: false, refusal: REFUSALS.noPod };
      case ScriptCode.StateMissing:
        this.metrics.allocated('none', 'state_missing');
        return { ok: false, refusal: REFUSALS.stateMissing };
      case ScriptCode.Tombstoned:
        this.metrics.allocated('none', 'tombstoned');
        return { ok: false, refusal: REFUSALS.tombstoned };
      case ScriptCode.BadMerchantConfig:
      default:
        this.metrics.allocated('none', 'bad_merchant_config');
        return { ok: false, refusal: REFUSALS.badMerchantConfig };
    }
  }

  async tryRelease(callSid: string, reason: string): Promise<Outcome<Release>> {
    if (!isCallSid(callSid)) return { ok: false, refusal: REFUSALS.badCallSid };
    let result: Awaited<ReturnType<PoolScripts['release']>>;
    try {
      result = await this.telemetry.span('releaseCall', { 'call.sid': callSid }, () => this.scripts.release(callSid, reason));
    } catch {
      this.metrics.redisError('release');
      this.metrics.released('redis_error');
      return { ok: false, refusal: REFUSALS.redisUnavailable };
    }
    if (!result.ok) {
      this.metrics.released('not_found');
      return { ok: false, refusal: REFUSALS.callNotFound };
    }
    this.metrics.released('released');
    return { ok: true, value: result.release };
  }

  /** tryAllocate for callers that answer through the exception filter. */
  async allocate(request: AllocateRequest): Promise<AllocatedCall> {
    return unwrap(await this.tryAllocate(request));
  }

  /** tryRelease for callers that answer through the exception filter. */
  async release(callSid: string, reason: string): Promise<Release> {
    return unwrap(await this.tryRelease(callSid, reason));
  }
}

function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  throw new ApiError(outcome.refusal.status, outcome.refusal.body.code, outcome.refusal.body.error);
}
