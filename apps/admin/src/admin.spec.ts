import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Queue } from 'bullmq';
import Redis from 'ioredis';
import { JOBS, RECONCILER_QUEUE } from '@smart-router/events';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { bootstrap } from './main';

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function startAdmin(pool: PoolFixture, extra: Record<string, string> = {}) {
  const app: NestFastifyApplication = await bootstrap({
    REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true', ...extra,
  });
  const address = app.getHttpServer().address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const call = async (method: string, path: string, body?: unknown, token?: string): Promise<Answer> => {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  return { app, call };
}

describe('admin API', () => {
  let pool: PoolFixture;
  let admin: Awaited<ReturnType<typeof startAdmin>>;
  const allocate = (callSid: string, merchantId = '') => pool.scripts.allocate({ callSid, merchantId, provider: '', metadata: '', refuseTombstoned: false });

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    admin = await startAdmin(pool);
  });
  afterEach(async () => {
    await admin.app.close();
    await pool.close();
  });

  it('status shows real pools, loads, draining pods and counts calls (not pods)', async () => {
    await pool.redis.hset(pool.keys.merchantConfig(), 'basic-m', '{"tier":"basic"}');
    await allocate('s-1', 'basic-m');
    await allocate('s-2', 'basic-m');
    // Drain first: s-3 then takes one of the two other standard pods, leaving exactly one available.
    await admin.call('POST', '/api/v1/drain', { pod_name: 'voice-agent-4' });
    await allocate('s-3');
    const { status, body } = await admin.call('GET', '/api/v1/status');
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: 'up', active_calls: 3, waiting: 0, draining: ['voice-agent-4'] });
    const pools = body.pools as Record<string, { type: string; assigned: string[]; available: string[]; load: Record<string, number>; max_concurrent?: number }>;
    expect(pools.gold).toMatchObject({ type: 'exclusive', assigned: ['voice-agent-0'], available: ['voice-agent-0'] });
    expect(pools.basic).toMatchObject({ type: 'shared', max_concurrent: 3, assigned: ['voice-agent-2'], available: ['voice-agent-2'], load: { 'voice-agent-2': 2 } });
    expect(pools.standard.assigned).toEqual(['voice-agent-1', 'voice-agent-3', 'voice-agent-4']);
    expect(pools.standard.available).toHaveLength(1);
    expect(body.subsystems).toMatchObject({ redis: 'ok' });
  });

  it('drain: the drained pod is never allocated, active calls finish, undrain restores it', async () => {
    const first = await allocate('d-1');
    if (!first.ok) throw new Error('allocation failed');
    const busy = first.allocation.podName;
    const drained = await admin.call('POST', '/api/v1/drain', { pod_name: busy });
    expect(drained).toEqual({ status: 200, body: { success: true, pod_name: busy, has_active_call: true, active_calls: 1, message: 'pod drained; 1 active call(s) will finish' } });
    expect(await pool.redis.exists(pool.keys.podDraining(busy))).toBe(1);
    expect(await pool.redis.ttl(pool.keys.podDraining(busy))).toBe(-1);
    const released = await pool.scripts.release('d-1', 'done');
    expect(released).toMatchObject({ ok: true, release: { wasDraining: true } });
    expect(await pool.redis.sismember(pool.keys.poolAvailable('standard'), busy)).toBe(0);
    for (let i = 0; i < 10; i += 1) {
      const next = await allocate(`d-next-${i}`);
      if (next.ok) expect(next.allocation.podName).not.toBe(busy);
    }
    expect((await admin.call('POST', '/api/v1/undrain', { pod_name: busy })).body).toMatchObject({ success: true, message: 'pod undrained' });
    expect((await admin.call('GET', '/api/v1/admin/invariants')).body).toEqual({ ok: true, violations: [] });
  });

  it('drain during an allocation storm: the drained pod gets nothing', async () => {
    const storm = Promise.all(Array.from({ length: 60 }, (_, i) => allocate(`storm-${i}`)));
    await admin.call('POST', '/api/v1/drain', { pod_name: 'voice-agent-3' });
    const results = await storm;
    const drainedAt = await pool.redis.exists(pool.keys.podDraining('voice-agent-3'));
    expect(drainedAt).toBe(1);
    for (let i = 0; i < 60; i += 1) await pool.scripts.release(`storm-${i}`, 'done');
    const after = await Promise.all(Array.from({ length: 10 }, (_, i) => allocate(`after-${i}`)));
    expect(after.filter((result) => result.ok && result.allocation.podName === 'voice-agent-3')).toEqual([]);
    expect(results.length).toBe(60);
    expect((await admin.call('GET', '/api/v1/admin/invariants')).body).toEqual({ ok: true, violations: [] });
  });

  it('shared pod load survives drain and undrain', async () => {
    await pool.redis.hset(pool.keys.merchantConfig(), 'basic-m', '{"tier":"basic"}');
    await allocate('l-1', 'basic-m');
    await allocate('l-2', 'basic-m');
    expect((await admin.call('POST', '/api/v1/drain', { pod_name: 'voice-agent-2' })).body).toMatchObject({ active_calls: 2, has_active_call: true });
    await admin.call('POST', '/api/v1/undrain', { pod_name: 'voice-agent-2' });
    expect(await pool.redis.zscore(pool.keys.poolAvailable('basic'), 'voice-agent-2')).toBe('2');
  });

  it('drain validation: 400 for a bad name, 404 for an unknown pod', async () => {
    expect(await admin.call('POST', '/api/v1/drain', {})).toEqual({ status: 400, body: { error: 'pod_name is required', code: 'POD_NAME_REQUIRED' } });
    expect((await admin.call('POST', '/api/v1/drain', { pod_name: 'Bad_Name' })).status).toBe(400);
    expect(await admin.call('POST', '/api/v1/drain', { pod_name: 'voice-agent-99' })).toEqual({ status: 404, body: { error: 'pod not found', code: 'POD_NOT_FOUND' } });
  });

  it('pod and call lookups, and the list of live calls', async () => {
    const result = await allocate('lookup-1');
    if (!result.ok) throw new Error('allocation failed');
    const pod = await admin.call('GET', `/api/v1/pod/${result.allocation.podName}`);
    expect(pod.body).toMatchObject({ pod_name: result.allocation.podName, tier: 'standard', status: 'allocated', allocated_call_sid: 'lookup-1', calls: ['lookup-1'], lease: 'lookup-1' });
    expect((await admin.call('GET', '/api/v1/pod/voice-agent-77')).status).toBe(404);
    expect((await admin.call('GET', '/api/v1/admin/calls/lookup-1')).body).toMatchObject({
      call_sid: 'lookup-1', pod_name: result.allocation.podName, source_pool: 'pool:standard',
      allocation_id: result.allocation.allocationId, state: 'pending', connected_at: null,
    });
    await pool.scripts.connect('lookup-1', 'api', undefined, 1234);
    expect((await admin.call('GET', '/api/v1/admin/calls/lookup-1')).body).toMatchObject({ allocation_id: result.allocation.allocationId, state: 'connected', connected_at: 1234 });
    expect((await admin.call('GET', '/api/v1/admin/calls/nope')).status).toBe(404);
    expect((await admin.call('GET', '/api/v1/admin/calls')).body).toMatchObject({ count: 1, calls: [{ call_sid: 'lookup-1' }] });
  });

  it('merchant CRUD validates tiers and pools, and allocation follows it', async () => {
    expect((await admin.call('PUT', '/api/v1/admin/merchants/m-1', { tier: 'platinum' })).body).toMatchObject({ code: 'INVALID_MERCHANT_CONFIG' });
    expect((await admin.call('PUT', '/api/v1/admin/merchants/m-1', { tier: 'dedicated' })).body).toMatchObject({ error: 'a dedicated merchant needs a pool' });
    expect((await admin.call('PUT', '/api/v1/admin/merchants/m-1', { tier: 'dedicated', pool: 'gold' })).status).toBe(400);
    expect((await admin.call('PUT', '/api/v1/admin/merchants/m-1', { tier: 'gold' })).body).toMatchObject({ success: true, config: { tier: 'gold' } });
    expect((await admin.call('GET', '/api/v1/admin/merchants/m-1')).body).toEqual({ merchant_id: 'm-1', config: { tier: 'gold' } });
    for (const maxCalls of [0, -1, 1.5, '3', null]) {
      expect((await admin.call('PUT', '/api/v1/admin/merchants/m-cap', { tier: 'standard', max_calls: maxCalls })).body).toMatchObject({ code: 'INVALID_MERCHANT_CONFIG', error: 'max_calls must be a positive integer' });
    }
    expect((await admin.call('PUT', '/api/v1/admin/merchants/m-cap', { tier: 'standard', max_calls: 3 })).body).toMatchObject({ success: true, config: { tier: 'standard', max_calls: 3 } });
    expect((await admin.call('GET', '/api/v1/admin/merchants/m-cap')).body).toEqual({ merchant_id: 'm-cap', config: { tier: 'standard', max_calls: 3 } });
    // max_waiting (SPEC 10.2) is validated like max_calls and stored beside it; a bad value writes nothing.
    for (const maxWaiting of [0, -1, 1.5, '3', null]) {
      expect((await admin.call('PUT', '/api/v1/admin/merchants/m-cap', { tier: 'standard', max_calls: 3, max_waiting: maxWaiting })).body).toMatchObject({ code: 'INVALID_MERCHANT_CONFIG', error: 'max_waiting must be a positive integer' });
    }
    expect((await admin.call('GET', '/api/v1/admin/merchants/m-cap')).body).toEqual({ merchant_id: 'm-cap', config: { tier: 'standard', max_calls: 3 } });
    expect((await admin.call('PUT', '/api/v1/admin/merchants/m-cap', { tier: 'standard', max_calls: 3, max_waiting: 5 })).body).toMatchObject({ success: true, config: { tier: 'standard', max_calls: 3, max_waiting: 5 } });
    expect((await admin.call('GET', '/api/v1/admin/merchants/m-cap')).body).toEqual({ merchant_id: 'm-cap', config: { tier: 'standard', max_calls: 3, max_waiting: 5 } });
    const result = await allocate('m-call', 'm-1');
    expect(result.ok && result.allocation.sourcePool).toBe('pool:gold');
    expect((await admin.call('DELETE', '/api/v1/admin/merchants/m-1')).status).toBe(200);
    expect((await admin.call('GET', '/api/v1/admin/merchants/m-1')).status).toBe(404);
  });

  it('tier config update at run time moves idle pods to their tier now and busy ones once free', async () => {
    // With voice-agent-3 and -4 drained, voice-agent-1 is the only standard pod left: it takes the call.
    await admin.call('POST', '/api/v1/drain', { pod_name: 'voice-agent-3' });
    await admin.call('POST', '/api/v1/drain', { pod_name: 'voice-agent-4' });
    const busy = await allocate('busy-1');
    if (!busy.ok) throw new Error('allocation failed');
    expect(busy.allocation.podName).toBe('voice-agent-1');
    await admin.call('POST', '/api/v1/undrain', { pod_name: 'voice-agent-3' });
    await admin.call('POST', '/api/v1/undrain', { pod_name: 'voice-agent-4' });
    const before = (await admin.call('GET', '/api/v1/admin/tiers')).body;
    expect(before).toMatchObject({ extra_pods_tier: 'standard', tiers: { gold: { type: 'exclusive', target: 1 } } });

    // gold 3, standard 1, basic 1: ordinals 0-2 gold, 3 standard, 4 basic.
    const updated = await admin.call('PUT', '/api/v1/admin/tiers', {
      gold: { type: 'exclusive', target: 3 }, standard: { type: 'exclusive', target: 1 }, basic: { type: 'shared', target: 1, max_concurrent: 3 },
    });
    expect(updated.status).toBe(200);
    const tierOf = async (pod: string) => pool.redis.get(pool.keys.podTier(pod));
    expect((await pool.redis.smembers(pool.keys.poolAssigned('gold'))).sort()).toEqual(['voice-agent-0', 'voice-agent-2']);
    expect(await tierOf('voice-agent-1')).toBe('standard');
    expect(await tierOf('voice-agent-3')).toBe('standard');
    expect(await tierOf('voice-agent-4')).toBe('basic');
    expect((await admin.call('GET', '/api/v1/admin/invariants')).body).toEqual({ ok: true, violations: [] });

    expect((await pool.scripts.release('busy-1', 'done')).ok).toBe(true);
    expect(await pool.scripts.rebalanceTiers()).toBe(1);
    expect((await pool.redis.smembers(pool.keys.poolAssigned('gold'))).sort()).toEqual(['voice-agent-0', 'voice-agent-1', 'voice-agent-2']);
    expect((await admin.call('GET', '/api/v1/admin/invariants')).body).toEqual({ ok: true, violations: [] });
    expect((await admin.call('PUT', '/api/v1/admin/tiers', { gold: { type: 'weird' } })).body).toMatchObject({ code: 'INVALID_TIER_CONFIG' });
  });

  it('a tier added at run time gets its own fallback chain in every process at once', async () => {
    const added = await admin.call('PUT', '/api/v1/admin/tiers', {
      gold: { type: 'exclusive', target: 1 }, premium: { type: 'exclusive', target: 1 }, standard: { type: 'exclusive', target: 1 }, basic: { type: 'shared', target: 1, max_concurrent: 3 },
    });
    expect(added.status).toBe(200);
    expect(await pool.redis.get(pool.keys.podTier('voice-agent-1'))).toBe('premium');
    expect((await admin.call('PUT', '/api/v1/admin/merchants/vip', { tier: 'premium' })).status).toBe(200);
    // The fixture's PoolScripts were built before the change: the chain comes from the stored document.
    const result = await allocate('vip-call', 'vip');
    expect(result).toMatchObject({ ok: true, allocation: { podName: 'voice-agent-1', tier: 'premium' } });
    expect((await admin.call('GET', '/api/v1/admin/invariants')).body).toEqual({ ok: true, violations: [] });
  });

  it('refuses (409, changing nothing) a tier config that drops a tier merchants still name, and names them', async () => {
    const withPremium = { gold: { type: 'exclusive', target: 1 }, premium: { type: 'exclusive', target: 1 }, standard: { type: 'exclusive', target: 1 }, basic: { type: 'shared', target: 1, max_concurrent: 3 } };
    expect((await admin.call('PUT', '/api/v1/admin/tiers', withPremium)).status).toBe(200);
    expect((await admin.call('PUT', '/api/v1/admin/merchants/by-tier', { tier: 'premium' })).status).toBe(200);
    expect((await admin.call('PUT', '/api/v1/admin/merchants/by-fallback', { tier: 'standard', fallback: ['premium', 'basic'] })).status).toBe(200);
    expect((await admin.call('PUT', '/api/v1/admin/merchants/unaffected', { tier: 'gold' })).status).toBe(200);
    const before = await pool.redis.get(pool.keys.tierConfig());
    const { premium: _dropped, ...withoutPremium } = withPremium;
    const refused = await admin.call('PUT', '/api/v1/admin/tiers', withoutPremium);
    expect(refused.status).toBe(409);
    expect(refused.body).toEqual({ error: expect.stringContaining('by-fallback, by-tier'), code: 'TIER_IN_USE' });
    expect(String(refused.body.error)).not.toContain('unaffected');
    expect(await pool.redis.get(pool.keys.tierConfig())).toBe(before);
    expect(await pool.redis.get(pool.keys.podTier('voice-agent-1'))).toBe('premium');
    // Once no merchant names it, the tier can go.
    await admin.call('DELETE', '/api/v1/admin/merchants/by-tier');
    await admin.call('PUT', '/api/v1/admin/merchants/by-fallback', { tier: 'standard' });
    expect((await admin.call('PUT', '/api/v1/admin/tiers', withoutPremium)).status).toBe(200);
  });

  it('reconcile enqueues a full-reconcile job on the reconciler queue (BullMQ opened on first use)', async () => {
    const answers = [await admin.call('POST', '/api/v1/admin/reconcile'), await admin.call('POST', '/api/v1/admin/reconcile')];
    const connection = new Redis(sharedRedisUrl(), { maxRetriesPerRequest: null });
    const queue = new Queue(RECONCILER_QUEUE, { connection, prefix: pool.keys.bullPrefix() });
    try {
      for (const answer of answers) {
        expect(answer).toMatchObject({ status: 202, body: { success: true, job: JOBS.fullReconcile.name } });
        expect((await queue.getJob(String(answer.body.job_id)))?.name).toBe(JOBS.fullReconcile.name);
      }
    } finally {
      await queue.close();
      await connection.quit();
    }
  });

  it('invariants report a corrupted state', async () => {
    await pool.redis.sadd(pool.keys.poolAvailable('gold'), 'voice-agent-1');
    const { body } = await admin.call('GET', '/api/v1/admin/invariants');
    expect(body.ok).toBe(false);
    expect(body.violations).toEqual(expect.arrayContaining([expect.objectContaining({ rule: 'available_subset_of_assigned', pod: 'voice-agent-1' })]));
  });
});

