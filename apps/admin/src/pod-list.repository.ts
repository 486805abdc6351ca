import type Redis from 'ioredis';
import { RedisKeys } from '@smart-router/redis-keys';
import { Liveness } from '@smart-router/redis-scripts';
import { livenessFrom } from './pool-state.repository';

/** Pods listed per request at most: the dashboard table, not a bulk export. */
export const POD_LIST_LIMIT = 2000;

export interface PodRow {
  pod_name: string;
  tier: string | null;
  uid: string | null;
  ready: boolean;
  terminating: boolean;
  /** Held out of its pool: an operator's drain or a scale-down's removal. */
  draining: boolean;
  /** Drained for removal by a fleet scale-down (SPEC 9.1). */
  pending_removal: boolean;
  /** Voice-agent liveness by heartbeats (SPEC 11). */
  liveness: Liveness;
  status: string;
  active_calls: number;
  /** Last change of the pod record (upsert), ms since the epoch. */
  updated_at: number | null;
}

/** Commands per pod in the pipeline below. */
const FIELDS = 5;

/** Every known pod in one pipelined read (the dashboard's per-pod table). */
export class PodListRepository {
  constructor(private readonly redis: Redis, private readonly keys: RedisKeys) {}

  async pods(): Promise<{ total: number; pods: PodRow[] }> {
    const names = (await this.redis.smembers(this.keys.pods())).sort(byOrdinal);
    const shown = names.slice(0, POD_LIST_LIMIT);
    if (shown.length === 0) return { total: 0, pods: [] };
    const pipeline = this.redis.pipeline();
    for (const name of shown) {
      pipeline.hgetall(this.keys.pod(name));
      pipeline.get(this.keys.podTier(name));
      pipeline.exists(...this.keys.holdMarks(name));
      pipeline.scard(this.keys.podCalls(name));
      pipeline.exists(this.keys.podRemoving(name));
    }
    const results = (await pipeline.exec()) ?? [];
    const value = (index: number): unknown => {
      const [error, answer] = results[index] ?? [new Error('missing pipeline answer')];
      if (error) throw error;
      return answer;
    };
    const pods = shown.map((pod_name, i) => {
      const info = value(i * FIELDS) as Record<string, string>;
      return {
        pod_name,
        tier: value(i * FIELDS + 1) as string | null,
        uid: info.uid ?? null,
        ready: info.ready === '1',
        terminating: info.terminating === '1',
        draining: Number(value(i * FIELDS + 2)) > 0,
        pending_removal: value(i * FIELDS + 4) === 1,
        liveness: livenessFrom([info.liveness ?? null, info.heartbeat_uid ?? null, info.uid ?? null, info.heartbeat_at ?? null]),
        status: info.status ?? 'unknown',
        active_calls: Number(value(i * FIELDS + 3)),
        updated_at: info.updated_at ? Number(info.updated_at) : null,
      };
    });
    return { total: names.length, pods };
  }
}

/** voice-agent-2 before voice-agent-10. */
function byOrdinal(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
