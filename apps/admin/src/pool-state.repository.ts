import type Redis from 'ioredis';
import { POD_STREAM_GROUP } from '@smart-router/events';
import { TierDocument, fromTierDocument } from '@smart-router/allocation';
import { TierConfig } from '@smart-router/config';
import { RedisKeys } from '@smart-router/redis-keys';
import { Liveness, livenessOf } from '@smart-router/redis-scripts';

export interface TierView {
  type: string;
  max_concurrent?: number;
  target: number;
  assigned: string[];
  available: string[];
  load: Record<string, number>;
}

/** Read side of the admin app: the only code here that reads pool keys. */
export class PoolStateRepository {
  constructor(private readonly redis: Redis, private readonly keys: RedisKeys) {}

  async tierDocument(): Promise<{ config: TierConfig; extra: string } | null> {
    const text = await this.tierDocumentText();
    return text ? fromTierDocument(text) : null;
  }

  /** The stored document as text: what a compare-and-set write is conditioned on. */
  async tierDocumentText(): Promise<string | null> {
    return this.redis.get(this.keys.tierConfig());
  }

  async pools(config: TierConfig): Promise<Record<string, TierView>> {
    const pools: Record<string, TierView> = {};
    for (const [tier, spec] of config) {
      const assigned = (await this.redis.smembers(this.keys.poolAssigned(tier))).sort();
      const available = spec.type === 'shared'
        ? await this.redis.zrangebyscore(this.keys.poolAvailable(tier), '-inf', `(${spec.max_concurrent}`)
        : await this.redis.smembers(this.keys.poolAvailable(tier));
      const load: Record<string, number> = {};
      if (assigned.length > 0) {
        const pipeline = this.redis.pipeline();
        for (const pod of assigned) pipeline.scard(this.keys.podCalls(pod));
        const counts = (await pipeline.exec()) ?? [];
        assigned.forEach((pod, index) => {
          const [error, count] = counts[index] ?? [];
          if (error) throw error;
          load[pod] = Number(count);
        });
      }
      pools[tier] = {
        type: spec.type,
        ...(spec.type === 'shared' ? { max_concurrent: spec.max_concurrent } : {}),
        target: spec.target,
        assigned,
        available: available.sort(),
        load,
      };
    }
    return pools;
  }

  async podNames(): Promise<string[]> {
    return (await this.redis.smembers(this.keys.pods())).sort();
  }

  /**
   * Pods held out of their pools: an operator's drain, or a fleet scale-down
   * draining them for removal (SPEC 9.1; `pending_removal` tells them apart).
   */
  async draining(pods: string[]): Promise<string[]> {
    if (pods.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const pod of pods) pipeline.exists(...this.keys.holdMarks(pod));
    const held = (await pipeline.exec()) ?? [];
    return pods.filter((_, index) => {
      const [error, count] = held[index] ?? [new Error('missing pipeline answer')];
      if (error) throw error;
      return Number(count) > 0;
    });
  }

  /** SPEC 11: the pods whose voice agent is suspect or dead (pods never heartbeated are neither). */
  async liveness(pods: string[]): Promise<{ suspect: string[]; dead: string[] }> {
    const answer = { suspect: [] as string[], dead: [] as string[] };
    if (pods.length === 0) return answer;
    const pipeline = this.redis.pipeline();
    for (const pod of pods) pipeline.hmget(this.keys.pod(pod), ...LIVENESS_FIELDS);
    const replies = (await pipeline.exec()) ?? [];
    pods.forEach((pod, index) => {
      const [error, fields] = replies[index] ?? [new Error('missing pipeline answer')];
      if (error) throw error;
      const state = livenessFrom(fields as (string | null)[]);
      if (state === 'suspect' || state === 'dead') answer[state].push(pod);
    });
    return answer;
  }

  /** Allocations waiting for a pod, across every replica (SPEC 9.1). */
  async waitingCount(): Promise<number> {
    return this.redis.zcard(this.keys.waitQueue());
  }

  async activeCallCount(): Promise<number> {
    return this.redis.zcard(this.keys.activeCalls());
  }