describe('admin roles', () => {
  it('viewer tokens read, operator tokens change, no token is refused', async () => {
    const pool = await createPoolFixture({ url: sharedRedisUrl() });
    const admin = await startAdmin(pool, { ADMIN_VIEWER_TOKENS: 'view-1', ADMIN_OPERATOR_TOKENS: 'op-1' });
    try {
      expect((await admin.call('GET', '/api/v1/status')).status).toBe(401);
      expect((await admin.call('GET', '/api/v1/status', undefined, 'view-1')).status).toBe(200);
      expect((await admin.call('POST', '/api/v1/drain', { pod_name: 'voice-agent-1' }, 'view-1')).status).toBe(403);
      expect((await admin.call('POST', '/api/v1/drain', { pod_name: 'voice-agent-1' }, 'op-1')).status).toBe(200);
      expect((await admin.call('GET', '/api/v1/admin/invariants', undefined, 'op-1')).status).toBe(200);
      expect((await admin.call('POST', '/api/v1/admin/reconcile', undefined, 'view-1')).status).toBe(403);
      expect((await admin.call('POST', '/api/v1/admin/reconcile', undefined, 'op-1')).status).toBe(202);
      expect((await fetch((admin.app.getHttpServer().address() as { port: number }).port ? `http://127.0.0.1:${(admin.app.getHttpServer().address() as { port: number }).port}/openapi.json` : '')).status).toBe(200);
    } finally {
      await admin.app.close();
      await pool.close();
    }
  });
});
