import { ScriptCode } from '@smart-router/allocation';
import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState } from '@smart-router/testing';
import { LivenessScripts } from './liveness-scripts';
import { RolloutScripts } from './rollout-scripts';

/**
 * Issue 20's re-homing defects, on the scripts against a real Redis:
 * - a call the liveness job keeps for re-homing carries rehome_requested (its
 *   allocation_id): the frozen/dead agent's late release is fenced (409), before
 *   and after the stream-stopped callback moved the record to its ticket, while
 *   the provider's final release still ends it;
 * - a stalled call is redirected once, not on every liveness run;
 * - a re-homed call lands on a version the rollout serves when one is free;
 * - the old pod of a re-home is suspect until its next heartbeat (9bda4e3).
 * Silence is made on the Redis clock (heartbeat scores, media_in_at): no sleeps.
 */

const REHOME_MAX = 2;
const PROVIDERS = ['twilio', 'plivo'];
const THRESHOLDS = { suspectMs: 4000, deadMs: 6000 };
const TICKET_TTL = 60;

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

describe('re-home marker, stall redirects, versions and the old pod (issue 20)', () => {
  let pool: PoolFixture;
  let liveness: LivenessScripts;

  afterEach(() => pool.close());

  const redisNow = async () => {
    const [seconds, micros] = await pool.redis.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  };
  const allocate = async (callSid: string) => {
    const result = await pool.scripts.allocate({ callSid, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false });
    if (!result.ok) throw new Error(`allocation refused: ${result.code}`);
    return result.allocation;
  };
  const release = (callSid: string, fence: { allocationId?: number; podName?: string; ticket?: boolean } = {}) =>
    pool.scripts.release(callSid, 'agent', 'call.released', Date.now(), undefined, {
      allocationId: fence.allocationId, scope: fence.podName ? { podName: fence.podName } : {}, rehomeTicketTtlSeconds: fence.ticket ? TICKET_TTL : undefined,
    });
  /** Every seed pod heartbeats; `pod` then goes silent past HEARTBEAT_DEAD_MS and the liveness job runs. */
  const declareDead = async (pod: string) => {
    for (const name of ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4']) await liveness.recordHeartbeat(name, []);
    await pool.redis.zadd(pool.keys.heartbeats(), (await redisNow()) - 7000, pod);
    return liveness.checkLiveness(THRESHOLDS, 500, PROVIDERS);
  };

  describe('on the seed pools', () => {
    beforeEach(async () => {
      pool = await createPoolFixture({ url: sharedRedisUrl() });
      liveness = new LivenessScripts(pool.redis, pool.keys, 10000);
    });

    it("a call kept for re-homing whose redirect never comes still ends: the reconciler's backstops (max call duration, connect timeout) and the provider's own releases are not fenced", async () => {
      // Max-call-duration reaper: names the allocation, with its cutoff.
      const reaped = await allocate('CA-reap');
      await pool.scripts.connect('CA-reap', 'twilio', reaped.allocationId!);
      await declareDead(reaped.podName);
      expect(await pool.redis.hget(pool.keys.call('CA-reap'), 'rehome_requested')).toBe(String(reaped.allocationId));
      expect(await pool.scripts.release('CA-reap', 'max_call_duration', 'call.reaped', Date.now(), Date.now() + 60_000, { allocationId: reaped.allocationId! }))
        .toMatchObject({ ok: true });
      expect(await pool.redis.exists(pool.keys.call('CA-reap'))).toBe(0);

      // Connect timeout: a pending call on a dead pod, past its deadline.
      const pending = await allocate('CA-pending');
      await declareDead(pending.podName);
      expect(await pool.redis.hget(pool.keys.call('CA-pending'), 'rehome_requested')).toBe(String(pending.allocationId));
      await pool.redis.hset(pool.keys.call('CA-pending'), 'connect_deadline', Date.now() - 1000);
      expect(await pool.scripts.release('CA-pending', 'connect_timeout', 'call.released', Date.now(), undefined, { allocationId: pending.allocationId!, connectTimeout: true }))
        .toMatchObject({ ok: true });
      expect(await pool.redis.exists(pool.keys.call('CA-pending'))).toBe(0);

      // The provider's stream-stopped release (webhooks with re-homing off: no ticket) names the allocation.
      const stopped = await allocate('CA-stopped');
      await pool.scripts.connect('CA-stopped', 'twilio', stopped.allocationId!);
      await declareDead(stopped.podName);
      expect(await pool.scripts.release('CA-stopped', 'stream_stopped', 'call.released', Date.now(), undefined, { allocationId: stopped.allocationId!, endRehome: true }))
        .toMatchObject({ ok: true });
      expect(await pool.redis.exists(pool.keys.call('CA-stopped'))).toBe(0);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });

    it("a dead agent's call kept for re-homing: its late release is fenced (409) before and after the stream-stopped callback, and the stream-ended request still re-homes it", async () => {
      const first = await allocate('CA-mark');
      await pool.scripts.connect('CA-mark', 'twilio', first.allocationId!);
      const { transitions } = await declareDead(first.podName);
      expect(transitions[0].callsToRehome).toEqual([{ callSid: 'CA-mark', provider: 'twilio', allocationId: String(first.allocationId) }]);
      expect(await pool.redis.hget(pool.keys.call('CA-mark'), 'rehome_requested')).toBe(String(first.allocationId));

      // Before the stream-stopped callback: as a voice agent (its pod, its allocation), its pod alone, its allocation alone.
      let snapshot = await snapshotState(pool);
      for (const fence of [{ allocationId: first.allocationId!, podName: first.podName }, { podName: first.podName }, { allocationId: first.allocationId! }]) {
        expect(await release('CA-mark', fence)).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
      }
      expect(await snapshotState(pool)).toEqual(snapshot);

      // The provider's stream-stopped callback releases it into its ticket, marker included.
      expect((await release('CA-mark', { allocationId: first.allocationId!, ticket: true })).ok).toBe(true);
      expect(await pool.redis.hmget(pool.keys.rehomeTicket('CA-mark'), 'allocation_id', 'rehome_requested'))
        .toEqual([String(first.allocationId), String(first.allocationId)]);

      // After it: the old agent's release still changes nothing (the ticket stays).
      snapshot = await snapshotState(pool);
      for (const fence of [{ allocationId: first.allocationId!, podName: first.podName }, { podName: first.podName }, { allocationId: first.allocationId! }]) {
        expect(await release('CA-mark', fence)).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
      }
      expect(await snapshotState(pool)).toEqual(snapshot);

      const moved = await pool.scripts.rehome('CA-mark', first.allocationId!, REHOME_MAX);
      if (!moved.ok) throw new Error(`re-home refused: ${moved.code}`);
      expect(moved.rehoming.podName).not.toBe(first.podName);
      // The new allocation carries no marker: its own agent's release works.
      expect(await pool.redis.hget(pool.keys.call('CA-mark'), 'rehome_requested')).toBeNull();
      expect((await release('CA-mark', { allocationId: moved.rehoming.allocationId!, podName: moved.rehoming.podName })).ok).toBe(true);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });

    it("the provider's final release still ends a marked call and its ticket: a caller who hung up is never brought back", async () => {
      const live = await allocate('CA-hangup-live');
      const ticketed = await allocate('CA-hangup-ticket');
      await declareDead(live.podName);
      await declareDead(ticketed.podName);
      expect(await pool.redis.hget(pool.keys.call('CA-hangup-live'), 'rehome_requested')).toBe(String(live.allocationId));

      // On the record: the final status callback names neither pod nor allocation.
      expect((await release('CA-hangup-live')).ok).toBe(true);
      expect(await pool.redis.exists(pool.keys.call('CA-hangup-live'))).toBe(0);
      expect(await pool.scripts.rehome('CA-hangup-live', live.allocationId!, REHOME_MAX)).toEqual({ ok: false, code: ScriptCode.NotFound });

      // On the ticket: the stream-stopped callback first, then the final status callback.
      expect((await release('CA-hangup-ticket', { allocationId: ticketed.allocationId!, ticket: true })).ok).toBe(true);
      expect(await release('CA-hangup-ticket')).toEqual({ ok: false, code: ScriptCode.NotFound });
      expect(await pool.redis.exists(pool.keys.rehomeTicket('CA-hangup-ticket'))).toBe(0);
      expect(await pool.scripts.rehome('CA-hangup-ticket', ticketed.allocationId!, REHOME_MAX)).toEqual({ ok: false, code: ScriptCode.NotFound });

      // The liveness job ending a kept call whose redirect the provider refused (endRehome): not fenced by the marker.
      const refused = await allocate('CA-redirect-refused');
      await declareDead(refused.podName);
      expect(await release('CA-redirect-refused', { allocationId: refused.allocationId! })).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
      expect((await pool.scripts.release('CA-redirect-refused', 'agent_dead', 'call.released', Date.now(), undefined, { allocationId: refused.allocationId!, endRehome: true })).ok).toBe(true);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });

    it('a stalled call is redirected once: two liveness runs with the frozen agent still heartbeating give one redirect', async () => {
      const stalled = await allocate('CA-stall-once');
      await pool.scripts.connect('CA-stall-once', 'api');
      const beat = () => liveness.recordHeartbeat(stalled.podName, [{ callSid: 'CA-stall-once', allocationId: stalled.allocationId, mediaIn: 50, mediaOut: 50 }]);
      await beat();
      const past = (await redisNow()) - 3000;
      await pool.redis.hset(pool.keys.call('CA-stall-once'), 'media_in_at', past, 'connected_at', past);
      await pool.redis.zadd(pool.keys.callMedia(), past, 'CA-stall-once');

      const redirects: string[] = [];
      for (let run = 0; run < 2; run += 1) {
        redirects.push(...(await liveness.endStalledCalls(2000, undefined, PROVIDERS)).callsToRehome.map((call) => call.callSid));
        // The agent's loop is stuck but its heartbeat thread is not: the same media_in, reported again.
        await beat();
        expect(await pool.redis.zscore(pool.keys.callMedia(), 'CA-stall-once')).toBeNull();
      }
      expect(redirects).toEqual(['CA-stall-once']);
      expect(await pool.redis.hget(pool.keys.call('CA-stall-once'), 'pod_name')).toBe(stalled.podName);
      // An entry left by an older router is dropped, not redirected.
      await pool.redis.zadd(pool.keys.callMedia(), past, 'CA-stall-once');
      expect((await liveness.endStalledCalls(2000, undefined, PROVIDERS)).callsToRehome).toEqual([]);

      // Once re-homed, the new allocation is watched for stalls again.
      const moved = await pool.scripts.rehome('CA-stall-once', stalled.allocationId!, REHOME_MAX);
      if (!moved.ok) throw new Error(`re-home refused: ${moved.code}`);
      await pool.scripts.connect('CA-stall-once', 'api', moved.rehoming.allocationId!);
      await liveness.recordHeartbeat(moved.rehoming.podName, [{ callSid: 'CA-stall-once', allocationId: moved.rehoming.allocationId, mediaIn: 1, mediaOut: 1 }]);
      expect(await pool.redis.zscore(pool.keys.callMedia(), 'CA-stall-once')).not.toBeNull();
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });

    it('the old pod of a re-home that heartbeats is suspect, out of its pool, takes no call until its next heartbeat; a pod that never heartbeats is left alone', async () => {
      const first = await allocate('CA-old');
      await liveness.recordHeartbeat(first.podName, [{ callSid: 'CA-old', allocationId: first.allocationId, mediaIn: 1, mediaOut: 1 }]);
      const moved = await pool.scripts.rehome('CA-old', first.allocationId!, REHOME_MAX);
      if (!moved.ok) throw new Error(`re-home refused: ${moved.code}`);
      expect(await pool.redis.hget(pool.keys.pod(first.podName), 'liveness')).toBe('suspect');
      expect(await events(pool, 'pod.suspect')).toEqual([expect.objectContaining({ pod: first.podName, cause: 'call_rehomed', call_sid: 'CA-old' })]);
      expect(await pool.redis.smembers(pool.keys.poolAvailable(first.tier))).not.toContain(first.podName);
      // Every new allocation goes elsewhere while it is suspect (until none is free).
      const taken: string[] = [];
      for (let index = 0; index < 10; index += 1) {
        const result = await pool.scripts.allocate({ callSid: `CA-new-${index}`, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false });
        if (!result.ok) break;
        taken.push(result.allocation.podName);
      }
      expect(taken.length).toBeGreaterThan(0);
      expect(taken).not.toContain(first.podName);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
      for (let index = 0; index < taken.length; index += 1) await release(`CA-new-${index}`);

      // Its next heartbeat (listing nothing: the call moved) makes it live and allocatable again.
      expect(await liveness.recordHeartbeat(first.podName, [])).toMatchObject({ ok: true, liveness: 'live' });
      expect(await pool.redis.hget(pool.keys.pod(first.podName), 'liveness')).toBeNull();
      expect(await pool.redis.smembers(pool.keys.poolAvailable(first.tier))).toContain(first.podName);
      expect(await events(pool, 'pod.live')).toEqual([expect.objectContaining({ pod: first.podName, from: 'suspect' })]);
      const again: string[] = [];
      for (let index = 0; index < 10; index += 1) {
        const result = await pool.scripts.allocate({ callSid: `CA-again-${index}`, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false });
        if (!result.ok) break;
        again.push(result.allocation.podName);
      }
      expect(again).toContain(first.podName);
      // Only the call on the heartbeating pod stays, so the next call lands on a pod that never heartbeated.
      for (let index = 0; index < again.length; index += 1) if (again[index] !== first.podName) await release(`CA-again-${index}`);

      // A pod that never heartbeats is not judged: after a re-home it is simply free again.
      const quiet = await allocate('CA-quiet');
      expect(await pool.redis.hget(pool.keys.pod(quiet.podName), 'heartbeat_uid')).toBeNull();
      const movedQuiet = await pool.scripts.rehome('CA-quiet', quiet.allocationId!, REHOME_MAX);
      expect(movedQuiet.ok || movedQuiet.code === ScriptCode.RehomeNoPod).toBe(true);
      expect(await pool.redis.hget(pool.keys.pod(quiet.podName), 'liveness')).toBeNull();
      expect(await events(pool, 'pod.suspect')).toHaveLength(1);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });
  });

  describe('under a rollout (SPEC 12)', () => {
    // One exclusive tier: two v1 pods, four v2 pods; the rollout sends 100 % to v1.
    const VERSION: Record<string, string> = {
      'voice-agent-0': 'v1', 'voice-agent-1': 'v2', 'voice-agent-2': 'v2', 'voice-agent-3': 'v2', 'voice-agent-4': 'v2', 'voice-agent-5': 'v1',
    };
    const PODS = Object.keys(VERSION);

    beforeEach(async () => {
      pool = await createPoolFixture({ url: sharedRedisUrl(), pods: PODS, tierConfig: '{"standard":{"type":"exclusive","target":6}}' });
      liveness = new LivenessScripts(pool.redis, pool.keys, 10000);
      for (const name of PODS) {
        await pool.scripts.upsertPod({ name, uid: pool.uids.get(name)!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version: VERSION[name] });
      }
      await new RolloutScripts(pool.redis, pool.keys, 1000).set({ targets: [{ version: 'v1', percent: 100 }, { version: 'v2', percent: 0 }], assignment: 'random', guardrail: null }, 'test');
    });

    it('a re-homed call takes a pod of a version the rollout serves when one is free, and any version only when none is', async () => {
      const first = await allocate('CA-v1');
      expect(first.agentVersion).toBe('v1');
      const moved = await pool.scripts.rehome('CA-v1', first.allocationId!, REHOME_MAX);
      if (!moved.ok) throw new Error(`re-home refused: ${moved.code}`);
      expect(moved.rehoming).toMatchObject({ agentVersion: 'v1', podName: first.podName === 'voice-agent-0' ? 'voice-agent-5' : 'voice-agent-0' });

      // The other v1 pod is taken now (the old one suspect is not at issue: it never heartbeated, so it is free again);
      // a second call takes it, and the first call's next re-home finds no free v1 pod but the one it leaves.
      const second = await allocate('CA-v1-b');
      expect(second.agentVersion).toBe('v1');
      const fallback = await pool.scripts.rehome('CA-v1', moved.rehoming.allocationId!, REHOME_MAX);
      if (!fallback.ok) throw new Error(`re-home refused: ${fallback.code}`);
      // Never refused for a canary: a v2 pod (at 0 %) rather than no pod.
      expect(fallback.rehoming.agentVersion).toBe('v2');
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });
  });
});
