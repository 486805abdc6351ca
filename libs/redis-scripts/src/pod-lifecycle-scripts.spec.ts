import { ScriptCode } from '@smart-router/allocation';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import type { PodObservation } from './pool-scripts';

/**
 * SPEC section 6, behaviours 2, 3 and 6, at the level of the scripts the
 * reconciler calls (upsertPod, removePod, setPodDrain), plus the guards that
 * keep a stale observation from undoing a newer one.
 *
 * Fixture: voice-agent-0 gold, voice-agent-1 standard, voice-agent-2 basic
 * (shared, 3 calls per pod). A call with no merchant walks standard, overflow,
 * basic; merchant `shop` ({"tier":"basic"}) walks basic first.
 */
const GOLD = 'voice-agent-0';
const STANDARD = 'voice-agent-1';
const SHARED = 'voice-agent-2';

type StreamEvent = Record<string, string>;

describe('pod lifecycle scripts', () => {
  let pool: PoolFixture;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl(), pods: [GOLD, STANDARD, SHARED] });
    await pool.redis.hset(pool.keys.merchantConfig(), 'shop', JSON.stringify({ tier: 'basic' }));
  });
  afterEach(() => pool.close());

  const allocate = async (callSid: string, merchantId = '') => {
    const result = await pool.scripts.allocate({ callSid, merchantId, provider: 'twilio', metadata: '', refuseTombstoned: false });
    if (!result.ok) throw new Error(`allocation of ${callSid} failed with ${result.code}`);
    return result.allocation;
  };
  const observe = (name: string, changes: Partial<PodObservation> = {}): PodObservation => ({
    name, uid: pool.uids.get(name)!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, ...changes,
  });
  const events = async (): Promise<StreamEvent[]> =>
    (await pool.redis.xrange(pool.keys.callStream(), '-', '+')).map(([, fields]) => {
      const event: StreamEvent = {};
      for (let i = 0; i + 1 < fields.length; i += 2) event[fields[i]] = fields[i + 1];
      return event;
    });
  const available = (tier: string, name: string) =>
    tier === 'basic'
      ? pool.redis.zscore(pool.keys.poolAvailable(tier), name)
      : pool.redis.sismember(pool.keys.poolAvailable(tier), name).then((member) => (member === 1 ? 'member' : null));
  const expectConsistent = async () => expect(await pool.scripts.checkInvariants()).toEqual([]);

  describe('upsertPod with the same name and a new UID (StatefulSet restart)', () => {
    it('ends the exclusive pod\'s call: record removed, call.orphaned emitted, the new pod starts empty', async () => {
      const call = await allocate('CA-restart');
      expect(call.podName).toBe(STANDARD);
      const before = (await events()).length;

      expect(await pool.scripts.upsertPod(observe(STANDARD, { uid: 'uid-new' }))).toEqual({ tier: 'standard', orphaned: 1 });

      const { redis, keys } = pool;
      expect(await redis.exists(keys.call('CA-restart'))).toBe(0);
      expect(await redis.zscore(keys.activeCalls(), 'CA-restart')).toBeNull();
      expect(await redis.smembers(keys.podCalls(STANDARD))).toEqual([]);
      expect(await redis.exists(keys.lease(STANDARD))).toBe(0);
      expect(await redis.hgetall(keys.pod(STANDARD))).toMatchObject({ uid: 'uid-new', status: 'available', tier: 'standard' });
      expect(await redis.hexists(keys.pod(STANDARD), 'allocated_call_sid')).toBe(0);
      expect(await available('standard', STANDARD)).toBe('member');
      const emitted = (await events()).slice(before);
      expect(emitted).toEqual([expect.objectContaining({ type: 'call.orphaned', call_sid: 'CA-restart', pod: STANDARD, tier: 'standard', reason: 'pod_replaced' })]);
      await expectConsistent();

      // The old call is gone for the voice agent too, and never comes back bound to the new pod.
      expect(await pool.scripts.release('CA-restart', 'hangup')).toEqual({ ok: false, code: ScriptCode.NotFound });
      const again = await allocate('CA-restart');
      expect(again).toMatchObject({ wasExisting: false, podUid: again.podName === STANDARD ? 'uid-new' : pool.uids.get(again.podName) });
      await expectConsistent();
    });

    it('ends every call of a shared pod and resets its score to zero', async () => {
      expect((await allocate('CA-s1', 'shop')).podName).toBe(SHARED);
      expect((await allocate('CA-s2', 'shop')).podName).toBe(SHARED);
      expect(await available('basic', SHARED)).toBe('2');

      expect(await pool.scripts.upsertPod(observe(SHARED, { uid: 'uid-shared-2' }))).toEqual({ tier: 'basic', orphaned: 2 });

      expect(await pool.redis.exists(pool.keys.call('CA-s1'), pool.keys.call('CA-s2'))).toBe(0);
      expect(await available('basic', SHARED)).toBe('0');
      const orphaned = (await events()).filter((event) => event.type === 'call.orphaned');
      expect(orphaned.map((event) => event.call_sid).sort()).toEqual(['CA-s1', 'CA-s2']);
      expect(orphaned.every((event) => event.reason === 'pod_replaced' && event.pod === SHARED && event.tier === 'basic')).toBe(true);
      await expectConsistent();
    });

    it('with the same UID changes nothing (idempotent)', async () => {
      await allocate('CA-same');
      expect(await pool.scripts.upsertPod(observe(STANDARD))).toEqual({ tier: 'standard', orphaned: 0 });
      expect(await pool.redis.hget(pool.keys.call('CA-same'), 'pod_name')).toBe(STANDARD);
      expect(await pool.redis.get(pool.keys.lease(STANDARD))).toBe('CA-same');
      expect(await available('standard', STANDARD)).toBeNull();
      expect((await events()).filter((event) => event.type === 'call.orphaned')).toEqual([]);
      await expectConsistent();
    });
  });

  describe('a not-ready or terminating pod', () => {
    it.each([
      ['not ready', { ready: false }],
      ['terminating', { terminating: true }],
    ])('(%s) gets no new call; its active call keeps its record and releases normally', async (_label, change) => {
      expect((await allocate('CA-live')).podName).toBe(STANDARD);
      expect(await pool.scripts.upsertPod(observe(STANDARD, change))).toEqual({ tier: 'standard', orphaned: 0 });
      await expectConsistent();

      expect(await pool.redis.hgetall(pool.keys.call('CA-live'))).toMatchObject({ pod_name: STANDARD, pod_uid: pool.uids.get(STANDARD) });
      expect((await allocate('CA-next')).podName).toBe(SHARED);

      expect(await pool.scripts.release('CA-live', 'hangup')).toEqual({ ok: true, release: { podName: STANDARD, releasedToPool: 'pool:standard', wasDraining: false } });
      expect(await available('standard', STANDARD)).toBeNull();
      expect(await pool.redis.exists(pool.keys.lease(STANDARD), pool.keys.podCalls(STANDARD))).toBe(0);
      expect(await pool.redis.hget(pool.keys.pod(STANDARD), 'status')).toBe('available');
      await expectConsistent();

      expect(await pool.scripts.upsertPod(observe(STANDARD))).toEqual({ tier: 'standard', orphaned: 0 });
      expect(await available('standard', STANDARD)).toBe('member');
      expect((await allocate('CA-after')).podName).toBe(STANDARD);
      await expectConsistent();
    });

    it('(shared, not ready) leaves its pool with its calls intact; releases lower the load it returns with', async () => {
      await allocate('CA-a', 'shop');
      await allocate('CA-b', 'shop');
      await pool.scripts.upsertPod(observe(SHARED, { ready: false }));
      expect(await available('basic', SHARED)).toBeNull();
      expect((await pool.scripts.release('CA-a', '')).ok).toBe(true);
      expect(await pool.redis.smembers(pool.keys.podCalls(SHARED))).toEqual(['CA-b']);
      await expectConsistent();
      await pool.scripts.upsertPod(observe(SHARED));
      expect(await available('basic', SHARED)).toBe('1');
      await expectConsistent();
    });
  });

  describe('removePod', () => {
    it('ends the pod\'s calls and deletes every key it had', async () => {
      expect((await allocate('CA-gone')).podName).toBe(STANDARD);
      await pool.scripts.setDrain(STANDARD, true);
      await pool.scripts.upsertPod(observe(STANDARD, { metadata: { labels: { app: 'voice-agent' } } }));
      const before = (await events()).length;

      expect(await pool.scripts.removePod(STANDARD, pool.uids.get(STANDARD)!, null)).toEqual({ orphaned: 1 });

      const { redis, keys } = pool;
      const left: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', `${keys.prefix}*`, 'COUNT', 1000);
        left.push(...batch.filter((key) => key.includes(STANDARD) || key.endsWith(':CA-gone')));
        cursor = next;
      } while (cursor !== '0');
      // Only a deletion marker may stay, briefly: it stops a stale full LIST resurrecting the pod.
      for (const key of [keys.podTier(STANDARD), keys.podDraining(STANDARD), keys.lease(STANDARD), keys.podCalls(STANDARD), keys.call('CA-gone')]) {
        expect({ key, exists: await redis.exists(key) }).toEqual({ key, exists: 0 });
      }
      const record = await redis.hgetall(keys.pod(STANDARD));
      expect(Object.keys(record).filter((field) => field !== 'deleted_at' && field !== 'updated_at')).toEqual([]);
      for (const key of left) {
        const ttl = await redis.pttl(key);
        expect({ key, expires: ttl > 0 && ttl <= 10 * 60 * 1000 }).toEqual({ key, expires: true });
      }
      expect(await redis.sismember(keys.pods(), STANDARD)).toBe(0);
      expect(await redis.hexists(keys.podMetadata(), STANDARD)).toBe(0);
      for (const tier of pool.tiers.keys()) {
        expect(await redis.sismember(keys.poolAssigned(tier), STANDARD)).toBe(0);
        expect(await available(tier, STANDARD)).toBeNull();
      }
      expect(await redis.zscore(keys.activeCalls(), 'CA-gone')).toBeNull();
      expect((await events()).slice(before)).toEqual([
        expect.objectContaining({ type: 'call.orphaned', call_sid: 'CA-gone', pod: STANDARD, tier: 'standard', reason: 'pod_deleted' }),
      ]);
      await expectConsistent();

      expect(await pool.scripts.removePod(STANDARD, '', null)).toBe(0);
      expect(await pool.scripts.release('CA-gone', 'hangup')).toEqual({ ok: false, code: ScriptCode.NotFound });
      expect(await pool.scripts.setDrain(STANDARD, false)).toBeNull();
      expect(await pool.scripts.sweepPod(STANDARD)).toBe(0);
    });

    it('ends every call of a shared pod', async () => {
      await allocate('CA-x', 'shop');
      await allocate('CA-y', 'shop');
      expect(await pool.scripts.removePod(SHARED, '', null)).toEqual({ orphaned: 2 });
      expect(await pool.redis.zcard(pool.keys.poolAvailable('basic'))).toBe(0);
      expect(await pool.redis.exists(pool.keys.call('CA-x'), pool.keys.call('CA-y'), pool.keys.podCalls(SHARED))).toBe(0);
      await expectConsistent();
    });

    it('ignores a delete of an older incarnation than the one recorded', async () => {
      const oldUid = pool.uids.get(STANDARD)!;
      await pool.scripts.upsertPod(observe(STANDARD, { uid: 'uid-2' }));
      await allocate('CA-new');
      expect(await pool.scripts.removePod(STANDARD, oldUid, null)).toBe(0);
      expect(await pool.redis.hget(pool.keys.call('CA-new'), 'pod_uid')).toBe('uid-2');
      expect(await pool.redis.sismember(pool.keys.pods(), STANDARD)).toBe(1);
      await expectConsistent();
    });

    it('after removal, the same name comes back as a new empty pod in a tier', async () => {
      await allocate('CA-old');
      await pool.scripts.removePod(STANDARD, '', null);
      const result = await pool.scripts.upsertPod(observe(STANDARD, { uid: 'uid-back' }));
      expect(result).toEqual({ tier: 'standard', orphaned: 0 });
      expect(await available('standard', STANDARD)).toBe('member');
      // The live pod keeps no deletion marker, and nothing of it is left to expire.
      expect(await pool.redis.hexists(pool.keys.pod(STANDARD), 'deleted_at')).toBe(0);
      const expiring: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await pool.redis.scan(cursor, 'MATCH', `${pool.keys.prefix}*${STANDARD}`, 'COUNT', 1000);
        for (const key of batch) if ((await pool.redis.pttl(key)) !== -1) expiring.push(key);
        cursor = next;
      } while (cursor !== '0');
      expect(expiring).toEqual([]);
      await expectConsistent();
    });
  });

  describe('stale observations never undo newer ones', () => {
    // Explicit clocks: the watch event, the LIST start and the apply time are what is compared.
    let t0: number;
    beforeEach(() => {
      t0 = Date.now();
    });

    it('a full LIST older than a later watch update is refused and changes nothing', async () => {
      expect(await pool.scripts.upsertPod(observe(STANDARD, { ready: false, term: 1 }), t0 + 2000)).toEqual({ tier: 'standard', orphaned: 0 });
      expect(await pool.scripts.upsertPod(observe(STANDARD, { snapshotAt: t0 + 1000 }), t0 + 2500)).toBe(ScriptCode.NewerState);
      expect(await pool.redis.hmget(pool.keys.pod(STANDARD), 'ready', 'updated_at')).toEqual(['0', String(t0 + 2000)]);
      expect(await available('standard', STANDARD)).toBeNull();
      await expectConsistent();

      // A LIST that started after the watch event is authoritative.
      expect(await pool.scripts.upsertPod(observe(STANDARD, { snapshotAt: t0 + 3000 }), t0 + 3500)).toEqual({ tier: 'standard', orphaned: 0 });
      expect(await available('standard', STANDARD)).toBe('member');
    });

    it('a full LIST older than a watched replacement does not bring back the old UID nor end the new pod\'s call', async () => {
      const oldUid = pool.uids.get(STANDARD)!;
      await pool.scripts.upsertPod(observe(STANDARD, { uid: 'uid-2', term: 1 }), t0 + 2000);
      await allocate('CA-on-new');
      expect(await pool.scripts.upsertPod(observe(STANDARD, { uid: oldUid, snapshotAt: t0 + 1000 }), t0 + 2500)).toBe(ScriptCode.NewerState);
      expect(await pool.redis.hget(pool.keys.pod(STANDARD), 'uid')).toBe('uid-2');
      expect(await pool.redis.hget(pool.keys.call('CA-on-new'), 'pod_uid')).toBe('uid-2');
      await expectConsistent();
    });

    it('a full LIST older than a later watched delete does not resurrect the pod', async () => {
      await allocate('CA-before-delete');
      expect(await pool.scripts.removePod(STANDARD, pool.uids.get(STANDARD)!, 1, undefined, t0 + 2000)).toEqual({ orphaned: 1 });
      // The reconciler's LIST started before the delete and still lists the pod.
      expect(await pool.scripts.upsertPod(observe(STANDARD, { snapshotAt: t0 + 1000 }), t0 + 2500)).toBe(ScriptCode.NewerState);
      expect(await pool.redis.sismember(pool.keys.pods(), STANDARD)).toBe(0);
      expect(await available('standard', STANDARD)).toBeNull();
      expect(await pool.redis.sismember(pool.keys.poolAssigned('standard'), STANDARD)).toBe(0);
      expect((await allocate('CA-after-delete')).podName).not.toBe(STANDARD);
      await expectConsistent();

      // A LIST that started after the delete and still sees the pod (recreated) is applied.
      expect(await pool.scripts.upsertPod(observe(STANDARD, { uid: 'uid-recreated', snapshotAt: t0 + 3000 }), t0 + 3500)).toEqual({ tier: 'standard', orphaned: 0 });
      expect(await available('standard', STANDARD)).toBe('member');
      await expectConsistent();
    });

    it('a reconcile delete older than a later watch update does not remove the pod', async () => {
      await pool.scripts.upsertPod(observe(STANDARD, { term: 1 }), t0 + 2000);
      await allocate('CA-keep');
      expect(await pool.scripts.removePod(STANDARD, '', null, t0 + 1000, t0 + 2500)).toBe(ScriptCode.NewerState);
      expect(await pool.redis.hget(pool.keys.call('CA-keep'), 'pod_name')).toBe(STANDARD);
      expect(await pool.redis.sismember(pool.keys.pods(), STANDARD)).toBe(1);
      await expectConsistent();
    });

    it('an event from a deposed watcher leader is refused and changes nothing', async () => {
      expect(await pool.scripts.upsertPod(observe(STANDARD, { term: 5 }))).toEqual({ tier: 'standard', orphaned: 0 });
      expect(await pool.scripts.upsertPod(observe(STANDARD, { term: 4, ready: false }))).toBe(ScriptCode.StaleLeader);
      expect(await pool.scripts.removePod(STANDARD, '', 4)).toBe(ScriptCode.StaleLeader);
      expect(await pool.redis.hget(pool.keys.pod(STANDARD), 'ready')).toBe('1');
      expect(await available('standard', STANDARD)).toBe('member');
    });

    it('a delete from a newer leader fences the older leader too', async () => {
      await pool.scripts.upsertPod(observe(STANDARD, { term: 5 }));
      expect(await pool.scripts.removePod(STANDARD, '', 6)).toEqual({ orphaned: 0 });
      // The deposed leader (term 5) still publishes its view of the deleted pod.
      expect(await pool.scripts.upsertPod(observe(STANDARD, { term: 5 }))).toBe(ScriptCode.StaleLeader);
      expect(await pool.redis.sismember(pool.keys.pods(), STANDARD)).toBe(0);
    });
  });

  describe('drain', () => {
    it('the flag has no TTL and survives every script while the pod exists', async () => {
      await allocate('CA-draining');
      expect(await pool.scripts.setDrain(STANDARD, true)).toEqual({ activeCalls: 1, tier: 'standard' });
      const flag = pool.keys.podDraining(STANDARD);
      expect(await pool.redis.ttl(flag)).toBe(-1);

      await pool.scripts.upsertPod(observe(STANDARD, { term: 1 }));
      await pool.scripts.upsertPod(observe(STANDARD, { ready: false, snapshotAt: Date.now() + 1000 }), Date.now() + 2000);
      await pool.scripts.upsertPod(observe(STANDARD, { term: 2 }), Date.now() + 3000);
      await pool.scripts.sweepPod(STANDARD);
      await pool.scripts.rebalanceTiers();
      expect(await pool.scripts.release('CA-draining', 'hangup')).toMatchObject({ ok: true, release: { wasDraining: true } });
      await pool.scripts.sweepPod(STANDARD);
      expect(await pool.scripts.setDrain(STANDARD, true)).toEqual({ activeCalls: 0, tier: 'standard' });

      expect(await pool.redis.ttl(flag)).toBe(-1);
      expect(await available('standard', STANDARD)).toBeNull();
      expect((await allocate('CA-not-here')).podName).not.toBe(STANDARD);
      await expectConsistent();

      expect(await pool.scripts.setDrain(STANDARD, false)).toEqual({ activeCalls: 0, tier: 'standard' });
      expect(await pool.redis.exists(flag)).toBe(0);
      expect(await available('standard', STANDARD)).toBe('member');
      await expectConsistent();
    });

    it('keeps a shared pod\'s live calls and load across drain and undrain', async () => {
      await allocate('CA-1', 'shop');
      await allocate('CA-2', 'shop');
      expect(await pool.scripts.setDrain(SHARED, true)).toEqual({ activeCalls: 2, tier: 'basic' });
      expect(await available('basic', SHARED)).toBeNull();
      expect((await pool.scripts.release('CA-1', '')).ok).toBe(true);
      expect(await pool.scripts.setDrain(SHARED, false)).toEqual({ activeCalls: 1, tier: 'basic' });
      expect(await available('basic', SHARED)).toBe('1');
      await expectConsistent();
    });

    it('lasts until the pod is replaced or deleted (documented: the new incarnation starts undrained)', async () => {
      await pool.scripts.setDrain(STANDARD, true);
      await pool.scripts.upsertPod(observe(STANDARD, { uid: 'uid-2' }));
      expect(await pool.redis.exists(pool.keys.podDraining(STANDARD))).toBe(0);
      await pool.scripts.setDrain(STANDARD, true);
      await pool.scripts.removePod(STANDARD, '', null);
      expect(await pool.redis.exists(pool.keys.podDraining(STANDARD))).toBe(0);
    });

    it('refuses an unknown pod and creates no flag for it', async () => {
      expect(await pool.scripts.setDrain('voice-agent-99', true)).toBeNull();
      expect(await pool.redis.exists(pool.keys.podDraining('voice-agent-99'))).toBe(0);
    });
  });
});
