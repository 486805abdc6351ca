import Redis from 'ioredis';
import { ScriptCode } from '@smart-router/allocation';
import { PoolFixture, RedisServer, createPoolFixture, sharedRedisUrl, snapshotState, waitFor } from '@smart-router/testing';

/**
 * SPEC 10.2 "Waiting is bounded" at the script level, on a real redis-server:
 * WAIT_QUEUE_MAX and a merchant's max_waiting (503 QUEUE_FULL, nothing queued,
 * exact under concurrency), the per-tier waiter index the hand-off reads
 * (priority, age, chain filtering, dedicated pools, gold), and every way a
 * waiter leaves (hand-off, timeout, giving up, a dead process) cleaning every
 * index. Pods: voice-agent-0 gold, -1 and -2 standard, -3 basic (shared, 2
 * calls), -4 the dedicated pool of merchant acme.
 */
const TIERS = JSON.stringify({
  gold: { type: 'exclusive', target: 1 },
  standard: { type: 'exclusive', target: 2 },
  basic: { type: 'shared', target: 1, max_concurrent: 2 },
  merchant_acme: { type: 'exclusive', target: 1, dedicated: true },
});
const PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'];
const LONG_WAIT = 10000;
/**
 * The flood's waiters must outlive the flood itself on a loaded machine: a waiter
 * 2 s past its deadline is dead and dropped by the next arrival, which would then
 * take its place (right, but not what these tests count).
 */
const NEVER_EXPIRES = 600000;
/** Every tier a waiter can be indexed under in this config, plus the chains' unconfigured `overflow`. */
const INDEXED_TIERS = ['gold', 'standard', 'overflow', 'basic', 'merchant_acme'];

async function seedMerchants(pool: PoolFixture): Promise<void> {
  await pool.redis.hset(pool.keys.merchantConfig(),
    'goldie', JSON.stringify({ tier: 'gold' }),
    'cheap', JSON.stringify({ tier: 'basic' }),
    'acme', JSON.stringify({ tier: 'dedicated', pool: 'merchant_acme' }),
    'only-gold', JSON.stringify({ tier: 'gold', fallback: ['gold'] }),
    'few', JSON.stringify({ tier: 'standard', max_waiting: 3 }));
}