  async pod(name: string): Promise<Record<string, unknown> | null> {
    if (!(await this.redis.sismember(this.keys.pods(), name))) return null;
    const [info, tier, held, removing, lease, calls, metadata, [seconds, micros]] = await Promise.all([
      this.redis.hgetall(this.keys.pod(name)),
      this.redis.get(this.keys.podTier(name)),
      this.redis.exists(...this.keys.holdMarks(name)),
      this.redis.exists(this.keys.podRemoving(name)),
      this.redis.get(this.keys.lease(name)),
      this.redis.smembers(this.keys.podCalls(name)),
      this.redis.hget(this.keys.podMetadata(), name),
      // The heartbeat's age on the clock it was recorded with (Redis's), not this host's.
      this.redis.time(),
    ]);
    const heartbeatAt = info.heartbeat_at ? Number(info.heartbeat_at) : null;
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    return {
      pod_name: name,
      tier,
      status: info.status ?? 'unknown',
      uid: info.uid,
      ready: info.ready === '1',
      terminating: info.terminating === '1',
      // Draining for either reason: an operator's drain, or a fleet scale-down draining it for
      // removal (SPEC 9.1), which `pending_removal` shows apart.
      draining: held > 0,
      pending_removal: removing === 1,
      liveness: livenessFrom(LIVENESS_FIELDS.map((field) => info[field] ?? null)),
      last_heartbeat_at: heartbeatAt,
      last_heartbeat_age_ms: heartbeatAt === null ? null : Math.max(0, now - heartbeatAt),
      allocated_call_sid: info.allocated_call_sid ?? null,
      allocated_at: info.allocated_at ? Number(info.allocated_at) : null,
      source_pool: info.source_pool ?? null,
      lease,
      active_calls: calls.length,
      calls: calls.sort(),
      metadata: metadata ? (JSON.parse(metadata) as unknown) : null,
    };
  }

  async call(callSid: string): Promise<Record<string, unknown> | null> {
    const record = await this.redis.hgetall(this.keys.call(callSid));
    if (!record.pod_name) return null;
    return callView(callSid, record);
  }

  async calls(limit: number): Promise<Record<string, unknown>[]> {
    const sids = await this.redis.zrange(this.keys.activeCalls(), 0, limit - 1);
    if (sids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const sid of sids) pipeline.hgetall(this.keys.call(sid));
    const records = (await pipeline.exec()) ?? [];
    return sids.flatMap((sid, index) => {
      const [error, record] = records[index] ?? [];
      if (error) throw error;
      const fields = record as Record<string, string>;
      return fields.pod_name ? [callView(sid, fields)] : [];
    });
  }

  async merchant(id: string): Promise<string | null> {
    return this.redis.hget(this.keys.merchantConfig(), id);
  }

  async merchants(): Promise<Record<string, string>> {
    return this.redis.hgetall(this.keys.merchantConfig());
  }

  async subsystems(): Promise<Record<string, unknown>> {
    const [leader, last] = await Promise.all([
      this.redis.hgetall(this.keys.watcherLeader()),
      this.redis.hgetall(this.keys.lastReconcile()),
    ]);
    let stream: Record<string, number> | { error: string } = { error: 'no consumer group yet' };
    try {
      const groups = (await this.redis.xinfo('GROUPS', this.keys.podStream())) as unknown[][];
      for (const group of groups) {
        const info = new Map<string, unknown>();
        for (let i = 0; i + 1 < group.length; i += 2) info.set(String(group[i]), group[i + 1]);
        if (info.get('name') === POD_STREAM_GROUP) stream = { lag: Number(info.get('lag') ?? 0), pending: Number(info.get('pending') ?? 0), consumers: Number(info.get('consumers') ?? 0) };
      }
    } catch (error) {
      // Only "the stream does not exist yet" is an answer; any other failure is a Redis error (503).
      if (!/no such key/i.test((error as Error).message)) throw error;
    }
    return {
      redis: 'ok',
      watcher: leader.identity ? { leader: leader.identity, term: Number(leader.term), renewed_at: Number(leader.renewed_at) } : { leader: null },
      pod_stream: stream,
      last_reconcile: last.at ? { at: Number(last.at), reason: last.reason, pods: Number(last.pods), removed: Number(last.removed), orphaned: Number(last.orphaned), duration_ms: Number(last.duration_ms) } : null,
    };
  }
}

function callView(callSid: string, record: Record<string, string>): Record<string, unknown> {
  return {
    call_sid: callSid,
    pod_name: record.pod_name,
    pod_uid: record.pod_uid,
    source_pool: record.source_pool,
    tier: record.tier,
    merchant_id: record.merchant_id,
    provider: record.provider || null,
    allocated_at: Number(record.allocated_at),
    // SPEC 9.2: absent on records written before fencing (e.g. by the Go router).
    allocation_id: record.allocation_id ? Number(record.allocation_id) : null,
    state: record.state || null,
    connected_at: record.connected_at ? Number(record.connected_at) : null,
    connect_deadline: record.connect_deadline ? Number(record.connect_deadline) : null,
    metadata: record.metadata ? (JSON.parse(record.metadata) as unknown) : null,
  };
}

/** The pod hash fields a pod's liveness is read from (SPEC 11; written by the liveness scripts). */
export const LIVENESS_FIELDS = ['liveness', 'heartbeat_uid', 'uid', 'heartbeat_at'] as const;

export function livenessFrom([liveness, heartbeatUid, uid, heartbeatAt]: readonly (string | null)[]): Liveness {
  return livenessOf({ liveness, heartbeatUid, uid, heartbeatAt });
}
