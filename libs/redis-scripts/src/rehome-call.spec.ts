import { ScriptCode } from '@smart-router/allocation';
import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState } from '@smart-router/testing';
import { LivenessScripts } from './liveness-scripts';

/**
 * SPEC 11 "Recovery (re-home)" on the script itself (rehomeCall-6.lua): a new
 * pod and a new allocation_id for the same call_sid, the old allocation
 * fenced, the old pod's slot freed by the pool rules, never the old pod,
 * REHOME_MAX, and the pool invariants after each step.
 */

const REHOME_MAX = 2;

async function events(pool: PoolFixture, type: string): Promise<Record<string, string>[]> {
  const entries = await pool.redis.xrange(pool.keys.callStream(), '-', '+');
  return entries
    .map(([, fields]) => {
      const record: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
      return record;
    })
    .filter((event) => event.type === type);
}

describe('rehomeCall (SPEC 11 re-home)', () => {
  let pool: PoolFixture;

  afterEach(() => pool.close());

  const allocate = async (callSid: string, provider = 'twilio') => {
    const result = await pool.scripts.allocate({ callSid, merchantId: '', provider, metadata: '', refuseTombstoned: true });
    if (!result.ok) throw new Error(`allocation refused: ${result.code}`);
    return result.allocation;
  };
  const rehome = async (callSid: string, fromAllocationId: number) => {
    const result = await pool.scripts.rehome(callSid, fromAllocationId, REHOME_MAX);
    if (!result.ok) throw new Error(`re-home refused: ${result.code}`);
    return result.rehoming;
  };

  describe('on the seed pools', () => {
    beforeEach(async () => {
      pool = await createPoolFixture({ url: sharedRedisUrl() });
    });

    it('moves the call to another pod under a new allocation_id; the old agent is fenced and its pod freed', async () => {
      const first = await allocate('CA-move');
      await pool.scripts.connect('CA-move', 'twilio', first.allocationId!);
      const moved = await rehome('CA-move', first.allocationId!);

      expect(moved.podName).not.toBe(first.podName);
      expect(moved.fromPod).toBe(first.podName);
      expect(moved.allocationId).toBeGreaterThan(first.allocationId!);
      expect(moved).toMatchObject({ rehomes: 1, repeated: false });
      const record = await pool.redis.hgetall(pool.keys.call('CA-move'));
      expect(record).toMatchObject({ pod_name: moved.podName, allocation_id: String(moved.allocationId), state: 'pending', rehome_from: first.podName, rehomes: '1' });
      expect(record.connected_at).toBeUndefined();
      // The old exclusive pod is free again (it is live), the new one taken.
      expect(await pool.redis.smembers(pool.keys.poolAvailable('standard'))).toContain(first.podName);
      expect(await pool.redis.smembers(pool.keys.poolAvailable('standard'))).not.toContain(moved.podName);
      expect(await pool.redis.smembers(pool.keys.podCalls(first.podName))).toEqual([]);
      expect(await pool.redis.smembers(pool.keys.podCalls(moved.podName))).toEqual(['CA-move']);
      expect(await events(pool, 'call.rehomed')).toEqual([expect.objectContaining({
        call_sid: 'CA-move', from_pod: first.podName, pod: moved.podName, cause: 'stream_ended',
        from_allocation_id: String(first.allocationId), allocation_id: String(moved.allocationId), rehomes: '1',
      })]);
      expect(await pool.scripts.checkInvariants()).toEqual([]);

      // The thawed old agent: its late release and connected change nothing.
      const snapshot = await snapshotState(pool);
      expect(await pool.scripts.release('CA-move', 'agent', 'call.released', Date.now(), undefined, { allocationId: first.allocationId! })).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
      expect(await pool.scripts.release('CA-move', 'agent', 'call.released', Date.now(), undefined, { scope: { podName: first.podName } })).toEqual({ ok: false, code: ScriptCode.NotYourCall });
      // As a voice agent (its own pod's scope) naming its old allocation: stale (409), not someone else's call (403).
      expect(await pool.scripts.release('CA-move', 'agent', 'call.released', Date.now(), undefined, { allocationId: first.allocationId!, scope: { podName: first.podName } })).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
      expect(await pool.scripts.connect('CA-move', 'api', first.allocationId!, Date.now(), { podName: first.podName })).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
      // Any other pod is still refused as not its call.
      const stranger = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'].find((pod) => pod !== first.podName && pod !== moved.podName)!;
      expect(await pool.scripts.release('CA-move', 'agent', 'call.released', Date.now(), undefined, { allocationId: first.allocationId!, scope: { podName: stranger } })).toEqual({ ok: false, code: ScriptCode.NotYourCall });
      expect(await pool.scripts.connect('CA-move', 'api', first.allocationId!)).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
      expect(await snapshotState(pool)).toEqual(snapshot);
      // The new agent's own release works.
      expect((await pool.scripts.release('CA-move', 'agent', 'call.released', Date.now(), undefined, { allocationId: moved.allocationId! })).ok).toBe(true);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });

    it('the provider retrying the same stream-ended request gets the same allocation and changes nothing', async () => {
      const first = await allocate('CA-retry');
      const moved = await rehome('CA-retry', first.allocationId!);
      const snapshot = await snapshotState(pool);
      expect(await rehome('CA-retry', first.allocationId!)).toEqual({ ...moved, repeated: true });
      expect(await snapshotState(pool)).toEqual(snapshot);
    });

    it('a call released before its stream ended is not found (the provider hangs up); a stale allocation_id changes nothing', async () => {
      const first = await allocate('CA-gone');
      await pool.scripts.release('CA-gone', 'agent');
      let snapshot = await snapshotState(pool);
      expect(await pool.scripts.rehome('CA-gone', first.allocationId!, REHOME_MAX)).toEqual({ ok: false, code: ScriptCode.NotFound });
      expect(await snapshotState(pool)).toEqual(snapshot);

      const live = await allocate('CA-stale');
      snapshot = await snapshotState(pool);
      expect(await pool.scripts.rehome('CA-stale', live.allocationId! + 1000, REHOME_MAX)).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
      expect(await snapshotState(pool)).toEqual(snapshot);
    });

    it(`at most REHOME_MAX (${REHOME_MAX}) re-homes: then the call is released and its call_sid tombstoned`, async () => {
      let current = (await allocate('CA-max')).allocationId!;
      const pods: string[] = [];
      for (let i = 0; i < REHOME_MAX; i += 1) {
        const moved = await rehome('CA-max', current);
        pods.push(moved.podName);
        current = moved.allocationId!;
      }
      expect(pods[1]).not.toBe(pods[0]);
      expect(await pool.scripts.rehome('CA-max', current, REHOME_MAX)).toEqual({ ok: false, code: ScriptCode.RehomeLimit });
      expect(await pool.redis.exists(pool.keys.call('CA-max'))).toBe(0);
      expect(await pool.redis.get(pool.keys.tombstone('CA-max'))).toBe('rehome_exhausted');
      expect(await pool.redis.smembers(pool.keys.podCalls(pods[1]))).toEqual([]);
      expect(await events(pool, 'call.released')).toEqual([expect.objectContaining({ call_sid: 'CA-max', pod: pods[1], reason: 'rehome_exhausted' })]);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });

    it('the cause is agent_dead when the old pod was declared dead, and a dead pod stays out of its pool', async () => {
      const liveness = new LivenessScripts(pool.redis, pool.keys, 10000);
      const first = await allocate('CA-dead');
      for (const pod of ['voice-agent-0', 'voice-agent-2', first.podName]) await liveness.recordHeartbeat(pod, []);
      const [seconds] = await pool.redis.time();
      await pool.redis.zadd(pool.keys.heartbeats(), Number(seconds) * 1000 - 7000, first.podName);
      const { transitions } = await liveness.checkLiveness({ suspectMs: 4000, deadMs: 6000 }, 500, ['twilio', 'plivo']);
      // Kept for the provider to re-home: not released by the liveness job.
      expect(transitions).toEqual([expect.objectContaining({
        pod: first.podName, state: 'dead', callsEnded: 0,
        callsToRehome: [{ callSid: 'CA-dead', provider: 'twilio', allocationId: String(first.allocationId) }],
      })]);
      expect(await pool.redis.hget(pool.keys.call('CA-dead'), 'pod_name')).toBe(first.podName);

      const moved = await rehome('CA-dead', first.allocationId!);
      expect(moved.podName).not.toBe(first.podName);
      expect(await events(pool, 'call.rehomed')).toEqual([expect.objectContaining({ cause: 'agent_dead', from_pod: first.podName })]);
      expect(await pool.redis.smembers(pool.keys.poolAvailable('standard'))).not.toContain(first.podName);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });

    it('without re-homing providers, a dead pod\'s calls still end with agent_dead', async () => {
      const liveness = new LivenessScripts(pool.redis, pool.keys, 10000);
      const first = await allocate('CA-exotel', 'exotel');
      for (const pod of ['voice-agent-0', 'voice-agent-2', first.podName]) await liveness.recordHeartbeat(pod, []);
      const [seconds] = await pool.redis.time();
      await pool.redis.zadd(pool.keys.heartbeats(), Number(seconds) * 1000 - 7000, first.podName);
      const { transitions } = await liveness.checkLiveness({ suspectMs: 4000, deadMs: 6000 }, 500, ['twilio', 'plivo']);
      expect(transitions).toEqual([expect.objectContaining({ pod: first.podName, callsEnded: 1, callsToRehome: [] })]);
      expect(await pool.redis.exists(pool.keys.call('CA-exotel'))).toBe(0);
    });
  });

  it('never the old pod: with no other pod free the call is released (rehome_no_pod) and the old pod freed', async () => {
    pool = await createPoolFixture({
      url: sharedRedisUrl(), pods: ['voice-agent-0', 'voice-agent-1'], tierConfig: '{"standard":{"type":"exclusive","target":2}}',
    });
    const first = await allocate('CA-one');
    await allocate('CA-two');
    expect(await pool.scripts.rehome('CA-one', first.allocationId!, REHOME_MAX)).toEqual({ ok: false, code: ScriptCode.RehomeNoPod });
    expect(await pool.redis.exists(pool.keys.call('CA-one'))).toBe(0);
    expect(await pool.redis.smembers(pool.keys.poolAvailable('standard'))).toEqual([first.podName]);
    expect(await events(pool, 'call.released')).toEqual([expect.objectContaining({ call_sid: 'CA-one', reason: 'rehome_no_pod' })]);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('never the old pod, shared tier: a shared pod with room is not offered its own call back', async () => {
    pool = await createPoolFixture({
      url: sharedRedisUrl(), pods: ['voice-agent-0'], tierConfig: '{"standard":{"type":"shared","target":1,"max_concurrent":3}}',
    });
    const first = await allocate('CA-shared');
    expect(await pool.scripts.rehome('CA-shared', first.allocationId!, REHOME_MAX)).toEqual({ ok: false, code: ScriptCode.RehomeNoPod });
    expect(await pool.redis.zscore(pool.keys.poolAvailable('standard'), 'voice-agent-0')).toBe('0');
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });
});
