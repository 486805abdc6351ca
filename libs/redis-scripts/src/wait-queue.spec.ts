import { ScriptCode } from '@smart-router/allocation';
import { PoolFixture, createPoolFixture, sharedRedisUrl, waitFor } from '@smart-router/testing';

/**
 * SPEC 9.1 at the script level, on a real redis-server: the wait queue, the
 * hand-off inside every script that frees a pod, exact timeouts and merchant
 * caps. Pods: voice-agent-0 gold, -1 and -2 standard, -3 basic, -4 the
 * dedicated pool of merchant acme.
 */
const TIERS = JSON.stringify({
  gold: { type: 'exclusive', target: 1 },
  standard: { type: 'exclusive', target: 2 },
  basic: { type: 'exclusive', target: 1 },
  merchant_acme: { type: 'exclusive', target: 1, dedicated: true },
});
const PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'];
const LONG_WAIT = 10000;

describe('wait queue and merchant caps (scripts)', () => {
  let pool: PoolFixture;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl(), tierConfig: TIERS, pods: PODS });
    await pool.redis.hset(pool.keys.merchantConfig(),
      'goldie', JSON.stringify({ tier: 'gold' }),
      'cheap', JSON.stringify({ tier: 'basic' }),
      'acme', JSON.stringify({ tier: 'dedicated', pool: 'merchant_acme' }));
  });
  afterEach(() => pool.close());

  const allocate = (callSid: string, merchantId = '', waitMs = 0) =>
    pool.scripts.allocate({ callSid, merchantId, provider: 'test', metadata: '', refuseTombstoned: false, waitMs });
  const podOf = (callSid: string) => pool.redis.hget(pool.keys.call(callSid), 'pod_name');
  const expectConsistent = async () => expect(await pool.scripts.checkInvariants()).toEqual([]);

  /** Every pod busy: gold, two standard, basic, and acme's own pod. */
  async function fillEveryPod(): Promise<Record<string, string>> {
    const holders: Record<string, string> = {};
    for (const [callSid, merchant] of [['busy-g', 'goldie'], ['busy-s1', ''], ['busy-s2', ''], ['busy-b', ''], ['busy-a', 'acme']]) {
      const result = await allocate(callSid, merchant);
      if (!result.ok) throw new Error(`fill: ${callSid} got ${result.code}`);
      holders[result.allocation.podName] = callSid;
    }
    expect(Object.keys(holders).sort()).toEqual(PODS);
    return holders;
  }

  it('queues a request when nothing is free and hands it the pod its release frees, in the same step', async () => {
    const holders = await fillEveryPod();
    expect(await allocate('w1', '', 0)).toEqual({ ok: false, code: ScriptCode.NoPod });
    expect(await allocate('w1', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(1);
    expect(await pool.scripts.settleWait('w1')).toEqual({ state: 'waiting', remainingMs: expect.any(Number) });

    await pool.scripts.release(holders['voice-agent-1'], 'done');
    expect(await pool.scripts.settleWait('w1')).toEqual({ state: 'allocated', podName: 'voice-agent-1', tier: 'standard', podUid: pool.uids.get('voice-agent-1'), allocationId: expect.any(Number), callState: 'pending', agentVersion: '' });
    expect(await pool.redis.get(pool.keys.lease('voice-agent-1'))).toBe('w1');
    expect(await pool.redis.sismember(pool.keys.poolAvailable('standard'), 'voice-agent-1')).toBe(0);
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(0);
    expect(await pool.redis.exists(pool.keys.waiter('w1'))).toBe(0);
    const events = await pool.redis.xrange(pool.keys.callStream(), '-', '+');
    expect(events.filter(([, fields]) => fields.includes('w1') && fields.includes('call.allocated'))).toHaveLength(1);
    // A repeated allocate for the waiter's call finds its pod.
    const again = await allocate('w1', '', LONG_WAIT);
    expect(again.ok && again.allocation).toMatchObject({ podName: 'voice-agent-1', wasExisting: true });
    await expectConsistent();
  });

  it('hands a waiter a pod that becomes ready, a new pod (scale-up) and an undrained pod', async () => {
    const holders = await fillEveryPod();
    // A pod that turns ready.
    await pool.scripts.upsertPod({ name: 'voice-agent-1', uid: pool.uids.get('voice-agent-1')!, ready: false, terminating: false, metadata: {}, pinnedTier: '', term: null });
    await pool.scripts.release(holders['voice-agent-1'], 'done');
    expect(await allocate('w-ready', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    await pool.scripts.upsertPod({ name: 'voice-agent-1', uid: pool.uids.get('voice-agent-1')!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null });
    expect(await podOf('w-ready')).toBe('voice-agent-1');

    // A new pod of the StatefulSet (scale-up): ordinal 5 lands in the extra tier, standard.
    expect(await allocate('w-new', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    await pool.scripts.upsertPod({ name: 'voice-agent-5', uid: 'uid-5', ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null });
    expect(await podOf('w-new')).toBe('voice-agent-5');

    // Undrain.
    await pool.scripts.setDrain('voice-agent-2', true);
    await pool.scripts.release(holders['voice-agent-2'], 'done');
    expect(await allocate('w-undrain', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    await pool.scripts.setDrain('voice-agent-2', false);
    expect(await podOf('w-undrain')).toBe('voice-agent-2');
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(0);
    await expectConsistent();
  });

  it('serves waiters by merchant priority, oldest first within a priority', async () => {
    const holders = await fillEveryPod();
    const order = [['b1', 'cheap'], ['s1', ''], ['b2', 'cheap'], ['g1', 'goldie'], ['s2', 'unconfigured'], ['a1', 'acme'], ['g2', 'goldie'], ['s3', '']];
    for (const [callSid, merchant] of order) expect(await allocate(callSid, merchant, LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    // One standard pod, freed again and again: each release hands it to the next waiter.
    const served: string[] = [];
    let holder = holders['voice-agent-1'];
    for (let index = 0; index < order.length; index += 1) {
      await pool.scripts.release(holder, 'done');
      const next = order.map(([callSid]) => callSid).filter((callSid) => !served.includes(callSid));
      const winners = [];
      for (const callSid of next) if ((await podOf(callSid)) === 'voice-agent-1') winners.push(callSid);
      expect(winners).toHaveLength(1);
      served.push(winners[0]);
      holder = winners[0];
    }
    expect(served).toEqual(['g1', 'a1', 'g2', 's1', 's2', 's3', 'b1', 'b2']);
    await expectConsistent();
  });

  it('gives a pod only to a waiter whose chain may use it: gold never to a chain without gold, a dedicated pool only to its merchant', async () => {
    const holders = await fillEveryPod();
    expect(await allocate('plain', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await allocate('other-dedicated', 'cheap', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    await pool.scripts.release(holders['voice-agent-0'], 'done'); // gold
    await pool.scripts.release(holders['voice-agent-4'], 'done'); // acme's pool
    expect(await podOf('plain')).toBeNull();
    expect(await podOf('other-dedicated')).toBeNull();
    expect(await pool.redis.sismember(pool.keys.poolAvailable('gold'), 'voice-agent-0')).toBe(1);
    expect(await pool.redis.sismember(pool.keys.poolAvailable('merchant_acme'), 'voice-agent-4')).toBe(1);
    // A gold waiter arriving now takes the free gold pod at once; acme its own pool.
    expect(await allocate('gold-call', 'goldie', LONG_WAIT)).toMatchObject({ ok: true, allocation: { podName: 'voice-agent-0' } });
    expect(await allocate('acme-call', 'acme', LONG_WAIT)).toMatchObject({ ok: true, allocation: { podName: 'voice-agent-4' } });
    // The basic pod frees: the oldest waiter whose chain names basic gets it.
    await pool.scripts.release(holders['voice-agent-3'], 'done');
    expect(await podOf('plain')).toBe('voice-agent-3');
    await expectConsistent();
  });

  it('a newcomer never overtakes a waiter, even for a pod put back by a path that skipped the hand-off', async () => {
    const holders = await fillEveryPod();
    expect(await allocate('waiter', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    await pool.scripts.release(holders['voice-agent-2'], 'done');
    expect(await podOf('waiter')).toBe('voice-agent-2');
    expect(await allocate('newcomer', '', 0)).toEqual({ ok: false, code: ScriptCode.NoPod });

    // A free pod that no script offered (e.g. written by the Go router during a migration).
    expect(await allocate('waiter-2', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    await pool.redis.del(pool.keys.call(holders['voice-agent-1']), pool.keys.lease('voice-agent-1'));
    await pool.redis.srem(pool.keys.podCalls('voice-agent-1'), holders['voice-agent-1']);
    await pool.redis.zrem(pool.keys.activeCalls(), holders['voice-agent-1']);
    await pool.redis.hdel(pool.keys.pod('voice-agent-1'), 'allocated_call_sid');
    await pool.redis.sadd(pool.keys.poolAvailable('standard'), 'voice-agent-1');
    expect(await allocate('newcomer-2', '', 0)).toEqual({ ok: false, code: ScriptCode.NoPod });
    expect(await podOf('waiter-2')).toBe('voice-agent-1');
  });

  it('times out exactly: the 503 removes the waiter, a later free pod is not bound to it, and a hand-off before the check wins', async () => {
    const holders = await fillEveryPod();
    expect(await allocate('late', '', 150)).toEqual({ ok: false, code: ScriptCode.Queued });
    await waitFor(async () => (await pool.scripts.settleWait('late')).state === 'timed_out', { what: 'the waiter to time out' });
    expect(await pool.redis.zscore(pool.keys.waitQueue(), 'late')).toBeNull();
    await pool.scripts.release(holders['voice-agent-1'], 'done');
    expect(await podOf('late')).toBeNull();
    expect(await pool.redis.sismember(pool.keys.poolAvailable('standard'), 'voice-agent-1')).toBe(1);
    expect(await pool.scripts.settleWait('late')).toEqual({ state: 'timed_out' });

    // Past its deadline but not yet settled: the hand-off wins and the request answers 200.
    expect(await allocate('refill', '', 0)).toMatchObject({ ok: true, allocation: { podName: 'voice-agent-1' } });
    expect(await allocate('racer', '', 100)).toEqual({ ok: false, code: ScriptCode.Queued });
    const deadline = Number(await pool.redis.hget(pool.keys.waiter('racer'), 'deadline'));
    await waitFor(async () => {
      const [seconds, micros] = await pool.redis.time();
      return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) > deadline;
    }, { what: 'the racer deadline to pass on the Redis clock' });
    await pool.scripts.release('refill', 'done');
    expect(await pool.scripts.settleWait('racer')).toMatchObject({ state: 'allocated', podName: 'voice-agent-1' });
    await expectConsistent();
  });

  it('a request giving up (Redis error) leaves the queue at once, or learns that it already holds a pod', async () => {
    const holders = await fillEveryPod();
    expect(await allocate('quitter', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await pool.scripts.settleWait('quitter', true)).toEqual({ state: 'timed_out' });
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(0);
    await pool.scripts.release(holders['voice-agent-1'], 'done');
    expect(await podOf('quitter')).toBeNull();
    expect(await pool.scripts.settleWait(holders['voice-agent-2'], true)).toMatchObject({ state: 'allocated', podName: 'voice-agent-2' });
    await expectConsistent();
  });

  it('a duplicate call_sid arriving while the first waits shares its outcome, pod or timeout', async () => {
    const holders = await fillEveryPod();
    expect(await allocate('dup', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await allocate('dup', '', 0)).toEqual({ ok: false, code: ScriptCode.AlreadyWaiting, waitingMerchant: '' });
    expect(await allocate('dup', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.AlreadyWaiting, waitingMerchant: '' });
    // The answer names the waiting request's merchant, not the duplicate's (a scoped caller is checked against it).
    expect(await allocate('dup', 'other-merchant', 0)).toEqual({ ok: false, code: ScriptCode.AlreadyWaiting, waitingMerchant: '' });
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(1);
    await pool.scripts.release(holders['voice-agent-1'], 'done');
    expect(await pool.scripts.settleWait('dup')).toMatchObject({ state: 'allocated', podName: 'voice-agent-1' });
    expect(await pool.redis.smembers(pool.keys.podCalls('voice-agent-1'))).toEqual(['dup']);

    expect(await allocate('dup-late', '', 100)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await allocate('dup-late', '', 0)).toEqual({ ok: false, code: ScriptCode.AlreadyWaiting, waitingMerchant: '' });
    await waitFor(async () => (await pool.scripts.settleWait('dup-late')).state === 'timed_out', { what: 'the first request to time out' });
    expect(await pool.scripts.settleWait('dup-late')).toEqual({ state: 'timed_out' });
    await expectConsistent();
  });

  it('max_calls: 50 concurrent new calls of a capped merchant get exactly 3 pods, the rest MERCHANT_LIMIT', async () => {
    const big = await createPoolFixture({ url: sharedRedisUrl(), pods: Array.from({ length: 12 }, (_, index) => `voice-agent-${index}`) });
    try {
      await big.redis.hset(big.keys.merchantConfig(), 'capped', JSON.stringify({ tier: 'standard', max_calls: 3 }));
      const results = await Promise.all(Array.from({ length: 50 }, (_, index) =>
        big.scripts.allocate({ callSid: `cap-${index}`, merchantId: 'capped', provider: '', metadata: '', refuseTombstoned: false, waitMs: index % 2 === 0 ? 0 : 2000 })));
      const served = results.filter((result) => result.ok);
      expect(served).toHaveLength(3);
      expect(results.filter((result) => !result.ok && result.code === ScriptCode.MerchantLimit)).toHaveLength(47);
      expect(await big.redis.scard(big.keys.merchantCalls('capped'))).toBe(3);
      // A release makes room for exactly one more; a repeated call_sid is never refused.
      const live = (await big.redis.smembers(big.keys.merchantCalls('capped'))).sort();
      expect((await big.scripts.allocate({ callSid: live[0], merchantId: 'capped', provider: '', metadata: '', refuseTombstoned: false })).ok).toBe(true);
      await big.scripts.release(live[0], 'done');
      expect((await big.scripts.allocate({ callSid: 'cap-new', merchantId: 'capped', provider: '', metadata: '', refuseTombstoned: false })).ok).toBe(true);
      expect(await big.scripts.allocate({ callSid: 'cap-over', merchantId: 'capped', provider: '', metadata: '', refuseTombstoned: false })).toEqual({ ok: false, code: ScriptCode.MerchantLimit });
      // A call whose record expired without a release no longer counts.
      await big.redis.del(big.keys.call('cap-new'));
      expect((await big.scripts.allocate({ callSid: 'cap-after-expiry', merchantId: 'capped', provider: '', metadata: '', refuseTombstoned: false })).ok).toBe(true);
      await big.scripts.sweepPod((await big.redis.hget(big.keys.call('cap-after-expiry'), 'pod_name'))!);
    } finally {
      await big.close();
    }
  });

  it('the live-call set follows every path that ends a call (release, reap, pod deleted or replaced), checked by the invariants', async () => {
    await pool.redis.hset(pool.keys.merchantConfig(), 'm', JSON.stringify({ tier: 'standard', max_calls: 10 }));
    for (const callSid of ['m1', 'm2', 'm3']) expect((await allocate(callSid, 'm')).ok).toBe(true);
    expect((await pool.redis.smembers(pool.keys.merchantCalls('m'))).sort()).toEqual(['m1', 'm2', 'm3']);
    await pool.scripts.release('m1', 'done');
    await pool.scripts.release('m2', 'max_call_duration', 'call.reaped');
    expect(await pool.redis.smembers(pool.keys.merchantCalls('m'))).toEqual(['m3']);
    const pod = (await podOf('m3'))!;
    await pool.scripts.upsertPod({ name: pod, uid: 'new-uid', ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null });
    expect(await pool.redis.scard(pool.keys.merchantCalls('m'))).toBe(0);
    expect((await allocate('m4', 'm')).ok).toBe(true);
    await pool.scripts.removePod((await podOf('m4'))!, '', null);
    expect(await pool.redis.scard(pool.keys.merchantCalls('m'))).toBe(0);
    await expectConsistent();
    expect((await allocate('m5', 'm')).ok).toBe(true);
    await pool.redis.srem(pool.keys.merchantCalls('m'), 'm5');
    expect(await pool.scripts.checkInvariants()).toEqual([expect.objectContaining({ rule: 'merchant_calls_counted', call_sid: 'm5' })]);
  });

  it('a waiter of a merchant at its cap is skipped by the hand-off until its merchant has room', async () => {
    await pool.redis.hset(pool.keys.merchantConfig(), 'one', JSON.stringify({ tier: 'standard', max_calls: 1 }));
    const holders = await fillEveryPod();
    expect(await allocate('one-waiting', 'one', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    expect(await allocate('plain-waiting', '', LONG_WAIT)).toEqual({ ok: false, code: ScriptCode.Queued });
    // Its merchant's live call appears meanwhile (e.g. allocated on another chain): the waiter is skipped.
    const ones = holders['voice-agent-1'];
    await pool.redis.sadd(pool.keys.merchantCalls('one'), ones);
    await pool.redis.hset(pool.keys.call(ones), 'merchant_id', 'one');
    await pool.scripts.release(holders['voice-agent-2'], 'done');
    expect(await podOf('one-waiting')).toBeNull();
    expect(await podOf('plain-waiting')).toBe('voice-agent-2');
    await pool.scripts.release(ones, 'done');
    expect(await podOf('one-waiting')).toBe('voice-agent-1');
    await expectConsistent();
  });
});
