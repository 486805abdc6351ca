import { randomUUID } from 'node:crypto';
import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState } from '@smart-router/testing';
import { LivenessScripts, livenessOf } from './liveness-scripts';

/**
 * SPEC 11 heartbeats on the scripts themselves: enrolment, live -> suspect ->
 * dead on Redis's clock, the dead pod's rejoin rule, media stalls. Silence is
 * made by moving a pod's heartbeat back on the Redis clock (its score in the
 * heartbeat zset), so nothing sleeps.
 */

const THRESHOLDS = { suspectMs: 4000, deadMs: 6000 };

async function events(pool: PoolFixture): Promise<Record<string, string>[]> {
  const entries = await pool.redis.xrange(pool.keys.callStream(), '-', '+');
  return entries.map(([, fields]) => {
    const record: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
    return record;
  });
}

describe('liveness scripts (SPEC 11)', () => {
  let pool: PoolFixture;
  let liveness: LivenessScripts;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    liveness = new LivenessScripts(pool.redis, pool.keys, 10000);
  });
  afterEach(() => pool.close());

  const redisNow = async () => {
    const [seconds, micros] = await pool.redis.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  };
  /** The pod's last heartbeat moved `ms` into the past (Redis clock). */
  const silence = async (pod: string, ms: number) => pool.redis.zadd(pool.keys.heartbeats(), (await redisNow()) - ms, pod);
  const allocate = async (callSid: string, merchantId = '') => {
    const result = await pool.scripts.allocate({ callSid, merchantId, provider: 'twilio', metadata: '', refuseTombstoned: false });
    if (!result.ok) throw new Error(`allocation refused: ${result.code}`);
    return result.allocation;
  };
  const available = (tier: string) => pool.redis.smembers(pool.keys.poolAvailable(tier));
  const podLiveness = async (pod: string) => {
    const [state, heartbeatUid, uid, heartbeatAt] = await pool.redis.hmget(pool.keys.pod(pod), 'liveness', 'heartbeat_uid', 'uid', 'heartbeat_at');
    return livenessOf({ liveness: state, heartbeatUid, uid, heartbeatAt });
  };

  it('a heartbeat enrolls the pod on the Redis clock; an unknown pod is refused and nothing is written', async () => {
    expect(await podLiveness('voice-agent-1')).toBe('unknown');
    const before = await redisNow();
    const result = await liveness.recordHeartbeat('voice-agent-1', []);
    expect(result).toMatchObject({ ok: true, liveness: 'live', unknownCalls: [] });
    const score = Number(await pool.redis.zscore(pool.keys.heartbeats(), 'voice-agent-1'));
    expect(score).toBeGreaterThanOrEqual(before);
    expect(await podLiveness('voice-agent-1')).toBe('live');

    const snapshot = await snapshotState(pool);
    expect(await liveness.recordHeartbeat('no-such-pod', [])).toEqual({ ok: false, code: 'unknown_pod' });
    expect(await snapshotState(pool)).toEqual(snapshot);
  });

  it('a pod heard from within HEARTBEAT_SUSPECT_MS stays live and in its pool', async () => {
    await liveness.recordHeartbeat('voice-agent-1', []);
    await silence('voice-agent-1', 1000);
    expect((await liveness.checkLiveness(THRESHOLDS)).transitions).toEqual([]);
    expect(await available('standard')).toEqual(expect.arrayContaining(['voice-agent-1', 'voice-agent-3', 'voice-agent-4']));
  });

  it('silent for HEARTBEAT_SUSPECT_MS: suspect, out of its pool, its calls untouched; a heartbeat makes it live again', async () => {
    const busy = await allocate('CA-busy');
    const idle = ['voice-agent-1', 'voice-agent-3', 'voice-agent-4'].find((pod) => pod !== busy.podName)!;
    // A third enrolled pod keeps heartbeating: with every enrolled pod silent nobody would be judged (disruption guard).
    await liveness.recordHeartbeat('voice-agent-0', []);
    await liveness.recordHeartbeat(idle, []);
    await liveness.recordHeartbeat(busy.podName, [{ callSid: 'CA-busy', allocationId: busy.allocationId, mediaIn: 3, mediaOut: 3 }]);
    await silence(idle, 4100);
    await silence(busy.podName, 3900);

    const step = await liveness.checkLiveness(THRESHOLDS);
    expect(step.transitions).toEqual([{ pod: idle, state: 'suspect', uid: pool.uids.get(idle), callsEnded: 0, callsToRehome: [] }]);
    expect(await podLiveness(idle)).toBe('suspect');
    expect(await podLiveness(busy.podName)).toBe('live');
    expect(await available('standard')).not.toContain(idle);
    // Idempotent: a second step changes nothing and writes no second event.
    expect((await liveness.checkLiveness(THRESHOLDS)).transitions).toEqual([]);
    expect((await events(pool)).filter((event) => event.type === 'pod.suspect')).toEqual([
      expect.objectContaining({ pod: idle, tier: 'standard', active_calls: '0' }),
    ]);
    // Its calls are untouched: a suspect pod holding a call keeps it.
    await silence(busy.podName, 4100);
    expect((await liveness.checkLiveness(THRESHOLDS)).transitions).toEqual([expect.objectContaining({ pod: busy.podName, state: 'suspect' })]);
    expect(await pool.redis.hget(pool.keys.call('CA-busy'), 'pod_name')).toBe(busy.podName);
    // No new call reaches a suspect pod.
    const next = await allocate('CA-next');
    expect([idle, busy.podName]).not.toContain(next.podName);
    expect(await pool.scripts.checkInvariants()).toEqual([]);

    const back = await liveness.recordHeartbeat(idle, []);
    expect(back).toMatchObject({ ok: true, liveness: 'live' });
    expect(await podLiveness(idle)).toBe('live');
    expect(await available('standard')).toContain(idle);
    expect((await events(pool)).filter((event) => event.type === 'pod.live')).toEqual([
      expect.objectContaining({ pod: idle, from: 'suspect' }),
    ]);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('silent for HEARTBEAT_DEAD_MS: dead, its calls end (agent_dead), and it rejoins only with a heartbeat listing none of them', async () => {
    await pool.redis.hset(pool.keys.merchantConfig(), 'shop', JSON.stringify({ tier: 'basic' }));
    const first = await allocate('CA-1', 'shop');
    const second = await allocate('CA-2', 'shop');
    expect([first.podName, second.podName]).toEqual(['voice-agent-2', 'voice-agent-2']);
    await pool.scripts.connect('CA-1', 'api');
    await liveness.recordHeartbeat('voice-agent-2', [{ callSid: 'CA-1', allocationId: first.allocationId, mediaIn: 10, mediaOut: 9 }]);
    await silence('voice-agent-2', 6100);

    const step = await liveness.checkLiveness(THRESHOLDS);
    expect(step.transitions).toEqual([{ pod: 'voice-agent-2', state: 'dead', uid: pool.uids.get('voice-agent-2'), callsEnded: 2, callsToRehome: [] }]);
    expect(await podLiveness('voice-agent-2')).toBe('dead');
    expect(await pool.redis.exists(pool.keys.call('CA-1'), pool.keys.call('CA-2'))).toBe(0);
    expect(await pool.redis.scard(pool.keys.podCalls('voice-agent-2'))).toBe(0);
    expect(await pool.redis.zscore(pool.keys.callMedia(), 'CA-1')).toBeNull();
    expect(await pool.redis.zrange(pool.keys.poolAvailable('basic'), 0, -1)).toEqual([]);
    const log = await events(pool);
    expect(log.filter((event) => event.type === 'call.released').map((event) => [event.call_sid, event.reason]).sort()).toEqual([['CA-1', 'agent_dead'], ['CA-2', 'agent_dead']]);
    expect(log.filter((event) => event.type === 'pod.dead')).toEqual([expect.objectContaining({ pod: 'voice-agent-2', calls: '2' })]);
    expect(await pool.scripts.checkInvariants()).toEqual([]);

    // The thawed agent's late release finds no call and changes nothing.
    const snapshot = await snapshotState(pool);
    expect(await pool.scripts.release('CA-1', 'hangup', 'call.released', Date.now(), undefined, { allocationId: first.allocationId!, scope: { podName: 'voice-agent-2' } })).toMatchObject({ ok: false });
    expect(await snapshotState(pool)).toEqual(snapshot);

    // Still talking about a call it had: stays dead (and is told the call is unknown).
    const stale = await liveness.recordHeartbeat('voice-agent-2', [{ callSid: 'CA-2', allocationId: second.allocationId, mediaIn: 1, mediaOut: 1 }]);
    expect(stale).toMatchObject({ ok: true, liveness: 'dead', unknownCalls: ['CA-2'] });
    expect(await podLiveness('voice-agent-2')).toBe('dead');
    expect(await pool.redis.zrange(pool.keys.poolAvailable('basic'), 0, -1)).toEqual([]);
    // Silent again while dead: no second pod.dead.
    await silence('voice-agent-2', 7000);
    expect((await liveness.checkLiveness(THRESHOLDS)).transitions).toEqual([]);

    const clean = await liveness.recordHeartbeat('voice-agent-2', []);
    expect(clean).toMatchObject({ ok: true, liveness: 'live' });
    expect(await pool.redis.zrange(pool.keys.poolAvailable('basic'), 0, -1)).toEqual(['voice-agent-2']);
    expect((await events(pool)).filter((event) => event.type === 'pod.live')).toEqual([expect.objectContaining({ pod: 'voice-agent-2', from: 'dead' })]);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it("a pod replaced under the same name (new UID) is not held by its predecessor's liveness, and is unenrolled", async () => {
    await liveness.recordHeartbeat('voice-agent-3', []);
    await silence('voice-agent-3', 6100);
    await liveness.checkLiveness(THRESHOLDS);
    expect(await podLiveness('voice-agent-3')).toBe('dead');
    await liveness.recordHeartbeat('voice-agent-4', []);
    await pool.scripts.upsertPod({ name: 'voice-agent-4', uid: randomUUID(), ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null });
    await pool.scripts.upsertPod({ name: 'voice-agent-3', uid: randomUUID(), ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null });
    expect(await podLiveness('voice-agent-3')).toBe('unknown');
    expect(await available('standard')).toEqual(expect.arrayContaining(['voice-agent-3', 'voice-agent-4']));
    // The new incarnation's first heartbeat: live, in its pool, no pod.live (it was never dead).
    expect(await liveness.recordHeartbeat('voice-agent-3', [])).toMatchObject({ ok: true, liveness: 'live' });
    expect(await podLiveness('voice-agent-3')).toBe('live');
    expect(await available('standard')).toContain('voice-agent-3');
    expect((await events(pool)).filter((event) => event.type === 'pod.live')).toEqual([]);
    // The replaced voice-agent-4 is silent under its predecessor's heartbeat: unenrolled, never suspected.
    await silence('voice-agent-4', 4100);
    expect(await liveness.checkLiveness(THRESHOLDS)).toMatchObject({ transitions: [], unenrolled: 1 });
    expect(await pool.redis.zscore(pool.keys.heartbeats(), 'voice-agent-4')).toBeNull();
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('a heartbeat records media counters only for calls on its own pod and current allocation; others come back unknown', async () => {
    const call = await allocate('CA-own');
    const other = await allocate('CA-other');
    const result = await liveness.recordHeartbeat(call.podName, [
      { callSid: 'CA-own', allocationId: call.allocationId, mediaIn: 7, mediaOut: 5 },
      { callSid: 'CA-other', allocationId: other.allocationId, mediaIn: 1, mediaOut: 1 },
      { callSid: 'CA-own', allocationId: 999999, mediaIn: 100, mediaOut: 100 },
      { callSid: 'CA-gone', allocationId: null, mediaIn: 1, mediaOut: 1 },
    ]);
    expect(result).toMatchObject({ ok: true, unknownCalls: ['CA-other', 'CA-own', 'CA-gone'] });
    expect(await pool.redis.hmget(pool.keys.call('CA-own'), 'media_in', 'media_out')).toEqual(['7', '5']);
    expect(await pool.redis.hget(pool.keys.call('CA-other'), 'media_in')).toBeNull();
  });

  it('MEDIA_STALL_SECONDS: a connected call whose media_in stopped advancing ends alone (media_stall); off, nothing ends', async () => {
    const stalled = await allocate('CA-stalled');
    const flowing = await allocate('CA-flowing');
    await pool.scripts.connect('CA-stalled', 'api');
    await pool.scripts.connect('CA-flowing', 'api');
    const beat = (pod: string, sid: string, id: number | null, mediaIn: number) => liveness.recordHeartbeat(pod, [{ callSid: sid, allocationId: id, mediaIn, mediaOut: mediaIn }]);
    await beat(stalled.podName, 'CA-stalled', stalled.allocationId, 50);
    await beat(flowing.podName, 'CA-flowing', flowing.allocationId, 50);
    // Both go quiet 3 s ago on the Redis clock (media_in_at and connected_at), then only one advances.
    const past = (await redisNow()) - 3000;
    for (const sid of ['CA-stalled', 'CA-flowing']) {
      await pool.redis.hset(pool.keys.call(sid), 'media_in_at', past, 'connected_at', past);
      await pool.redis.zadd(pool.keys.callMedia(), past, sid);
    }
    await beat(stalled.podName, 'CA-stalled', stalled.allocationId, 50);
    await beat(flowing.podName, 'CA-flowing', flowing.allocationId, 51);

    expect(await liveness.endStalledCalls(0)).toEqual({ ended: [], pruned: 0, callsToRehome: [] });
    expect(await pool.redis.exists(pool.keys.call('CA-stalled'))).toBe(1);

    expect((await liveness.endStalledCalls(2000)).ended).toEqual(['CA-stalled']);
    expect(await pool.redis.exists(pool.keys.call('CA-stalled'))).toBe(0);
    expect(await pool.redis.exists(pool.keys.call('CA-flowing'))).toBe(1);
    expect(await available(stalled.tier)).toContain(stalled.podName);
    expect((await events(pool)).filter((event) => event.type === 'call.released')).toEqual([expect.objectContaining({ call_sid: 'CA-stalled', reason: 'media_stall' })]);
    // A released call's entry is pruned.
    await pool.scripts.release('CA-flowing', 'hangup');
    await pool.redis.zadd(pool.keys.callMedia(), past, 'CA-flowing');
    expect(await liveness.endStalledCalls(2000)).toEqual({ ended: [], pruned: 1, callsToRehome: [] });
    expect(await pool.redis.zcard(pool.keys.callMedia())).toBe(0);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('MEDIA_STALL_SECONDS with re-homing on (issue 20): a stalled call of a listed provider stays on its pod and is returned once to be redirected', async () => {
    const stalled = await allocate('CA-stall-rehome');
    await pool.scripts.connect('CA-stall-rehome', 'api');
    await liveness.recordHeartbeat(stalled.podName, [{ callSid: 'CA-stall-rehome', allocationId: stalled.allocationId, mediaIn: 50, mediaOut: 50 }]);
    const past = (await redisNow()) - 3000;
    await pool.redis.hset(pool.keys.call('CA-stall-rehome'), 'media_in_at', past, 'connected_at', past);
    await pool.redis.zadd(pool.keys.callMedia(), past, 'CA-stall-rehome');
    expect(await liveness.endStalledCalls(2000, undefined, ['twilio', 'plivo'])).toEqual({
      ended: [], pruned: 0, callsToRehome: [{ callSid: 'CA-stall-rehome', provider: 'twilio', allocationId: String(stalled.allocationId) }],
    });
    expect(await pool.redis.hget(pool.keys.call('CA-stall-rehome'), 'pod_name')).toBe(stalled.podName);
    expect((await events(pool)).filter((event) => event.type === 'call.released')).toEqual([]);
    // Once: the call left the media index, so the next run does not redirect it again.
    expect(await liveness.endStalledCalls(2000, undefined, ['twilio', 'plivo'])).toEqual({ ended: [], pruned: 0, callsToRehome: [] });
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('judges nobody while every enrolled pod is silent at once (the router side is the likelier fault), and resumes after a heartbeat', async () => {
    for (const pod of ['voice-agent-1', 'voice-agent-3', 'voice-agent-4']) {
      await liveness.recordHeartbeat(pod, []);
      await silence(pod, 7000);
    }
    expect(await liveness.checkLiveness(THRESHOLDS)).toMatchObject({ transitions: [], disrupted: true });
    expect(await podLiveness('voice-agent-3')).toBe('live');
    await liveness.recordHeartbeat('voice-agent-1', []);
    const step = await liveness.checkLiveness(THRESHOLDS);
    expect(step.disrupted).toBe(false);
    expect(step.transitions.map((transition) => [transition.pod, transition.state]).sort()).toEqual([['voice-agent-3', 'dead'], ['voice-agent-4', 'dead']]);
  });

  it('the invariants flag a suspect or dead pod found available', async () => {
    await liveness.recordHeartbeat('voice-agent-3', []);
    await silence('voice-agent-3', 4100);
    await liveness.checkLiveness(THRESHOLDS);
    await pool.redis.sadd(pool.keys.poolAvailable('standard'), 'voice-agent-3');
    expect(await pool.scripts.checkInvariants()).toEqual([expect.objectContaining({ rule: 'unresponsive_not_available', pod: 'voice-agent-3' })]);
  });
});