describe('bounded waiting and the per-tier waiter index (scripts)', () => {
  let pool: PoolFixture;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl(), tierConfig: TIERS, pods: PODS });
    await seedMerchants(pool);
  });
  afterEach(() => pool.close());

  const allocate = (callSid: string, merchantId = '', waitMs = 0, scripts = pool.scripts) =>
    scripts.allocate({ callSid, merchantId, provider: 'test', metadata: '', refuseTombstoned: false, waitMs });
  const podOf = (callSid: string) => pool.redis.hget(pool.keys.call(callSid), 'pod_name');
  const expectConsistent = async () => expect(await pool.scripts.checkInvariants()).toEqual([]);
  /** The tiers whose index holds the waiter. */
  const indexedUnder = async (callSid: string) => {
    const tiers: string[] = [];
    for (const tier of INDEXED_TIERS) if ((await pool.redis.zscore(pool.keys.waitTier(tier), callSid)) !== null) tiers.push(tier);
    return tiers;
  };
  /** Nothing of the waiter is left anywhere: queue, tier indexes, merchant count, its hash. */
  const expectGone = async (callSid: string, merchant = '') => {
    expect(await pool.redis.zscore(pool.keys.waitQueue(), callSid)).toBeNull();
    expect(await indexedUnder(callSid)).toEqual([]);
    expect(await pool.redis.exists(pool.keys.waiter(callSid))).toBe(0);
    if (merchant !== '') expect(await pool.redis.sismember(pool.keys.waitMerchant(merchant), callSid)).toBe(0);
  };

  /** Every pod busy: gold, two standard, basic twice, and acme's own pod. */
  async function fillEveryPod(): Promise<Record<string, string>> {
    const holders: Record<string, string> = {};
    for (const [callSid, merchant] of [['busy-g', 'goldie'], ['busy-s1', ''], ['busy-s2', ''], ['busy-b1', ''], ['busy-b2', ''], ['busy-a', 'acme']]) {
      const result = await allocate(callSid, merchant);
      if (!result.ok) throw new Error(`fill: ${callSid} got ${result.code}`);
      holders[callSid] = result.allocation.podName;
    }
    return holders;
  }

  it('WAIT_QUEUE_MAX: 50 concurrent requests at a cap of 5 — exactly 5 wait, 45 QUEUE_FULL at once, nothing of them queued', async () => {
    await fillEveryPod();
    const capped = pool.scriptsWith({ waitQueueMax: 5 });
    const before = await snapshotState(pool);
    const results = await Promise.all(Array.from({ length: 50 }, (_, index) => allocate(`flood-${index}`, index % 3 === 0 ? 'cheap' : '', LONG_WAIT, capped)));
    expect(results.filter((result) => !result.ok && result.code === ScriptCode.Queued)).toHaveLength(5);
    expect(results.filter((result) => !result.ok && result.code === ScriptCode.QueueFull)).toHaveLength(45);
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(5);
    const waiting = new Set(await pool.redis.zrange(pool.keys.waitQueue(), 0, -1));
    for (const [index, result] of results.entries()) {
      const sid = `flood-${index}`;
      expect({ sid, waiting: waiting.has(sid) }).toEqual({ sid, waiting: !result.ok && result.code === ScriptCode.Queued });
      if (!waiting.has(sid)) await expectGone(sid, index % 3 === 0 ? 'cheap' : '');
      expect(await podOf(sid)).toBeNull();
    }
    // Apart from the five waiters (hash, queue, indexes, merchant count, arrival counter), nothing changed.
    const after = await snapshotState(pool);
    const waiterKeys = (key: string) => key.startsWith(pool.keys.prefix + 'wait') || key === pool.keys.waitSequence();
    expect(Object.fromEntries(Object.entries(after).filter(([key]) => !waiterKeys(key))))
      .toEqual(Object.fromEntries(Object.entries(before).filter(([key]) => !waiterKeys(key))));

    // The cap refuses only requests that would wait: no wait, or a free pod (gold: no waiter's chain has it), answers as before.
    expect(await allocate('no-wait', '', 0, capped)).toEqual({ ok: false, code: ScriptCode.NoPod });
    await pool.scripts.release('busy-g', 'done');
    expect(await allocate('gold-newcomer', 'only-gold', LONG_WAIT, capped)).toMatchObject({ ok: true, allocation: { podName: 'voice-agent-0' } });
    // A duplicate of a waiting call shares its outcome, full queue or not.
    const first = [...waiting][0];
    expect(await allocate(first, '', LONG_WAIT, capped)).toMatchObject({ ok: false, code: ScriptCode.AlreadyWaiting });
    // A place frees when a waiter leaves: exactly one more may wait.
    expect(await pool.scripts.settleWait(first, true)).toEqual({ state: 'timed_out' });
    expect(await allocate('late-1', '', LONG_WAIT, capped)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await allocate('late-2', '', LONG_WAIT, capped)).toEqual({ ok: false, code: ScriptCode.QueueFull });
    await expectConsistent();
  });

  it('max_waiting: 50 concurrent requests of a merchant allowed 3 — exactly 3 wait; others still queue; the count follows hand-off, timeout and giving up', async () => {
    const holders = await fillEveryPod();
    const results = await Promise.all(Array.from({ length: 50 }, (_, index) => allocate(`few-${index}`, 'few', LONG_WAIT)));
    expect(results.filter((result) => !result.ok && result.code === ScriptCode.Queued)).toHaveLength(3);
    expect(results.filter((result) => !result.ok && result.code === ScriptCode.QueueFull)).toHaveLength(47);
    const queued = results.flatMap((result, index) => (!result.ok && result.code === ScriptCode.Queued ? [`few-${index}`] : []));
    expect((await pool.redis.smembers(pool.keys.waitMerchant('few'))).sort()).toEqual([...queued].sort());
    // Other merchants (and no merchant) are not held back by it.
    expect(await allocate('plain-1', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await allocate('other-1', 'cheap', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await pool.redis.scard(pool.keys.waitMerchant('cheap'))).toBe(1);

    // Hand-off: the oldest of the three gets the freed standard pod; one more of the merchant may wait.
    await pool.scripts.release(holders['busy-s1'] === 'voice-agent-1' ? 'busy-s1' : 'busy-s2', 'done');
    expect(await podOf(queued[0])).toBe('voice-agent-1');
    await expectGone(queued[0], 'few');
    expect(await pool.redis.scard(pool.keys.waitMerchant('few'))).toBe(2);
    expect(await allocate('few-more-1', 'few', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await allocate('few-more-2', 'few', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.QueueFull });

    // Timeout (settleWait past the deadline) and giving up both leave the count.
    expect(await allocate('few-short', 'few', 0)).toEqual({ ok: false, code: ScriptCode.NoPod });
    expect(await pool.scripts.settleWait(queued[1], true)).toEqual({ state: 'timed_out' });
    await expectGone(queued[1], 'few');
    expect(await allocate('few-short', 'few', 100)).toEqual({ ok: false, code: ScriptCode.Queued });
    await waitFor(async () => (await pool.scripts.settleWait('few-short')).state === 'timed_out', { what: 'the short waiter to time out' });
    await expectGone('few-short', 'few');
    expect((await pool.redis.smembers(pool.keys.waitMerchant('few'))).sort()).toEqual([queued[2], 'few-more-1'].sort());
    await expectConsistent();
  });

  it('indexes a waiter under every tier of its chain (its dedicated pool included) and no other', async () => {
    await fillEveryPod();
    for (const [callSid, merchant] of [['w-plain', ''], ['w-gold', 'goldie'], ['w-basic', 'cheap'], ['w-acme', 'acme'], ['w-only-gold', 'only-gold']]) {
      expect(await allocate(callSid, merchant, LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    }
    expect(await indexedUnder('w-plain')).toEqual(['standard', 'overflow', 'basic']);
    expect(await indexedUnder('w-gold')).toEqual(['gold', 'standard', 'overflow', 'basic']);
    expect(await indexedUnder('w-basic')).toEqual(['standard', 'overflow', 'basic']);
    expect(await indexedUnder('w-acme')).toEqual(['gold', 'standard', 'overflow', 'basic', 'merchant_acme']);
    expect(await indexedUnder('w-only-gold')).toEqual(['gold']);
    // Priority then arrival: the score orders dedicated and gold before standard before basic.
    const scores = await Promise.all(['w-gold', 'w-acme', 'w-plain', 'w-basic'].map(async (sid) => Number(await pool.redis.zscore(pool.keys.waitTier('standard'), sid))));
    expect([...scores].sort((a, b) => a - b)).toEqual(scores);
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(5);
  });

  it('hands a freed pod to the best waiter whose chain may use it: priority, then age, across tiers; gold and dedicated pools never to other chains', async () => {
    const holders = await fillEveryPod();
    // Arrival order: basic merchant first, plain, then gold and acme (higher priority, later).
    for (const [callSid, merchant] of [['b1', 'cheap'], ['p1', ''], ['p2', ''], ['g1', 'only-gold'], ['a1', 'acme'], ['g2', 'goldie']]) {
      expect(await allocate(callSid, merchant, LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    }
    // acme's own pod: only acme's waiter, though four others are older.
    await pool.scripts.release('busy-a', 'done');
    expect(await podOf('a1')).toBe('voice-agent-4');
    await expectGone('a1', 'acme');
    // A standard pod: the gold-priority waiter whose chain has standard (g2), not the older plain ones, never only-gold's g1.
    await pool.scripts.release(holders['busy-s1'] === 'voice-agent-1' ? 'busy-s1' : 'busy-s2', 'done');
    expect(await podOf('g2')).toBe('voice-agent-1');
    // The gold pod: g1, whose chain is gold alone, though p1 and b1 are older (their chains have no gold).
    await pool.scripts.release('busy-g', 'done');
    expect(await podOf('g1')).toBe('voice-agent-0');
    // The shared basic pod frees one slot at a time: the oldest standard-priority waiter first, then the basic one.
    await pool.scripts.release('busy-b1', 'done');
    expect(await podOf('p1')).toBe('voice-agent-3');
    await pool.scripts.release('busy-b2', 'done');
    expect(await podOf('p2')).toBe('voice-agent-3');
    expect(await podOf('b1')).toBeNull();
    // The shared pod is full again (max_concurrent 2): b1 waits for the next slot.
    expect(await pool.redis.scard(pool.keys.podCalls('voice-agent-3'))).toBe(2);
    await pool.scripts.release('p1', 'done');
    expect(await podOf('b1')).toBe('voice-agent-3');
    for (const sid of ['b1', 'p1', 'p2', 'g1', 'g2']) await expectGone(sid);
    for (const tier of INDEXED_TIERS) expect({ tier, left: await pool.redis.zcard(pool.keys.waitTier(tier)) }).toEqual({ tier, left: 0 });
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(0);
    await expectConsistent();
  });

  it('a waiter of a merchant at its max_calls is skipped (it keeps its place), the next one served', async () => {
    await pool.redis.hset(pool.keys.merchantConfig(), 'one', JSON.stringify({ tier: 'standard', max_calls: 1 }));
    const holders = await fillEveryPod();
    expect(await allocate('one-a', 'one', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await allocate('one-b', 'one', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await allocate('plain', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    const [first, second] = holders['busy-s1'] === 'voice-agent-1' ? ['busy-s1', 'busy-s2'] : ['busy-s2', 'busy-s1'];
    await pool.scripts.release(first, 'done');
    expect(await podOf('one-a')).toBe('voice-agent-1');
    // `one` is at its cap now: one-b is passed over for plain, and stays first in line for its merchant.
    await pool.scripts.release(second, 'done');
    expect(await podOf('one-b')).toBeNull();
    expect(await podOf('plain')).toBe('voice-agent-2');
    expect(await indexedUnder('one-b')).toEqual(['standard', 'overflow', 'basic']);
    await pool.scripts.release('one-a', 'done');
    expect(await podOf('one-b')).toBe('voice-agent-1');
    await expectGone('one-b', 'one');
    await expectConsistent();
  });

  it('timeouts clean every index: settleWait at the deadline, a request giving up, and a dead process\'s waiter', async () => {
    await fillEveryPod();
    // At the deadline.
    expect(await allocate('t-acme', 'acme', 100)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await indexedUnder('t-acme')).toHaveLength(5);
    await waitFor(async () => (await pool.scripts.settleWait('t-acme')).state === 'timed_out', { what: 'the waiter to time out' });
    await expectGone('t-acme', 'acme');
    // Giving up.
    expect(await allocate('t-quit', 'goldie', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await pool.scripts.settleWait('t-quit', true)).toEqual({ state: 'timed_out' });
    await expectGone('t-quit', 'goldie');

    // Dead processes: their waiters never settle. Their deadlines are moved into the past
    // (as if they had waited): the next request to join drops them from every index.
    for (const sid of ['dead-1', 'dead-2']) expect(await allocate(sid, 'few', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    const past = Date.now() - 60000;
    for (const sid of ['dead-1', 'dead-2']) {
      await pool.redis.hset(pool.keys.waiter(sid), 'deadline', past);
      await pool.redis.zadd(pool.keys.waitQueue(), past, sid);
    }
    expect(await allocate('alive', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    for (const sid of ['dead-1', 'dead-2']) await expectGone(sid, 'few');
    expect(await pool.redis.zrange(pool.keys.waitQueue(), 0, -1)).toEqual(['alive']);

    // A dead waiter at the head of a tier index is dropped by the hand-off, the next one served.
    expect(await allocate('dead-head', 'goldie', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    await pool.redis.hset(pool.keys.waiter('dead-head'), 'deadline', past);
    await pool.scripts.release('busy-s1', 'done');
    await expectGone('dead-head', 'goldie');
    expect(await podOf('dead-head')).toBeNull();
    expect(await podOf('alive')).not.toBeNull();
    await expectGone('alive');
    await expectConsistent();
  });

  it('a waiter whose hash expired (its process died long ago) leaves its entries behind only until they are met: hand-off and max_waiting prune them', async () => {
    const holders = await fillEveryPod();
    for (const sid of ['lost-1', 'lost-2', 'lost-3']) expect(await allocate(sid, 'few', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await allocate('lost-4', 'few', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.QueueFull });
    await pool.redis.del(pool.keys.waiter('lost-1'), pool.keys.waiter('lost-2'));
    // max_waiting counts only waiters that exist.
    expect(await allocate('lost-4', 'few', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect((await pool.redis.smembers(pool.keys.waitMerchant('few'))).sort()).toEqual(['lost-3', 'lost-4']);
    // The hand-off drops the lost heads of its index and serves the first real waiter.
    await pool.scripts.release(holders['busy-s1'] === 'voice-agent-1' ? 'busy-s1' : 'busy-s2', 'done');
    expect(await podOf('lost-3')).toBe('voice-agent-1');
    expect(await pool.redis.zrange(pool.keys.waitTier('standard'), 0, -1)).toEqual(['lost-4']);
    expect(await pool.redis.zrange(pool.keys.waitQueue(), 0, -1)).toEqual(['lost-4']);
    await expectConsistent();
  });
});

/**
 * The hand-off's cost does not grow with waiters that cannot use the freed pod:
 * counted as the Redis commands a release runs (INFO commandstats on a private
 * server, so no other test's traffic counts), and a 20,000-request flood.
 */
describe('hand-off cost and a flood of waiting requests (private redis-server)', () => {
  let server: RedisServer;
  let pool: PoolFixture;

  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(() => server.dispose());
  beforeEach(async () => {
    const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
    await admin.flushall();
    await admin.quit();
    pool = await createPoolFixture({ url: server.url, tierConfig: TIERS, pods: PODS });
    await seedMerchants(pool);
  });
  afterEach(() => pool.close());

  /** Commands a release ran inside Redis (the script's own commands, the EVALSHA itself excluded). */
  async function commandsOfRelease(callSid: string): Promise<number> {
    await pool.redis.config('RESETSTAT');
    const released = await pool.scripts.release(callSid, 'done');
    expect(released.ok).toBe(true);
    const stats = (await pool.redis.info('commandstats')).split('\n').filter((line) => line.startsWith('cmdstat_'));
    let total = 0;
    for (const line of stats) {
      const [, name, calls] = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim())!;
      if (!['evalsha', 'eval', 'config', 'info', 'script'].includes(name)) total += Number(calls);
    }
    return total;
  }

  /** Queues `count` requests at once, with WAIT_QUEUE_MAX raised for them. */
  const queue = async (count: number, merchant: string, prefix: string) => {
    const roomy = pool.scriptsWith({ waitQueueMax: 10000 });
    const results = await Promise.all(Array.from({ length: count }, (_, index) =>
      roomy.allocate({ callSid: `${prefix}-${index}`, merchantId: merchant, provider: '', metadata: '', refuseTombstoned: false, waitMs: NEVER_EXPIRES })));
    return results.map((result) => (result.ok ? 0 : result.code));
  };
  const take = async (callSid: string, merchant: string) => {
    const result = await pool.scripts.allocate({ callSid, merchantId: merchant, provider: '', metadata: '', refuseTombstoned: false });
    if (!result.ok) throw new Error(`${callSid}: ${result.code}`);
    return result.allocation.podName;
  };

  it('a release runs as many commands with 2,000 waiters that cannot use its pod as with none, and as with one that can when 2,000 can', async () => {
    // Every pod but gold stays busy; only the gold pod is freed and taken again.
    for (const [sid, merchant] of [['s1', ''], ['s2', ''], ['b1', ''], ['b2', ''], ['a', 'acme']]) await take(sid, merchant);
    expect(await take('gold-0', 'only-gold')).toBe('voice-agent-0');
    const empty = await commandsOfRelease('gold-0');
    await take('gold-1', 'only-gold');
    expect(new Set(await queue(2000, '', 'plain'))).toEqual(new Set([ScriptCode.Queued])); // chains without gold
    const unusable = await commandsOfRelease('gold-1');
    expect(unusable).toBe(empty);
    expect(await pool.redis.sismember(pool.keys.poolAvailable('gold'), 'voice-agent-0')).toBe(1);

    await take('gold-2', 'only-gold');
    expect(await queue(1, 'only-gold', 'one-gold')).toEqual([ScriptCode.Queued]);
    const oneCan = await commandsOfRelease('gold-2');
    expect(await pool.redis.hget(pool.keys.call('one-gold-0'), 'pod_name')).toBe('voice-agent-0');
    expect(new Set(await queue(2000, 'only-gold', 'many-gold'))).toEqual(new Set([ScriptCode.Queued]));
    const manyCan = await commandsOfRelease('one-gold-0');
    expect(manyCan).toBe(oneCan);
    expect(oneCan).toBeGreaterThan(empty);
    expect(await pool.redis.hget(pool.keys.call('many-gold-0'), 'pod_name')).toBe('voice-agent-0');
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  }, 60000);

  it('a flood of 20,000 waiting requests at once against a full pool: WAIT_QUEUE_MAX (1,000) wait, the rest QUEUE_FULL, nothing else queued; a release stays cheap', async () => {
    for (const [sid, merchant] of [['g', 'goldie'], ['s1', ''], ['s2', ''], ['b1', ''], ['b2', ''], ['a', 'acme']]) await take(sid, merchant);
    const merchants = ['', 'goldie', 'cheap', 'attacker'];
    const results = await Promise.all(Array.from({ length: 20000 }, (_, index) =>
      pool.scripts.allocate({ callSid: `flood-${index}`, merchantId: merchants[index % 4], provider: '', metadata: '', refuseTombstoned: false, waitMs: NEVER_EXPIRES })));
    const codes = results.map((result) => (result.ok ? 'allocated' : result.code));
    expect(codes.filter((code) => code === ScriptCode.Queued)).toHaveLength(1000);
    expect(codes.filter((code) => code === ScriptCode.QueueFull)).toHaveLength(19000);
    // Nothing else queued: 1,000 waiter hashes, each once in the queue and in its chain's indexes.
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(1000);
    expect((await pool.redis.keys(`${pool.keys.prefix}waiter:*`)).length).toBe(1000);
    expect(await pool.redis.zcard(pool.keys.waitTier('standard'))).toBe(1000); // every chain here names standard
    // Each merchant's waiting count is exact; gold's index holds only the chains naming gold (goldie's).
    for (const merchant of merchants.slice(1)) {
      const queued = codes.filter((code, index) => code === ScriptCode.Queued && merchants[index % 4] === merchant).length;
      expect({ merchant, waiting: await pool.redis.scard(pool.keys.waitMerchant(merchant)) }).toEqual({ merchant, waiting: queued });
    }
    expect(await pool.redis.zcard(pool.keys.waitTier('gold'))).toBe(await pool.redis.scard(pool.keys.waitMerchant('goldie')));
    expect(await pool.redis.zcard(pool.keys.activeCalls())).toBe(6);
    expect(await pool.scripts.checkInvariants()).toEqual([]);

    // Release latency with the queue full (measured, bounded only for sanity: speed belongs to tools/bench/wait-cost.mjs).
    const started = process.hrtime.bigint();
    await pool.scripts.release('s1', 'done');
    const handOffMs = Number(process.hrtime.bigint() - started) / 1e6;
    const served = await pool.redis.smembers(pool.keys.podCalls((await pool.redis.hget(pool.keys.call('s2'), 'pod_name')) === 'voice-agent-1' ? 'voice-agent-2' : 'voice-agent-1'));
    expect(served).toHaveLength(1);
    expect(served[0]).toMatch(/^flood-/);
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(999);
    console.info(`flood: a release handing its pod to a waiter with 1,000 queued took ${handOffMs.toFixed(2)} ms (client round trip included)`);
    expect(handOffMs).toBeLessThan(1000);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  }, 120000);
});
