import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { FleetScripts } from './fleet-scripts';

/**
 * The fleet plan's scripts on a real redis-server (SPEC 9.1 "Scaling down never
 * cuts a call"): removal marks, the wait for idle pods, the committed size that
 * survives a restart and a racing scale-up, cancel with an operator drain, the lock.
 * Fixture: 4 pods, all in the exclusive standard pool.
 */
const PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3'];
const TIERS = JSON.stringify({ standard: { type: 'exclusive', target: 4 } });

describe('fleet scripts', () => {
  let pool: PoolFixture;
  let fleet: FleetScripts;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl(), pods: PODS, tierConfig: TIERS });
    fleet = new FleetScripts(pool.redis, pool.keys, 'voice-agent', 1000);
  });
  afterEach(() => pool.close());

  const available = async () => (await pool.redis.smembers(pool.keys.poolAvailable('standard'))).sort();
  const allocate = async (callSid: string, waitMs = 0) => pool.scripts.allocate({ callSid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false, waitMs });
  const invariants = () => pool.scripts.checkInvariants();

  it('a second StatefulSet under the same selector (SPEC 12, voice-agent-v2-N) is never marked nor waited for by voice-agent\'s scale-down', async () => {
    const mixed = await createPoolFixture({ url: sharedRedisUrl(), pods: [...PODS, 'voice-agent-v2-0', 'voice-agent-v2-1'], tierConfig: JSON.stringify({ standard: { type: 'exclusive', target: 6 } }) });
    try {
      const steps = new FleetScripts(mixed.redis, mixed.keys, 'voice-agent', 1000);
      await steps.step(4, 'a', 5000);
      // Busy v2 pods must not hold the v1 scale-down back.
      for (const sid of ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']) await mixed.scripts.allocate({ callSid: sid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
      for (const sid of ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']) {
        const pod = await mixed.redis.hget(mixed.keys.call(sid), 'pod_name');
        if (pod && !pod.startsWith('voice-agent-v2-')) await mixed.scripts.release(sid, 'done');
      }
      expect(await steps.plan(2, 'test')).toMatchObject({ marked: 2 });
      expect((await mixed.redis.smembers(mixed.keys.fleetRemoving())).sort()).toEqual(['voice-agent-2', 'voice-agent-3']);
      expect(await steps.step(4, 'a', 5000)).toEqual({ action: 'scale_down', target: 2 });
    } finally {
      await mixed.close();
    }
  });

  it('demand by versions (SPEC 12): free pods of those versions in the extra tier (shared zset too), starting pods among the StatefulSet\'s own ordinals above the pinned ones', async () => {
    // gold pins ordinal 0 of each StatefulSet; standard (shared) is the extra tier.
    const tiered = await createPoolFixture({
      url: sharedRedisUrl(), pods: [], extraTier: 'standard',
      tierConfig: JSON.stringify({ gold: { type: 'exclusive', target: 1 }, standard: { type: 'shared', target: 0, max_concurrent: 2 } }),
    });
    try {
      const upsert = (name: string, version: string, ready = true) =>
        tiered.scripts.upsertPod({ name, uid: `uid-${name}`, ready, terminating: false, metadata: {}, pinnedTier: '', term: null, version });
      for (const name of ['voice-agent-0', 'voice-agent-1', 'voice-agent-2']) await upsert(name, '');
      for (const name of ['voice-agent-v2-0', 'voice-agent-v2-1']) await upsert(name, '2.0.0');
      await upsert('voice-agent-v2-2', '2.0.0', false);
      const primary = new FleetScripts(tiered.redis, tiered.keys, 'voice-agent', 1000);
      const canary = new FleetScripts(tiered.redis, tiered.keys, 'voice-agent-v2', 1000, {}, true);
      expect(await primary.demand(3)).toEqual({ extraTier: 'standard', free: 3, waiting: 0, starting: 0 });
      expect(await primary.demand(3, [''])).toEqual({ extraTier: 'standard', free: 2, waiting: 0, starting: 0 });
      // voice-agent-v2-0 is gold (not counted), voice-agent-v2-2 is not Ready: on its way.
      expect(await canary.demand(3, ['2.0.0'])).toEqual({ extraTier: 'standard', free: 1, waiting: 0, starting: 1 });
      expect(await canary.demand(3, ['', '2.0.0'])).toMatchObject({ free: 3 });
      expect(await canary.demand(3, ['9.9.9'])).toMatchObject({ free: 0 });
      expect(await canary.demand(3, [])).toMatchObject({ free: 0, starting: 1 });
    } finally {
      await tiered.close();
    }
  });

  it('plans nothing before the StatefulSet size was observed; a first step adopts the cluster size', async () => {
    expect(await fleet.plan(2, 'test')).toBeNull();
    expect(await fleet.step(4, 'a', 5000)).toEqual({ action: 'steady', target: 4 });
    expect(await pool.redis.hgetall(pool.keys.fleetPlan())).toMatchObject({ replicas: '4', target: '4' });
  });

  it('a scale-down marks the pods above the target, waits for their calls, then commits; the committed size outlives a restart and a racing scale-up', async () => {
    await fleet.step(4, 'a', 5000);
    const calls = new Map<string, string>();
    for (const sid of ['c0', 'c1', 'c2', 'c3']) {
      const result = await allocate(sid);
      if (result.ok) calls.set(result.allocation.podName, sid);
    }
    await pool.scripts.release(calls.get('voice-agent-3')!, 'done');
    await pool.scripts.release(calls.get('voice-agent-1')!, 'done');
    expect(await fleet.plan(2, 'test')).toEqual({ previousTarget: 4, replicas: 4, cancelled: 0, marked: 2 });
    // voice-agent-3 is idle but marked: out of its pool; voice-agent-1 (kept) is available.
    expect(await available()).toEqual(['voice-agent-1']);
    expect(await invariants()).toEqual([]);
    expect(await fleet.step(4, 'a', 5000)).toEqual({ action: 'wait', target: 2, busy: ['voice-agent-2'] });
    await pool.scripts.release(calls.get('voice-agent-2')!, 'done');
    expect(await available()).toEqual(['voice-agent-1']);
    expect(await fleet.step(4, 'a', 5000)).toEqual({ action: 'scale_down', target: 2 });
    // A restart before the cluster applied it: the same size again.
    expect(await fleet.step(4, 'b', 5000)).toEqual({ action: 'locked' });
    await fleet.unlock('a');
    expect(await fleet.step(4, 'b', 5000)).toEqual({ action: 'scale_down', target: 2 });
    // A scale-up racing the patch does not unmark the pods being removed.
    expect(await fleet.plan(4, 'test')).toMatchObject({ cancelled: 0 });
    expect(await available()).toEqual(['voice-agent-1']);
    expect(await fleet.step(4, 'b', 5000)).toEqual({ action: 'scale_down', target: 2 });
    // The cluster reached 2: now the pending target 4 is a scale-up, and the marks go.
    expect(await fleet.step(2, 'b', 5000)).toEqual({ action: 'scale_up', target: 4 });
    expect(await pool.redis.smembers(pool.keys.fleetRemoving())).toEqual([]);
    const types = (await pool.redis.xrange(pool.keys.fleetStream(), '-', '+')).map(([, fields]) => fields[1]);
    expect(types).toEqual(['fleet.scale_requested', 'fleet.scale_down_committed', 'fleet.scale_requested', 'fleet.scaled', 'fleet.removal_cancelled']);
    expect(await invariants()).toEqual([]);
  });

  it('a larger target cancels a pending removal: a waiting request gets the unmarked pod, an operator drain stays', async () => {
    await fleet.step(4, 'a', 5000);
    for (const sid of ['c0', 'c1', 'c2', 'c3']) expect((await allocate(sid)).ok).toBe(true);
    const podOf = async (sid: string) => pool.redis.hget(pool.keys.call(sid), 'pod_name');
    const onPod = new Map<string, string>();
    for (const sid of ['c0', 'c1', 'c2', 'c3']) onPod.set((await podOf(sid))!, sid);
    await pool.scripts.setDrain('voice-agent-2', true);
    await fleet.plan(2, 'test');
    await pool.scripts.release(onPod.get('voice-agent-3')!, 'done');
    await pool.scripts.release(onPod.get('voice-agent-2')!, 'done');
    expect(await available()).toEqual([]);
    expect(await allocate('waiter', 5000)).toEqual({ ok: false, code: expect.any(Number) });
    expect(await fleet.plan(4, 'more')).toMatchObject({ cancelled: 2 });
    // voice-agent-3 went to the waiter in the same script; voice-agent-2 stays drained by its operator.
    expect(await podOf('waiter')).toBe('voice-agent-3');
    expect(await available()).toEqual([]);
    expect(await pool.redis.exists(pool.keys.podDraining('voice-agent-2'))).toBe(1);
    expect(await pool.redis.exists(pool.keys.podRemoving('voice-agent-2'))).toBe(0);
    await pool.scripts.setDrain('voice-agent-2', false);
    expect(await available()).toEqual(['voice-agent-2']);
    expect(await fleet.step(4, 'a', 5000)).toEqual({ action: 'steady', target: 4 });
    expect(await invariants()).toEqual([]);
  });

  it('an undrain does not make a pod marked for removal available', async () => {
    await fleet.step(4, 'a', 5000);
    await pool.scripts.setDrain('voice-agent-3', true);
    await fleet.plan(3, 'test');
    await pool.scripts.setDrain('voice-agent-3', false);
    expect(await available()).toEqual(['voice-agent-0', 'voice-agent-1', 'voice-agent-2']);
    expect(await invariants()).toEqual([]);
  });

  it('follows a size set outside the plan when nothing is pending (kubectl scale)', async () => {
    await fleet.step(4, 'a', 5000);
    expect(await fleet.step(6, 'a', 5000)).toEqual({ action: 'steady', target: 6 });
    expect(await fleet.step(3, 'a', 5000)).toEqual({ action: 'steady', target: 3 });
  });
});
