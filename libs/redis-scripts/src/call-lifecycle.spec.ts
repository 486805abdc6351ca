import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState } from '@smart-router/testing';
import { ScriptCode } from '@smart-router/allocation';

/**
 * SPEC 9.2 on the scripts themselves: pending -> connected (connectCall), the
 * connect deadline decided inside releaseCall, and allocation_id fencing.
 */

const CONNECT_TIMEOUT_MS = 20000;

const snapshot = snapshotState;

async function events(pool: PoolFixture): Promise<Record<string, string>[]> {
  const entries = await pool.redis.xrange(pool.keys.callStream(), '-', '+');
  return entries.map(([, fields]) => {
    const record: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
    return record;
  });
}

describe('call lifecycle scripts (SPEC 9.2)', () => {
  let pool: PoolFixture;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl(), connectTimeoutMs: CONNECT_TIMEOUT_MS });
  });
  afterEach(() => pool.close());

  const allocate = async (callSid: string, now = Date.now()) => {
    const result = await pool.scripts.allocate({ callSid, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false }, now);
    if (!result.ok) throw new Error(`allocation refused: ${result.code}`);
    return result.allocation;
  };
  const timeoutRelease = (callSid: string, now: number, allocationId?: number) =>
    pool.scripts.release(callSid, 'connect_timeout', 'call.released', now, undefined, { allocationId, connectTimeout: true });
  const invariants = () => pool.scripts.checkInvariants();

  it('allocates pending with a strictly increasing allocation_id; a repeat returns the same id', async () => {
    const now = Date.now();
    const first = await allocate('CA-a', now);
    const second = await allocate('CA-b', now);
    const repeat = await allocate('CA-a', now);
    expect(first).toMatchObject({ state: 'pending', wasExisting: false });
    expect(second.allocationId).toBeGreaterThan(first.allocationId!);
    expect(repeat).toMatchObject({ allocationId: first.allocationId, state: 'pending', wasExisting: true });
    const record = await pool.redis.hgetall(pool.keys.call('CA-a'));
    expect(record).toMatchObject({ state: 'pending', allocation_id: String(first.allocationId), connect_deadline: String(now + CONNECT_TIMEOUT_MS) });
    expect(await pool.redis.hget(pool.keys.pod(first.podName), 'allocation_id')).toBe(String(first.allocationId));
    expect(await pool.redis.zscore(pool.keys.pendingCalls(), 'CA-a')).toBe(String(now + CONNECT_TIMEOUT_MS));
    expect((await events(pool))[0]).toMatchObject({ type: 'call.allocated', call_sid: 'CA-a', allocation_id: String(first.allocationId), state: 'pending' });
  });

  it('with no deadline configured the call is pending but never indexed for the timeout', async () => {
    const plain = await createPoolFixture({ url: sharedRedisUrl() });
    try {
      const result = await plain.scripts.allocate({ callSid: 'CA-plain', merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
      expect(result.ok && result.allocation.state).toBe('pending');
      expect(await plain.redis.hget(plain.keys.call('CA-plain'), 'connect_deadline')).toBeNull();
      expect(await plain.redis.zcard(plain.keys.pendingCalls())).toBe(0);
    } finally {
      await plain.close();
    }
  });

  it('a waiting request handed a freed pod gets the next allocation_id and its own connect deadline', async () => {
    const holders: string[] = [];
    for (let i = 0; ; i++) {
      const result = await pool.scripts.allocate({ callSid: `fill-${i}`, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
      if (!result.ok) break;
      holders.push(`fill-${i}`);
    }
    const last = Number(await pool.redis.get(pool.keys.allocationSequence()));
    expect(await pool.scripts.allocate({ callSid: 'CA-waiter', merchantId: '', provider: '', metadata: '', refuseTombstoned: false, waitMs: 10000 }))
      .toEqual({ ok: false, code: ScriptCode.Queued });
    // Freeing a standard pod hands it to the waiter in the same step (includes/wait-queue.lua bindCall).
    const standard = holders[0];
    expect((await pool.scripts.release(standard, 'done')).ok).toBe(true);
    const outcome = await pool.scripts.settleWait('CA-waiter');
    expect(outcome).toMatchObject({ state: 'allocated', allocationId: last + 1, callState: 'pending' });
    const record = await pool.redis.hgetall(pool.keys.call('CA-waiter'));
    expect(Number(record.connect_deadline) - Number(record.allocated_at)).toBe(CONNECT_TIMEOUT_MS);
    expect(await pool.redis.zscore(pool.keys.pendingCalls(), 'CA-waiter')).toBe(record.connect_deadline);
    expect(await invariants()).toEqual([]);
  });

  it('connect: pending -> connected once, idempotent, fenced, 404 for an unknown call', async () => {
    const call = await allocate('CA-c');
    const connected = await pool.scripts.connect('CA-c', 'api', undefined, 1000);
    expect(connected).toEqual({ ok: true, connection: { podName: call.podName, allocationId: call.allocationId, connectedAt: 1000, wasConnected: false } });
    expect(await pool.redis.hgetall(pool.keys.call('CA-c'))).toMatchObject({ state: 'connected', connected_at: '1000' });
    expect(await pool.redis.zscore(pool.keys.pendingCalls(), 'CA-c')).toBeNull();

    const before = await snapshot(pool);
    expect(await pool.scripts.connect('CA-c', 'twilio', call.allocationId!, 2000)).toEqual({ ok: true, connection: { podName: call.podName, allocationId: call.allocationId, connectedAt: 1000, wasConnected: true } });
    expect(await pool.scripts.connect('CA-c', 'api', call.allocationId! + 1000)).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
    expect(await pool.scripts.connect('CA-none', 'api')).toEqual({ ok: false, code: ScriptCode.NotFound });
    expect(await snapshot(pool)).toEqual(before);
    expect((await events(pool)).filter((event) => event.type === 'call.connected')).toEqual([
      expect.objectContaining({ call_sid: 'CA-c', allocation_id: String(call.allocationId), state: 'connected', connected_at: '1000', source: 'api', at: '1000' }),
    ]);
    // Every event of the call carries state and connected_at (SPEC 9.2): '' until it connected.
    expect((await events(pool)).find((event) => event.type === 'call.allocated' && event.call_sid === 'CA-c')).toMatchObject({ state: 'pending', connected_at: '' });
    await pool.scripts.release('CA-c', 'hangup');
    expect((await events(pool)).at(-1)).toMatchObject({ type: 'call.released', call_sid: 'CA-c', state: 'connected', connected_at: '1000' });
  });

  it('a never-connected call is released at its deadline, not before, and its pod is allocatable again', async () => {
    const now = Date.now();
    const call = await allocate('CA-never', now);
    const deadline = now + CONNECT_TIMEOUT_MS;

    const before = await snapshot(pool);
    expect(await timeoutRelease('CA-never', deadline - 1, call.allocationId!)).toEqual({ ok: false, code: ScriptCode.NotDue });
    expect(await snapshot(pool)).toEqual(before);

    const released = await timeoutRelease('CA-never', deadline, call.allocationId!);
    expect(released).toMatchObject({ ok: true, release: { podName: call.podName } });
    expect(await pool.redis.exists(pool.keys.call('CA-never'))).toBe(0);
    expect(await pool.redis.zcard(pool.keys.pendingCalls())).toBe(0);
    expect(await pool.redis.sismember(pool.keys.poolAvailable(call.tier), call.podName)).toBe(1);
    expect((await events(pool)).at(-1)).toMatchObject({ type: 'call.released', call_sid: 'CA-never', reason: 'connect_timeout', state: 'pending', connected_at: '', allocation_id: String(call.allocationId) });
    expect(await invariants()).toEqual([]);

    // The freed pod takes the next call.
    const pods = [];
    for (let i = 0; i < 3; i++) pods.push((await allocate(`CA-next-${i}`)).podName);
    expect(pods).toContain(call.podName);
  });

  it('a call connected one millisecond before its deadline is kept: connect and timeout are decided atomically', async () => {
    const now = Date.now();
    const call = await allocate('CA-late', now);
    const deadline = now + CONNECT_TIMEOUT_MS;
    expect((await pool.scripts.connect('CA-late', 'api', undefined, deadline - 1)).ok).toBe(true);
    const before = await snapshot(pool);
    expect(await timeoutRelease('CA-late', deadline, call.allocationId!)).toEqual({ ok: false, code: ScriptCode.NotDue });
    expect(await timeoutRelease('CA-late', deadline + 60000)).toEqual({ ok: false, code: ScriptCode.NotDue });
    expect(await snapshot(pool)).toEqual(before);
    expect(await pool.redis.hget(pool.keys.call('CA-late'), 'state')).toBe('connected');
    expect(await invariants()).toEqual([]);
  });

  it('both orders of a racing connect and timeout leave one consistent outcome', async () => {
    const now = Date.now();
    const deadline = now + CONNECT_TIMEOUT_MS;
    for (let round = 0; round < 20; round++) {
      const sid = `CA-race-${round}`;
      const call = await allocate(sid, now);
      const [connect, timeout] = await Promise.all([
        pool.scripts.connect(sid, 'api', undefined, deadline - 1),
        timeoutRelease(sid, deadline, call.allocationId!),
      ]);
      const exists = (await pool.redis.exists(pool.keys.call(sid))) === 1;
      if (timeout.ok) {
        expect({ connect, exists }).toEqual({ connect: { ok: false, code: ScriptCode.NotFound }, exists: false });
      } else {
        expect({ connectOk: connect.ok, timeout, exists }).toEqual({ connectOk: true, timeout: { ok: false, code: ScriptCode.NotDue }, exists: true });
        await pool.scripts.release(sid, 'done');
      }
    }
    expect(await invariants()).toEqual([]);
  });

  it('a stale allocation_id is refused and changes nothing; the current one releases once', async () => {
    const old = await allocate('CA-reused');
    expect((await pool.scripts.release('CA-reused', 'hangup')).ok).toBe(true);
    const current = await allocate('CA-reused');
    expect(current.allocationId).toBeGreaterThan(old.allocationId!);

    const before = await snapshot(pool);
    expect(await pool.scripts.release('CA-reused', 'late retry', 'call.released', Date.now(), undefined, { allocationId: old.allocationId! })).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
    expect(await snapshot(pool)).toEqual(before);

    expect((await pool.scripts.release('CA-reused', 'hangup', 'call.released', Date.now(), undefined, { allocationId: current.allocationId! })).ok).toBe(true);
    expect(await pool.scripts.release('CA-reused', 'again', 'call.released', Date.now(), undefined, { allocationId: current.allocationId! })).toEqual({ ok: false, code: ScriptCode.NotFound });
    expect(await invariants()).toEqual([]);
  });

  it('a storm of releases (stale and current ids) and re-allocations of one call_sid: no release ever ends another allocation', async () => {
    const sid = 'CA-storm';
    const issued: number[] = [];
    const successes: number[] = [];
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let wave = 0; wave < 25; wave++) {
      const operations: Promise<void>[] = [];
      for (let i = 0; i < 12; i++) {
        const roll = random();
        if (roll < 0.3 || issued.length === 0) {
          operations.push(pool.scripts.allocate({ callSid: sid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false }).then((result) => {
            if (result.ok && !result.allocation.wasExisting) issued.push(result.allocation.allocationId!);
          }));
        } else {
          // Mostly a stale id (a late retry), sometimes the newest one issued so far.
          const id = roll < 0.75 ? issued[Math.floor(random() * issued.length)] : issued[issued.length - 1];
          // The reason names the id asked for, so the event can prove which allocation it ended.
          operations.push(pool.scripts.release(sid, `asked-${id}`, 'call.released', Date.now(), undefined, { allocationId: id }).then((result) => {
            if (result.ok) successes.push(id);
            else expect([ScriptCode.StaleAllocation, ScriptCode.NotFound]).toContain(result.code);
          }));
        }
      }
      await Promise.all(operations);
    }
    // Each allocation was released at most once, and only by a release naming it.
    expect(new Set(successes).size).toBe(successes.length);
    const released = (await events(pool)).filter((event) => event.type === 'call.released');
    expect(released.length).toBe(successes.length);
    for (const event of released) expect(event.reason).toBe(`asked-${event.allocation_id}`);
    // Replaying the stream: every release ended the allocation current at that moment.
    let current = '';
    for (const event of await events(pool)) {
      if (event.type === 'call.allocated') current = event.allocation_id;
      if (event.type === 'call.released') {
        expect(event.allocation_id).toBe(current);
        current = '';
      }
    }
    expect(issued.length).toBeGreaterThan(5);
    expect(successes.length).toBeGreaterThan(2);
    expect(await invariants()).toEqual([]);
  });
});
