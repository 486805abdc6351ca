import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { RolloutSpec, ScriptCode } from '@smart-router/allocation';
import { RolloutScripts } from './rollout-scripts';

/**
 * The split inside allocateCall (SPEC 12), against a real Redis: the seeds'
 * tiers with ten pods (voice-agent-0 gold, -1 standard, -2 basic, -3..-9
 * standard), their versions set the way the reconciler sets them (upsertPod).
 */
describe('versioned fleets: the split inside allocateCall', () => {
  let pool: PoolFixture;
  let rollouts: RolloutScripts;
  const PODS = Array.from({ length: 10 }, (_, index) => `voice-agent-${index}`);
  // Standard pods: five v1 (1, 3, 4, 5, 6), three v2 (7, 8, 9); the basic pod is v1.
  const VERSION: Record<string, string> = {
    'voice-agent-0': 'v1', 'voice-agent-1': 'v1', 'voice-agent-2': 'v1', 'voice-agent-3': 'v1', 'voice-agent-4': 'v1',
    'voice-agent-5': 'v1', 'voice-agent-6': 'v1', 'voice-agent-7': 'v2', 'voice-agent-8': 'v2', 'voice-agent-9': 'v2',
  };

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl(), pods: PODS });
    rollouts = new RolloutScripts(pool.redis, pool.keys, 1000);
    for (const name of PODS) {
      await pool.scripts.upsertPod({ name, uid: pool.uids.get(name)!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version: VERSION[name] });
    }
  });
  afterEach(() => pool.close());

  const allocate = (callSid: string, caller?: string, draw?: number) =>
    pool.scripts.allocate({ callSid, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false, caller, draw });
  const split = (v2: number, assignment: RolloutSpec['assignment'] = 'random') =>
    rollouts.set({ targets: [{ version: 'v1', percent: 100 - v2 }, { version: 'v2', percent: v2 }], assignment, guardrail: null }, 'test');
  /** Allocates and releases at once: the pod is free again for the next draw. */
  const versionOf = async (callSid: string, caller?: string): Promise<string> => {
    const result = await allocate(callSid, caller);
    if (!result.ok) throw new Error(`allocation refused: ${result.code}`);
    await pool.scripts.release(callSid, 'hangup');
    return result.allocation.agentVersion ?? '';
  };

  it('keeps the pod membership per version, and moves a pod whose version changes', async () => {
    const { redis, keys } = pool;
    expect((await redis.smembers(keys.versionPods('v2'))).sort()).toEqual(['voice-agent-7', 'voice-agent-8', 'voice-agent-9']);
    expect((await redis.smembers(keys.versions())).sort()).toEqual(['v1', 'v2']);
    await pool.scripts.upsertPod({ name: 'voice-agent-9', uid: 'replaced', ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version: 'v3' });
    expect(await redis.hget(keys.pod('voice-agent-9'), 'version')).toBe('v3');
    expect(await redis.sismember(keys.versionPods('v2'), 'voice-agent-9')).toBe(0);
    await pool.scripts.removePod('voice-agent-9', '', null);
    expect(await redis.exists(keys.versionPods('v3'))).toBe(0);
    expect((await redis.smembers(keys.versions())).sort()).toEqual(['v1', 'v2']);
  });

  it('with no rollout allocates as before: no draw, no counters, no revision on the call', async () => {
    const seen = new Set<string>();
    for (let index = 0; index < 40; index += 1) seen.add(await versionOf(`CA-plain-${index}`));
    expect([...seen].sort()).toEqual(['v1', 'v2']);
    const result = await allocate('CA-kept');
    expect(result.ok).toBe(true);
    expect(await pool.redis.hget(pool.keys.call('CA-kept'), 'rollout_revision')).toBeNull();
    expect(await pool.redis.hget(pool.keys.call('CA-kept'), 'agent_version')).toBe(result.ok ? result.allocation.agentVersion : 'x');
    expect(await pool.redis.exists(pool.keys.rolloutStats('v1'), pool.keys.rolloutStats('v2'))).toBe(0);
  });

  it('lands a 5 % canary at 5 ± 1 points over 10,000 allocations', async () => {
    const revision = await split(5);
    let canary = 0;
    for (let index = 0; index < 10_000; index += 1) {
      if ((await versionOf(`CA-${index}`)) === 'v2') canary += 1;
    }
    expect(canary / 100).toBeGreaterThanOrEqual(4);
    expect(canary / 100).toBeLessThanOrEqual(6);
    // The counters the rollout view shows agree with what the answers said; nothing spilled.
    const [v1, v2] = await Promise.all([pool.redis.hgetall(pool.keys.rolloutStats('v1')), pool.redis.hgetall(pool.keys.rolloutStats('v2'))]);
    expect(Number(v2.allocations)).toBe(canary);
    expect(Number(v1.allocations)).toBe(10_000 - canary);
    expect(v1.spills ?? '0').toBe('0');
    expect(Number(v2['released:hangup'])).toBe(canary);
    expect(revision.revision).toBe(1);
  }, 60_000);

  it('sticky_by_caller: 1,000 callers never switch version while the split is unchanged', async () => {
    await split(30, 'sticky_by_caller');
    const first = new Map<string, string>();
    for (let caller = 0; caller < 1000; caller += 1) first.set(`+1555${caller}`, await versionOf(`CA-a-${caller}`, `+1555${caller}`));
    let switched = 0;
    for (let caller = 0; caller < 1000; caller += 1) {
      if ((await versionOf(`CA-b-${caller}`, `+1555${caller}`)) !== first.get(`+1555${caller}`)) switched += 1;
    }
    expect(switched).toBe(0);
    // The hash still follows the split: about 30 % of callers on v2.
    const onCanary = [...first.values()].filter((version) => version === 'v2').length;
    expect(onCanary).toBeGreaterThan(250);
    expect(onCanary).toBeLessThan(350);
  }, 30_000);

  it('spills to another version when the drawn one has no free pod, counted on the version that served', async () => {
    // v1 40 %, v2 60 %: a draw of 0.99 falls in v2's share.
    const revision = await split(60);
    const taken = [await allocate('CA-v2-1', undefined, 0.99), await allocate('CA-v2-2', undefined, 0.99), await allocate('CA-v2-3', undefined, 0.99)];
    expect(taken.map((result) => result.ok && result.allocation.agentVersion)).toEqual(['v2', 'v2', 'v2']);
    const spilled = await allocate('CA-spilled', undefined, 0.99);
    expect(spilled.ok && spilled.allocation.agentVersion).toBe('v1');
    expect(await pool.redis.hmget(pool.keys.call('CA-spilled'), 'agent_version', 'rollout_revision')).toEqual(['v1', String(revision.revision)]);
    expect(await pool.redis.hget(pool.keys.rolloutStats('v1'), 'spills')).toBe('1');
    expect(await pool.redis.hget(pool.keys.rolloutStats('v2'), 'spills')).toBeNull();
    // The call.allocated event carries the version and the revision.
    const events = await pool.redis.xrange(pool.keys.callStream(), '-', '+');
    const last = events[events.length - 1][1];
    expect(last[last.indexOf('agent_version') + 1]).toBe('v1');
    expect(last[last.indexOf('rollout_revision') + 1]).toBe(String(revision.revision));
  });

  it('gives a version at 0 % no new call, and takes the next split from the next allocation', async () => {
    await split(0);
    for (let index = 0; index < 30; index += 1) expect(await versionOf(`CA-zero-${index}`)).toBe('v1');
    await split(100);
    expect(await versionOf('CA-next')).toBe('v2');
  });

  it('counts a connect-timeout release on the version for the guardrail', async () => {
    const fixture = await createPoolFixture({ url: sharedRedisUrl(), pods: PODS, connectTimeoutMs: 1 });
    try {
      for (const name of PODS) {
        await fixture.scripts.upsertPod({ name, uid: fixture.uids.get(name)!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version: VERSION[name] });
      }
      await new RolloutScripts(fixture.redis, fixture.keys, 1000).set({ targets: [{ version: 'v2', percent: 100 }], assignment: 'random', guardrail: { max_excess_pp: 5, min_calls: 10 } }, 'test');
      const result = await fixture.scripts.allocate({ callSid: 'CA-silent', merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
      expect(result.ok && result.allocation.agentVersion).toBe('v2');
      const released = await fixture.scripts.release('CA-silent', 'connect_timeout', 'call.released', Date.now() + 1000, undefined, { connectTimeout: true });
      expect(released.ok).toBe(true);
      expect(await fixture.redis.hmget(fixture.keys.rolloutStats('v2'), 'connect_timeouts', 'released:connect_timeout')).toEqual(['1', '1']);
    } finally {
      await fixture.close();
    }
  });

  it('hands a waiter a pod only of a version the rollout serves, stamped and counted like an allocation', async () => {
    const revision = await split(0);
    // Every v1 pod busy: the next request waits (v2, at 0 %, gets no new call).
    const held: string[] = [];
    let queued = '';
    for (let index = 0; index < 60 && !queued; index += 1) {
      const result = await pool.scripts.allocate({ callSid: `CA-h-${index}`, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false, waitMs: 5000 });
      if (result.ok) {
        expect(result.allocation.agentVersion).toBe('v1');
        held.push(`CA-h-${index}`);
      } else {
        expect(result.code).toBe(ScriptCode.Queued);
        queued = `CA-h-${index}`;
      }
    }
    expect(queued).not.toBe('');
    const allocationsBefore = Number((await pool.redis.hget(pool.keys.rolloutStats('v1'), 'allocations')) ?? 0);
    // A v2 pod offered to the waiters (undrained: the hand-off runs) is not taken: v2 is at 0 %.
    await pool.scripts.setDrain('voice-agent-8', true);
    await pool.scripts.setDrain('voice-agent-8', false);
    expect(await pool.scripts.settleWait(queued)).toMatchObject({ state: 'waiting' });
    // A v1 pod freed is: the call carries the pod's version and the live revision, counted on v1.
    await pool.scripts.release(held[held.length - 1], 'hangup');
    const outcome = await pool.scripts.settleWait(queued);
    expect(outcome).toMatchObject({ state: 'allocated', agentVersion: 'v1' });
    expect(await pool.redis.hmget(pool.keys.call(queued), 'agent_version', 'rollout_revision')).toEqual(['v1', String(revision.revision)]);
    expect(Number(await pool.redis.hget(pool.keys.rolloutStats('v1'), 'allocations'))).toBe(allocationsBefore + 1);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('numbers revisions 1, 2, ... and keeps every one, each with its rollout.updated event', async () => {
    const first = await split(10);
    const second = await split(20, 'sticky_by_caller');
    expect([first.revision, second.revision, second.previous]).toEqual([1, 2, 1]);
    expect(JSON.parse((await pool.redis.hget(pool.keys.rolloutRevisions(), '1'))!).targets).toEqual([{ version: 'v1', percent: 90 }, { version: 'v2', percent: 10 }]);
    const events = await pool.redis.xrange(pool.keys.fleetStream(), '-', '+');
    expect(events.map(([, fields]) => fields[fields.indexOf('type') + 1])).toEqual(['rollout.updated', 'rollout.updated']);
    // A writer that built on revision 1 is refused (it did not see revision 2), and nothing is written.
    expect(await rollouts.setIfLive({ targets: [{ version: 'v2', percent: 100 }], assignment: 'random', guardrail: null }, 1, 'test', 'rollout.promoted')).toBe(ScriptCode.ConfigChanged);
    expect(await pool.redis.hlen(pool.keys.rolloutRevisions())).toBe(2);
    // Rollback returns to revision 1's split as revision 3; a second one toggles back to revision 2's.
    const back = await rollouts.rollback('test');
    expect(back).toMatchObject({ revision: 3, previous: 2, assignment: 'random', targets: [{ version: 'v1', percent: 90 }, { version: 'v2', percent: 10 }] });
  });

  it('a promote step refuses a version no pod carries and no StatefulSet serves, in the same step as the write (UnknownVersion, nothing changes)', async () => {
    const live = await split(10);
    const promote = (version: string) => rollouts.setIfLive({ targets: [{ version, percent: 100 }, { version: 'v1', percent: 0 }], assignment: 'random', guardrail: null },
      live.revision, 'test', 'rollout.promoted', Date.now(), version);
    const state = async () => [await pool.redis.get(pool.keys.rollout()), await pool.redis.hlen(pool.keys.rolloutRevisions()),
      await pool.redis.xlen(pool.keys.fleetStream()), await pool.redis.get(pool.keys.rolloutMove())];
    const before = await state();
    expect(await promote('v9')).toBe(ScriptCode.UnknownVersion);
    // Checked before the compare-and-set: a stale revision is still refused as unknown, not retried.
    expect(await rollouts.setIfLive({ targets: [{ version: 'v9', percent: 100 }], assignment: 'random', guardrail: null }, 0, 'test', 'rollout.promoted', Date.now(), 'v9')).toBe(ScriptCode.UnknownVersion);
    // The only pod of v3 goes back to v2 (as the reconciler relabels it): the step reads the pod index as it is now.
    const relabel = (version: string) => pool.scripts.upsertPod({ name: 'voice-agent-9', uid: pool.uids.get('voice-agent-9')!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version });
    await relabel('v3');
    expect(await pool.redis.scard(pool.keys.versionPods('v3'))).toBe(1);
    await relabel('v2');
    expect(await promote('v3')).toBe(ScriptCode.UnknownVersion);
    expect(await state()).toEqual(before);
    // Without `promoted` (a PUT-like write, the guardrail's rollback) nothing is checked.
    expect(await rollouts.set({ targets: [{ version: 'v9', percent: 100 }], assignment: 'random', guardrail: null }, 'test')).toMatchObject({ revision: 2 });
    // A version with pods, or one whose StatefulSet is known, is taken.
    const revision2 = 2;
    expect(await rollouts.setIfLive({ targets: [{ version: 'v2', percent: 100 }], assignment: 'random', guardrail: null }, revision2, 'test', 'rollout.promoted', Date.now(), 'v2')).toMatchObject({ revision: 3 });
    await pool.redis.hset(pool.keys.versionStatefulSets(), 'v7', 'voice-agent-v7');
    expect(await rollouts.setIfLive({ targets: [{ version: 'v7', percent: 100 }], assignment: 'random', guardrail: null }, 3, 'test', 'rollout.promoted', Date.now(), 'v7')).toMatchObject({ revision: 4 });
    expect(JSON.parse((await pool.redis.get(pool.keys.rolloutMove()))!)).toMatchObject({ version: 'v7', revision: 4 });
  });
});
