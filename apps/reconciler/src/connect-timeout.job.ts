import type Redis from 'ioredis';
import { RedisKeys } from '@smart-router/redis-keys';
import { PoolScripts } from '@smart-router/redis-scripts';

/** At most this many due calls per run; the next run (every second) takes the rest. */
const BATCH = 500;

/**
 * The connect deadline (SPEC 9.2, `CONNECT_TIMEOUT_SECONDS`): a call whose
 * media stream never reached its voice agent is released with reason
 * `connect_timeout`. The allocation script indexes each new call in
 * `calls:pending` by its deadline; this job (a BullMQ scheduler, every
 * `JOBS.connectTimeout.everyMs`) releases the due ones.
 *
 * The decision is releaseCall's, not ours: it releases only a call that is
 * still pending past its deadline and is still the allocation read here, so
 * a connect, a release or a re-allocation of the same call_sid landing
 * between this read and the script wins. Running twice (BullMQ is
 * at-least-once, replicas share the queue) releases nothing twice.
 */
export async function releaseUnconnectedCalls(redis: Redis, keys: RedisKeys, scripts: PoolScripts, now = Date.now()): Promise<number> {
  const due = await redis.zrangebyscore(keys.pendingCalls(), '-inf', now, 'LIMIT', 0, BATCH);
  if (due.length === 0) return 0;
  const ids = await allocationIdsOf(redis, keys, due);
  let released = 0;
  for (const [index, callSid] of due.entries()) {
    const allocationId = ids[index];
    const result = await scripts.release(callSid, 'connect_timeout', 'call.released', now, undefined, { allocationId, connectTimeout: true });
    // Refusals (connected, not due, re-allocated since the read, gone) leave the call to its own life.
    if (result.ok) released += 1;
  }
  return released;
}

/**
 * The current allocation_id of each call (undefined: gone, or written before
 * fencing), read in one round trip. A job releasing what it read passes it on,
 * so a call_sid re-allocated since the read is refused by the script.
 */
export async function allocationIdsOf(redis: Redis, keys: RedisKeys, callSids: readonly string[]): Promise<(number | undefined)[]> {
  const pipeline = redis.pipeline();
  for (const callSid of callSids) pipeline.hget(keys.call(callSid), 'allocation_id');
  const replies = (await pipeline.exec()) ?? [];
  return callSids.map((_, index) => {
    const [error, id] = replies[index] ?? [];
    if (error) throw error;
    return typeof id === 'string' && id !== '' ? Number(id) : undefined;
  });
}
