import Redis from 'ioredis';
import { ScriptCode } from '@smart-router/allocation';
import { PoolFixture, RedisServer, createPoolFixture, waitFor } from '@smart-router/testing';
import { FleetScripts } from './fleet-scripts';
import { NotReplicatedError, PoolScripts, ReplicationLimits } from './pool-scripts';

/**
 * Two WAIT budgets. A write the replica must confirm gets a generous one, so a
 * busy CI machine (2 cores, many suites at once) cannot fail it by being slow;
 * a write sent while the replica is stopped gets a short one, so the test does
 * not sit out the generous budget to see the refusal.
 */
const CONFIRMED_WAIT_MS = 5000;
const SHORT_WAIT_MS = 300;

/** WAIT after state-changing scripts (REDIS_REPLICA_ACKS), on a real primary and replica. */
describe('replica acknowledgements', () => {
  let primary: RedisServer;
  let replica: RedisServer;
  let replicaClient: Redis;
  let admin: Redis;
  let pool: PoolFixture;
  /** The same pool's scripts with the short WAIT budget, for writes while the replica is stopped. */
  let impatient: PoolScripts;
  let shortfalls: string[];
  const impatientLimits = (): ReplicationLimits => ({ replicaAcks: 1, waitTimeoutMs: SHORT_WAIT_MS, onNotReplicated: (script) => shortfalls.push(script) });

  const waits = async () => Number(/cmdstat_wait:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
  const allocateWith = (scripts: PoolScripts, callSid: string) => scripts.allocate({ callSid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
  const allocate = (callSid: string) => allocateWith(pool.scripts, callSid);

  beforeAll(async () => {
    primary = await RedisServer.start(undefined, ['--repl-diskless-sync-delay', '0']);
    replica = await RedisServer.start(undefined, ['--replicaof', '127.0.0.1', String(primary.port)]);
    admin = new Redis(primary.url, { maxRetriesPerRequest: 1 });
    replicaClient = new Redis(replica.url, { maxRetriesPerRequest: 1 });
    await waitFor(async () => /slave0:.*state=online/.test(await admin.info('replication')), { what: 'replica online' });
    // Online is not yet acknowledging: start only once a WAIT is answered by it.
    await waitFor(async () => Number(await admin.call('WAIT', 1, 1000)) === 1, { what: 'replica acknowledges' });
  });
  afterAll(async () => {
    await Promise.all([admin.quit(), replicaClient.quit()]);
    await Promise.all([replica.dispose(), primary.dispose()]);
  });

  beforeEach(async () => {
    shortfalls = [];
    pool = await createPoolFixture({
      url: primary.url,
      pods: ['voice-agent-0', 'voice-agent-1'],
      tierConfig: '{"standard":{"type":"exclusive","target":0}}',
      limits: { replicaAcks: 1, waitTimeoutMs: CONFIRMED_WAIT_MS, onNotReplicated: (script) => shortfalls.push(script) },
    });
    impatient = pool.scriptsWith(impatientLimits());
  });
  afterEach(async () => {
    replica.resume();
    await pool.close();
  });

  it('answers only after the replica has the allocation: one WAIT per write, in the same pipeline', async () => {
    const before = await waits();
    const result = await allocate('CA-acked');
    expect(result.ok).toBe(true);
    // Read from the replica right away: WAIT returned, so it must be there.
    expect(await replicaClient.hget(pool.keys.call('CA-acked'), 'pod_name')).toBe(result.ok ? result.allocation.podName : '');
    expect(await waits()).toBe(before + 1);
    await pool.scripts.release('CA-acked', 'hangup');
    expect(await replicaClient.exists(pool.keys.call('CA-acked'))).toBe(0);
    expect(await waits()).toBe(before + 2);
  });

  it('throws NotReplicatedError (and counts it) when the replica does not confirm in time; the same call retried is safe', async () => {
    replica.pause();
    const started = Date.now();
    await expect(allocateWith(impatient, 'CA-unconfirmed')).rejects.toThrow(NotReplicatedError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(SHORT_WAIT_MS - 50);
    expect(shortfalls).toEqual(['allocateCall']);
    // The write happened on the primary; the replica has not confirmed it.
    const pod = await pool.redis.hget(pool.keys.call('CA-unconfirmed'), 'pod_name');
    expect(pod).toMatch(/^voice-agent-/);
    replica.resume();
    const retried = await allocate('CA-unconfirmed');
    expect(retried).toMatchObject({ ok: true, allocation: { podName: pod, wasExisting: true } });
  });

  it('the fleet plan obeys the same WAIT: a scale decision the replica did not confirm is a NotReplicatedError', async () => {
    const fleet = new FleetScripts(pool.redis, pool.keys, 'voice-agent', 1000, { replicaAcks: 1, waitTimeoutMs: CONFIRMED_WAIT_MS, onNotReplicated: (script) => shortfalls.push(script) });
    const impatientFleet = new FleetScripts(pool.redis, pool.keys, 'voice-agent', 1000, impatientLimits());
    const before = await waits();
    expect(await fleet.step(2, 'token', 5000)).toEqual({ action: 'steady', target: 2 });
    expect(await waits()).toBe(before + 1);
    replica.pause();
    await expect(impatientFleet.plan(3, 'test')).rejects.toThrow(NotReplicatedError);
    expect(shortfalls).toEqual(['planFleet']);
    replica.resume();
    expect(await replicaClient.hget(pool.keys.fleetPlan(), 'target')).toBe('3');
  });

  it('a refusal wrote nothing, so it is answered as such even with no replica confirming', async () => {
    expect((await allocate('CA-a')).ok).toBe(true);
    expect((await allocate('CA-b')).ok).toBe(true);
    replica.pause();
    expect(await allocateWith(impatient, 'CA-c')).toEqual({ ok: false, code: ScriptCode.NoPod });
    expect(shortfalls).toEqual([]);
  });

  it('read-only scripts never WAIT', async () => {
    replica.pause();
    const before = await waits();
    expect(await pool.scripts.checkInvariants()).toEqual([]);
    expect(await pool.scripts.ping()).toBe('PONG');
    expect(await pool.scripts.primaryId()).toMatch(/^[0-9a-f]{40}$/);
    expect(await waits()).toBe(before);
  });

  it('with REDIS_REPLICA_ACKS=0 nothing waits', async () => {
    const unacked = await createPoolFixture({ url: primary.url, pods: ['voice-agent-9'], tierConfig: '{"standard":{"type":"exclusive","target":0}}' });
    try {
      replica.pause();
      const before = await waits();
      expect((await unacked.scripts.allocate({ callSid: 'CA-fast', merchantId: '', provider: '', metadata: '', refuseTombstoned: false })).ok).toBe(true);
      expect(await waits()).toBe(before);
    } finally {
      await unacked.close();
    }
  });
});
