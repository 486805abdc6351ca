import { RolloutScripts } from '@smart-router/redis-scripts';
import { PoolFixture, createPoolFixture, sharedRedisUrl, waitFor } from '@smart-router/testing';
import { judgeGuardrail, parseStoredRollout } from '@smart-router/allocation';
import { Telemetry } from '@smart-router/telemetry';
import { GuardrailJob } from './guardrail.job';
import { releaseUnconnectedCalls } from './connect-timeout.job';

/**
 * The rollout guardrail (SPEC 12) against a real Redis and the real scripts:
 * v1 agents connect their calls, v2 agents never do; the connect-timeout job
 * and the guardrail job run on their own schedules (here at
 * JOB_INTERVAL_SCALE 0.1) and nothing else touches the rollout.
 */
describe('rollout guardrail job', () => {
  const logger = { log: () => undefined, warn: () => undefined, error: () => undefined };
  const telemetry = Telemetry.start('guardrail-job-spec');
  const PODS = Array.from({ length: 10 }, (_, index) => `voice-agent-${index}`);
  // Standard pods 1, 3-6 are v1; 7-9 are v2 (pod 0 is gold, 2 basic).
  const version = (name: string) => (['voice-agent-7', 'voice-agent-8', 'voice-agent-9'].includes(name) ? 'v2' : 'v1');
  let pool: PoolFixture;
  let rollouts: RolloutScripts;
  let job: GuardrailJob;
  const timers: NodeJS.Timeout[] = [];

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl(), pods: PODS, connectTimeoutMs: 300 });
    for (const name of PODS) {
      await pool.scripts.upsertPod({ name, uid: pool.uids.get(name)!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version: version(name) });
    }
    rollouts = new RolloutScripts(pool.redis, pool.keys, 1000);
    job = new GuardrailJob(pool.redis, pool.keys, rollouts, telemetry, logger);
    // Revision 1: all v1; revision 2: the canary with its guardrail.
    await rollouts.set({ targets: [{ version: 'v1', percent: 100 }], assignment: 'random', guardrail: null }, 'test');
  });
  afterEach(async () => {
    timers.splice(0).forEach(clearInterval);
    await pool.close();
  });

  /** The reconciler's schedules at JOB_INTERVAL_SCALE 0.1 (connect-timeout 1 s, guardrail 2 s). */
  const schedule = () => {
    let busy = false;
    timers.push(setInterval(() => {
      if (busy) return;
      busy = true;
      void releaseUnconnectedCalls(pool.redis, pool.keys, pool.scripts).catch(() => undefined).finally(() => (busy = false));
    }, 100));
    let judging = false;
    timers.push(setInterval(() => {
      if (judging) return;
      judging = true;
      void job.run().catch(() => undefined).finally(() => (judging = false));
    }, 200));
  };

  /** One call: allocated, then connected by its agent only if that agent is v1; a v1 call ends normally. */
  const call = async (sid: string): Promise<string> => {
    const result = await pool.scripts.allocate({ callSid: sid, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false });
    if (!result.ok) throw new Error(`allocation refused: ${result.code}`);
    const served = result.allocation.agentVersion ?? '';
    if (served === 'v1') {
      expect((await pool.scripts.connect(sid, 'api')).ok).toBe(true);
      await pool.scripts.release(sid, 'completed');
    }
    return served;
  };

  it('rolls a v2 whose agents never connect back by itself within 10 s of crossing the threshold, with its event', async () => {
    await rollouts.set({ targets: [{ version: 'v1', percent: 50 }, { version: 'v2', percent: 50 }], assignment: 'random', guardrail: { max_excess_pp: 20, min_calls: 5 } }, 'test');
    const streamStart = (await pool.redis.xrevrange(pool.keys.fleetStream(), '+', '-', 'COUNT', 1))[0]?.[0] ?? '0';
    schedule();
    // Traffic until v2 has 5 calls: v2's pods hold them until their connect deadline.
    let v2Calls = 0;
    const v2Free = async () => {
      for (const name of ['voice-agent-7', 'voice-agent-8', 'voice-agent-9']) if (await pool.redis.sismember(pool.keys.poolAvailable('standard'), name)) return true;
      return false;
    };
    for (let index = 0; v2Calls < 5 && index < 200; index += 1) {
      if ((await call(`CA-g-${index}`)) === 'v2') v2Calls += 1;
      // v2's three pods come back through the connect-timeout job; wait for one when all are held.
      await waitFor(v2Free, { timeoutMs: 5000 });
    }
    expect(v2Calls).toBe(5);
    // The threshold is crossed when the fifth v2 call's deadline passes (300 ms after its allocation).
    const crossed = Date.now() + 300;
    await waitFor(async () => parseStoredRollout(await pool.redis.get(pool.keys.rollout()))?.revision === 3, { timeoutMs: 12000 });
    expect(Date.now() - crossed).toBeLessThan(10000);

    const live = parseStoredRollout(await pool.redis.get(pool.keys.rollout()))!;
    expect(live.targets).toEqual([{ version: 'v1', percent: 100 }]);
    expect(live.previous).toBe(2);
    expect(live.reason).toMatch(/^guardrail: version "v2"/);
    const events = (await pool.redis.xrange(pool.keys.fleetStream(), `(${streamStart}`, '+')).map(([, fields]) => {
      const record: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
      return record;
    });
    expect(events.filter((event) => event.type === 'rollout.rolled_back')).toEqual([expect.objectContaining({ revision: '3', previous: '2', cause: 'guardrail' })]);
    // Like POST …/rollback: the same step wrote the replica move back to the version at 100 %.
    expect(JSON.parse((await pool.redis.get(pool.keys.rolloutMove()))!)).toMatchObject({ version: 'v1', revision: 3 });
    // Held: the guardrail's own rollback is not judged again, however long the jobs run.
    const report = await job.run();
    expect(report).toEqual({ verdict: expect.objectContaining({ state: 'held', revision: 3 }), rolledBackTo: null });
    // New calls go to v1 only.
    for (let index = 0; index < 10; index += 1) expect(await call(`CA-after-${index}`)).toBe('v1');
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('stays quiet below the threshold and before min_calls, and never rolls back a split changed since it judged', async () => {
    await rollouts.set({ targets: [{ version: 'v1', percent: 50 }, { version: 'v2', percent: 50 }], assignment: 'random', guardrail: { max_excess_pp: 20, min_calls: 50 } }, 'test');
    const now = Date.now();
    // Three v2 calls time out: 100 % failure, but fewer than min_calls.
    for (let index = 0; index < 3; index += 1) {
      const result = await pool.scripts.allocate({ callSid: `CA-q-${index}`, merchantId: '', provider: '', metadata: '', refuseTombstoned: false, draw: 0.99 }, now);
      expect(result.ok && result.allocation.agentVersion).toBe('v2');
    }
    await releaseUnconnectedCalls(pool.redis, pool.keys, pool.scripts, now + 301);
    expect(await job.run(now + 302)).toEqual({ verdict: expect.objectContaining({ state: 'watching', canaries: [expect.objectContaining({ version: 'v2', known: 3, failure_rate: 1, excess_pp: null })] }), rolledBackTo: null });

    // The compare-and-set: a revision judged tripped but replaced meanwhile is left alone.
    const live = parseStoredRollout(await pool.redis.get(pool.keys.rollout()))!;
    expect(judgeGuardrail({ ...live, guardrail: { max_excess_pp: 20, min_calls: 3 } }, { v1: { connected: 0, connect_timeouts: 0 }, v2: { connected: 0, connect_timeouts: 3 } }).state).toBe('tripped');
    await rollouts.set({ targets: [{ version: 'v1', percent: 90 }, { version: 'v2', percent: 10 }], assignment: 'random', guardrail: { max_excess_pp: 20, min_calls: 3 } }, 'test');
    expect(await rollouts.guardrailRollback(live.revision, 'guardrail: stale')).toBe(-7);
    // The new revision starts its own count: the old revision's timeouts are not judged again.
    expect((await job.run()).verdict).toEqual(expect.objectContaining({ state: 'watching', revision: 3, canaries: [expect.objectContaining({ version: 'v2', known: 0 })] }));
    expect(parseStoredRollout(await pool.redis.get(pool.keys.rollout()))?.revision).toBe(3);
  });

  it('judges the canary against the stable version: an equal failure rate is no excess', () => {
    const live = { revision: 4, previous: 3, at: 0, reason: 'test', targets: [{ version: 'v1', percent: 90 }, { version: 'v2', percent: 10 }], assignment: 'random' as const, guardrail: { max_excess_pp: 10, min_calls: 10 } };
    expect(judgeGuardrail(live, { v1: { connected: 70, connect_timeouts: 30 }, v2: { connected: 7, connect_timeouts: 3 } })).toEqual(expect.objectContaining({ state: 'watching', stable: 'v1', stable_failure_rate: 0.3, canaries: [{ version: 'v2', known: 10, failure_rate: 0.3, excess_pp: 0 }] }));
    expect(judgeGuardrail(live, { v1: { connected: 70, connect_timeouts: 30 }, v2: { connected: 5, connect_timeouts: 5 } }).failing).toBe('v2');
    expect(judgeGuardrail({ ...live, guardrail: null }, {}).state).toBe('off');
    expect(judgeGuardrail(null, {}).state).toBe('off');
  });
});
