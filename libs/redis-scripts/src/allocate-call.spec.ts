import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { ScriptCode } from '@smart-router/allocation';

describe('allocateCall / releaseCall scripts', () => {
  let pool: PoolFixture;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
  });
  afterEach(() => pool.close());

  const allocate = (callSid: string, merchantId = '', refuseTombstoned = false) =>
    pool.scripts.allocate({ callSid, merchantId, provider: '', metadata: '', refuseTombstoned });

  it('gives a call with no merchant a standard pod and writes call, pod and lease', async () => {
    const result = await allocate('CA1');
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.allocation.sourcePool).toBe('pool:standard');
    const pod = result.allocation.podName;
    const { redis, keys } = pool;
    expect(await redis.hget(keys.call('CA1'), 'pod_name')).toBe(pod);
    expect(await redis.get(keys.lease(pod))).toBe('CA1');
    expect(await redis.hget(keys.pod(pod), 'allocated_call_sid')).toBe('CA1');
    expect(await redis.sismember(keys.poolAvailable('standard'), pod)).toBe(0);
    expect(await redis.ttl(keys.call('CA1'))).toBeGreaterThan(0);
  });

  it('returns the same pod with was_existing for a repeated call_sid', async () => {
    const first = await allocate('CA2');
    const second = await allocate('CA2');
    expect(first.ok && second.ok).toBe(true);
    if (!first.ok || !second.ok) return;
    expect(second.allocation.podName).toBe(first.allocation.podName);
    expect(second.allocation.wasExisting).toBe(true);
    expect(first.allocation.wasExisting).toBe(false);
  });

  it('a reaper cutoff never ends a call allocated after it (a call_sid reused since the reaper looked)', async () => {
    const result = await allocate('CA-reused');
    if (!result.ok) throw new Error('allocation failed');
    const allocatedAt = Number(await pool.redis.zscore(pool.keys.activeCalls(), 'CA-reused'));
    expect(await pool.scripts.release('CA-reused', 'max_call_duration', 'call.reaped', Date.now(), allocatedAt - 1)).toEqual({ ok: false, code: ScriptCode.NotFound });
    expect(await pool.redis.exists(pool.keys.call('CA-reused'))).toBe(1);
    expect((await pool.scripts.release('CA-reused', 'max_call_duration', 'call.reaped', Date.now(), allocatedAt)).ok).toBe(true);
    expect(await pool.redis.exists(pool.keys.call('CA-reused'))).toBe(0);
  });

  it('a merchant config is written only against the tier config it was validated with', async () => {
    const validated = (await pool.redis.get(pool.keys.tierConfig()))!;
    await pool.scripts.rebalanceTiers(JSON.stringify({ ...JSON.parse(validated), order: ['standard', 'basic'], tiers: { standard: { type: 'exclusive', target: 4 }, basic: { type: 'shared', target: 1, max_concurrent: 3 } } }));
    expect(await pool.scripts.setMerchantConfig('m-gold', '{"tier":"gold"}', validated)).toBe(ScriptCode.ConfigChanged);
    expect(await pool.redis.hexists(pool.keys.merchantConfig(), 'm-gold')).toBe(0);
    const current = (await pool.redis.get(pool.keys.tierConfig()))!;
    expect(await pool.scripts.setMerchantConfig('m-basic', '{"tier":"basic"}', current)).toBe(true);
    expect(await pool.redis.hget(pool.keys.merchantConfig(), 'm-basic')).toBe('{"tier":"basic"}');
    expect(await pool.scripts.setMerchantConfig('m-basic', '', '*')).toBe(true);
    expect(await pool.scripts.setMerchantConfig('m-basic', '', '*')).toBe(false);
  });

  it('sweep and rebalance fail loudly on a flushed Redis instead of reporting nothing to correct', async () => {
    await pool.redis.del(pool.keys.tierConfig());
    await expect(pool.scripts.sweepPod('voice-agent-1')).rejects.toThrow('pool state missing');
    await expect(pool.scripts.rebalanceTiers()).rejects.toThrow('pool state missing');
  });

  it('release puts the exclusive pod back and a second release is not found', async () => {
    const result = await allocate('CA3');
    if (!result.ok) throw new Error('allocation failed');
    const released = await pool.scripts.release('CA3', 'done');
    expect(released).toEqual({ ok: true, release: { podName: result.allocation.podName, releasedToPool: 'pool:standard', wasDraining: false } });
    expect(await pool.redis.sismember(pool.keys.poolAvailable('standard'), result.allocation.podName)).toBe(1);
    expect(await pool.redis.exists(pool.keys.lease(result.allocation.podName))).toBe(0);
    expect(await pool.redis.exists(pool.keys.call('CA3'))).toBe(0);
    expect(await pool.scripts.release('CA3', 'done')).toEqual({ ok: false, code: ScriptCode.NotFound });
  });

  it('fails closed with StateMissing when the epoch is gone (flushed Redis)', async () => {
    await pool.redis.del(pool.keys.epoch());
    expect(await allocate('CA4')).toEqual({ ok: false, code: ScriptCode.StateMissing });
  });

  it('refuses a tombstoned call_sid only when asked to', async () => {
    await allocate('CA5');
    await pool.scripts.release('CA5', 'completed');
    expect(await allocate('CA5', '', true)).toEqual({ ok: false, code: ScriptCode.Tombstoned });
    expect((await allocate('CA5', '', false)).ok).toBe(true);
  });

  it('reports a merchant config that is not JSON', async () => {
    await pool.redis.hset(pool.keys.merchantConfig(), 'broken', '{not json');
    expect(await allocate('CA6', 'broken')).toEqual({ ok: false, code: ScriptCode.BadMerchantConfig });
  });

  it('appends call.allocated and call.released to the calls stream', async () => {
    await allocate('CA7', '');
    await pool.scripts.release('CA7', 'hangup');
    const entries = await pool.redis.xrange(pool.keys.callStream(), '-', '+');
    const events = entries.map(([, fields]) => Object.fromEntries(fields.reduce<string[][]>((pairs, value, index) => {
      if (index % 2 === 0) pairs.push([value, fields[index + 1]]);
      return pairs;
    }, [])));
    expect(events.map((event) => event.type)).toEqual(['call.allocated', 'call.released']);
    expect(events[1]).toMatchObject({ call_sid: 'CA7', reason: 'hangup' });
  });
});
