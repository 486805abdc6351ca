import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { releaseUnconnectedCalls } from './connect-timeout.job';

/** The connect-timeout job's handler against a real Redis (its BullMQ schedule runs in tools/stack). */
describe('connect-timeout job', () => {
  let pool: PoolFixture;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl(), connectTimeoutMs: 5000 });
  });
  afterEach(() => pool.close());

  const allocate = async (callSid: string, now: number) => {
    const result = await pool.scripts.allocate({ callSid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false }, now);
    if (!result.ok) throw new Error(`allocation refused: ${result.code}`);
    return result.allocation;
  };

  it('releases only the pending calls past their deadline; connected, fresh and vanished calls stay as they are', async () => {
    const t0 = Date.now();
    const never = await allocate('job-never', t0);
    await allocate('job-connected', t0);
    await pool.scripts.connect('job-connected', 'api', undefined, t0 + 4999);
    const fresh = await allocate('job-fresh', t0 + 3000);
    const orphan = await allocate('job-orphan', t0);
    // Its pod is deleted: the call ends with it (call.orphaned) and only the index entry is left.
    expect(await pool.scripts.removePod(orphan.podName, orphan.podUid, null)).toEqual({ orphaned: 1 });

    expect(await releaseUnconnectedCalls(pool.redis, pool.keys, pool.scripts, t0 + 4999)).toBe(0);
    expect(await releaseUnconnectedCalls(pool.redis, pool.keys, pool.scripts, t0 + 5000)).toBe(1);

    expect(await pool.redis.exists(pool.keys.call('job-never'))).toBe(0);
    expect(await pool.redis.sismember(pool.keys.poolAvailable(never.tier), never.podName)).toBe(1);
    expect(await pool.redis.hget(pool.keys.call('job-connected'), 'state')).toBe('connected');
    expect(await pool.redis.hget(pool.keys.call('job-fresh'), 'pod_name')).toBe(fresh.podName);
    // Only the fresh call is still waiting for its deadline; the dangling entry is gone.
    expect(await pool.redis.zrange(pool.keys.pendingCalls(), 0, -1)).toEqual(['job-fresh']);
    // Run again (BullMQ is at-least-once): nothing more to do.
    expect(await releaseUnconnectedCalls(pool.redis, pool.keys, pool.scripts, t0 + 5000)).toBe(0);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });
});
