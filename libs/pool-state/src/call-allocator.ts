import { Allocation, Release, ScriptCode, isCallSid } from '@smart-router/allocation';
import { ApiError, RedisUnavailableError } from '@smart-router/http';
import { NotReplicatedError, PoolScripts } from '@smart-router/redis-scripts';
import { inSpan, Telemetry } from '@smart-router/telemetry';
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
  ) {}

  wsUrl(podName: string, callSid: string): string {
    return `${this.voiceAgentBaseUrl}/ws/pod/${podName}/${callSid}`;
  }

  async allocate(request: AllocateRequest): Promise<AllocatedCall> {
    if (!isCallSid(request.callSid)) throw ApiError.badRequest('call_sid is required (1-128 chars of A-Za-z0-9._:-)');
    const started = process.hrtime.bigint();
    const result = await inSpan(this.telemetry.tracer(), 'allocateCall', async () => {
      try {
        return await this.scripts.allocate(request);
      } catch (error) {
        const failure = storeFailure(error);
        if (failure instanceof RedisUnavailableError) this.metrics.redisErrors.add(1, { operation: 'allocate' });
        this.metrics.allocations.add(1, { pool: 'none', result: failure instanceof RedisUnavailableError ? 'redis_error' : 'not_replicated' });
        throw failure;
      }
    }, { 'call.sid': request.callSid, 'merchant.id': request.merchantId });
    this.metrics.allocationSeconds.record(Number(process.hrtime.bigint() - started) / 1e9);
    if (result.ok) {
      const { allocation } = result;
      this.metrics.allocations.add(1, { pool: allocation.tier, result: allocation.wasExisting ? 'existing' : 'allocated' });
      return { ...allocation, wsUrl: this.wsUrl(allocation.podName, request.callSid) };
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
      case ScriptCode.BadMerchantConfig:
      default:
        this.metrics.allocations.add(1, { pool: 'none', result: 'bad_merchant_config' });
        throw new ApiError(500, 'MERCHANT_CONFIG_INVALID', 'merchant configuration is invalid');
    }
  }

  async release(callSid: string, reason: string): Promise<Release> {
    if (!isCallSid(callSid)) throw ApiError.badRequest('call_sid is required (1-128 chars of A-Za-z0-9._:-)');
    const result = await inSpan(this.telemetry.tracer(), 'releaseCall', async () => {
      try {
        return await this.scripts.release(callSid, reason);
      } catch (error) {
        const failure = storeFailure(error);
        if (failure instanceof RedisUnavailableError) this.metrics.redisErrors.add(1, { operation: 'release' });
        this.metrics.releases.add(1, { result: failure instanceof RedisUnavailableError ? 'redis_error' : 'not_replicated' });
        throw failure;
      }
    }, { 'call.sid': callSid });
    if (!result.ok) {
      this.metrics.releases.add(1, { result: 'not_found' });
      throw new ApiError(404, 'CALL_NOT_FOUND', 'call not found');
    }
    this.metrics.releases.add(1, { result: 'released' });
    return result.release;
  }
}
