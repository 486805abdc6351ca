import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, RedisServer, createPoolFixture, sharedRedisUrl, snapshotState, uniquePrefix, waitFor } from '@smart-router/testing';
import { bootstrap } from './main';

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function startApi(redisUrl: string, prefix: string, extra: Record<string, string> = {}) {
  const app: NestFastifyApplication = await bootstrap({
    REDIS_URL: redisUrl, REDIS_PREFIX: prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true',
    VOICE_AGENT_BASE_URL: 'wss://buddy.example.test', ...extra,
  });
  const address = app.getHttpServer().address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> => {
    const response = await fetch(base + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  return { app, base, post };
}

describe('allocation API against a real Redis (seed scenarios)', () => {
  let pool: PoolFixture;
  let api: Awaited<ReturnType<typeof startApi>>;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    api = await startApi(sharedRedisUrl(), pool.keys.prefix);
  });
  afterEach(async () => {
    await api.app.close();
    await pool.close();
  });

  const allocate = (callSid: string, merchantId?: string) =>
    api.post('/api/v1/allocate', merchantId === undefined ? { call_sid: callSid } : { call_sid: callSid, merchant_id: merchantId });
  const release = (callSid: string) => api.post('/api/v1/release', { call_sid: callSid });
  const invariants = () => pool.scripts.checkInvariants();

  it('9.1 default merchant: standard pod, call record, release back to the pool', async () => {
    const first = await allocate('test-default-001', '');
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ success: true, source_pool: 'pool:standard', was_existing: false });
    const pod = first.body.pod_name as string;
    expect(first.body.ws_url).toBe(`wss://buddy.example.test/ws/pod/${pod}/test-default-001`);
    expect(await pool.redis.hgetall(pool.keys.call('test-default-001'))).toMatchObject({ pod_name: pod, source_pool: 'pool:standard', merchant_id: '' });
    const released = await release('test-default-001');
    expect(released).toEqual({ status: 200, body: { success: true, pod_name: pod, released_to_pool: 'pool:standard', was_draining: false } });
    expect(await pool.redis.sismember(pool.keys.poolAvailable('standard'), pod)).toBe(1);
    expect(await invariants()).toEqual([]);
  });

  it('9.2 / 9.14 merchant config decides the pool, and a change applies to the next call', async () => {
    await pool.redis.hset(pool.keys.merchantConfig(), 'merchant-gold-test', '{"tier":"gold"}');
    const gold = await allocate('test-merchant-gold', 'merchant-gold-test');
    expect(gold.body).toMatchObject({ source_pool: 'pool:gold', pod_name: 'voice-agent-0' });
    await release('test-merchant-gold');
    await pool.redis.hset(pool.keys.merchantConfig(), 'merchant-gold-test', '{"tier":"standard"}');
    const standard = await allocate('test-merchant-std', 'merchant-gold-test');
    expect(standard.body.source_pool).toBe('pool:standard');
  });

  it('9.3 shared pool: three calls on one basic pod, scores 1..3, back to 0 after release', async () => {
    await pool.redis.hset(pool.keys.merchantConfig(), 'basic-merchant', '{"tier":"basic"}');
    for (const [index, sid] of ['test-shared-1', 'test-shared-2', 'test-shared-3'].entries()) {
      const answer = await allocate(sid, 'basic-merchant');
      expect(answer.body).toMatchObject({ source_pool: 'pool:basic', pod_name: 'voice-agent-2' });
      expect(await pool.redis.zscore(pool.keys.poolAvailable('basic'), 'voice-agent-2')).toBe(String(index + 1));
    }
    const fourth = await allocate('test-shared-4', 'basic-merchant');
    expect(fourth.body.source_pool).toBe('pool:standard');
    for (const sid of ['test-shared-1', 'test-shared-2', 'test-shared-3', 'test-shared-4']) await release(sid);
    expect(await pool.redis.zscore(pool.keys.poolAvailable('basic'), 'voice-agent-2')).toBe('0');
    expect(await invariants()).toEqual([]);
  });

  it('9.4 idempotency: the same call_sid twice gets the same pod and was_existing', async () => {
    const first = await allocate('test-idempotent-001');
    const second = await allocate('test-idempotent-001');
    expect(second.body).toMatchObject({ pod_name: first.body.pod_name, was_existing: true });
    expect(await pool.redis.scard(pool.keys.poolAvailable('standard'))).toBe(2);
  });

  it('9.5 fifty concurrent allocations of one call_sid consume exactly one pod', async () => {
    const answers = await Promise.all(Array.from({ length: 50 }, () => allocate('test-race-001')));
    expect(new Set(answers.map((answer) => answer.body.pod_name)).size).toBe(1);
    expect(answers.filter((answer) => answer.body.was_existing === false)).toHaveLength(1);
    expect(await pool.redis.zcard(pool.keys.activeCalls())).toBe(1);
    expect(await pool.redis.scard(pool.keys.poolAvailable('standard'))).toBe(2);
  });

  it('release idempotency and 9.7: second release and unknown call are 404 call not found', async () => {
    await allocate('test-release-idem-001');
    expect((await release('test-release-idem-001')).status).toBe(200);
    expect(await release('test-release-idem-001')).toEqual({ status: 404, body: { error: 'call not found', code: 'CALL_NOT_FOUND' } });
    expect(await release('never-allocated-call')).toEqual({ status: 404, body: { error: 'call not found', code: 'CALL_NOT_FOUND' } });
  });

  it('9.8 exhaustion: standard first, then basic, then 503; gold never used for a default merchant', async () => {
    const pools: string[] = [];
    let status = 200;
    for (let i = 1; status === 200 && i < 20; i += 1) {
      const answer = await allocate(`exhaust-std-${i}`);
      status = answer.status;
      if (status === 200) pools.push(answer.body.source_pool as string);
      else expect(answer.body).toEqual({ error: 'no pod available', code: 'NO_POD_AVAILABLE' });
    }
    expect(pools).toEqual(['pool:standard', 'pool:standard', 'pool:standard', 'pool:basic', 'pool:basic', 'pool:basic']);
    expect(status).toBe(503);
    expect(await pool.redis.sismember(pool.keys.poolAvailable('gold'), 'voice-agent-0')).toBe(1);
    expect(await invariants()).toEqual([]);
  });

  it('9.13 bad input: 400 JSON errors that change nothing', async () => {
    const before = await pool.redis.scard(pool.keys.poolAvailable('standard'));
    const cases: [unknown, string][] = [
      [{ merchant_id: 'test' }, 'CALL_SID_REQUIRED'],
      [{ call_sid: '' }, 'CALL_SID_REQUIRED'],
      ['{"invalid json', 'INVALID_BODY'],
      [{ call_sid: 'bad sid with spaces' }, 'INVALID_CALL_SID'],
      [{ call_sid: 'x'.repeat(129) }, 'INVALID_CALL_SID'],
      [{ call_sid: 'ok-1', merchant_id: 'bad/merchant' }, 'INVALID_MERCHANT_ID'],
      [[1, 2], 'INVALID_BODY'],
    ];
    for (const [body, code] of cases) {
      const answer = await api.post('/api/v1/allocate', body);
      expect({ status: answer.status, code: answer.body.code }).toEqual({ status: 400, code });
      expect(typeof answer.body.error).toBe('string');
    }
    const empty = await fetch(`${api.base}/api/v1/allocate`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    expect(empty.status).toBe(400);
    const huge = await api.post('/api/v1/allocate', { call_sid: 'big', metadata: 'x'.repeat(17 * 1024) });
    expect(huge).toEqual({ status: 413, body: { error: 'request body too large', code: 'PAYLOAD_TOO_LARGE' } });
    expect(await pool.redis.scard(pool.keys.poolAvailable('standard'))).toBe(before);
    expect(await pool.redis.zcard(pool.keys.activeCalls())).toBe(0);
  });

  it('accepts reseller_id as merchant_id and records provider, reason-free metadata; ignores unknown fields', async () => {
    await pool.redis.hset(pool.keys.merchantConfig(), 'reseller-9', '{"tier":"gold"}');
    const answer = await api.post('/api/v1/allocate', { call_sid: 'alias-1', reseller_id: 'reseller-9', provider: 'twilio', metadata: { lang: 'hi' }, extra: true });
    expect(answer.body.source_pool).toBe('pool:gold');
    expect(await pool.redis.hgetall(pool.keys.call('alias-1'))).toMatchObject({ merchant_id: 'reseller-9', provider: 'twilio', metadata: '{"lang":"hi"}' });
  });

  it('9.18 twice-capacity concurrent distinct calls: exactly capacity succeed, release restores every pool', async () => {
    const capacity = 3 + 3; // standard-tier pods 1, 3, 4 (exclusive) + basic pod 2 (3 calls); gold unreachable
    const snapshot = async () => ({
      standard: (await pool.redis.smembers(pool.keys.poolAvailable('standard'))).sort(),
      gold: await pool.redis.smembers(pool.keys.poolAvailable('gold')),
      basic: await pool.redis.zrange(pool.keys.poolAvailable('basic'), 0, -1, 'WITHSCORES'),
    });
    const before = await snapshot();
    const answers = await Promise.all(Array.from({ length: capacity * 2 }, (_, i) => allocate(`concurrent-diff-${i}`)));
    const ok = answers.filter((answer) => answer.status === 200);
    expect(ok).toHaveLength(capacity);
    expect(answers.filter((answer) => answer.status === 503)).toHaveLength(capacity);
    const exclusivePods = ok.filter((answer) => answer.body.source_pool === 'pool:standard').map((answer) => answer.body.pod_name);
    expect(new Set(exclusivePods).size).toBe(exclusivePods.length);
    expect(await invariants()).toEqual([]);
    await Promise.all(answers.map((_, i) => release(`concurrent-diff-${i}`)));
    expect(await snapshot()).toEqual(before);
    expect(await invariants()).toEqual([]);
  });

  it('serves health, readiness and its OpenAPI document', async () => {
    expect(await (await fetch(`${api.base}/health`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${api.base}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'up' });
    const openapi = (await (await fetch(`${api.base}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/api/v1/allocate', '/api/v1/release']));
  });
});

describe('allocation API: call lifecycle and fencing (SPEC 9.2)', () => {
  let pool: PoolFixture;
  let api: Awaited<ReturnType<typeof startApi>>;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    api = await startApi(sharedRedisUrl(), pool.keys.prefix, { CONNECT_TIMEOUT_SECONDS: '30' });
  });
  afterEach(async () => {
    await api.app.close();
    await pool.close();
  });

  it('allocate answers allocation_id and state; a repeat the same id; the deadline is recorded', async () => {
    const first = await api.post('/api/v1/allocate', { call_sid: 'life-1' });
    const second = await api.post('/api/v1/allocate', { call_sid: 'life-2' });
    const repeat = await api.post('/api/v1/allocate', { call_sid: 'life-1' });
    expect(first.body).toMatchObject({ success: true, allocation_id: expect.any(Number), state: 'pending', was_existing: false });
    expect(second.body.allocation_id as number).toBeGreaterThan(first.body.allocation_id as number);
    expect(repeat.body).toMatchObject({ allocation_id: first.body.allocation_id, was_existing: true });
    const deadline = Number(await pool.redis.hget(pool.keys.call('life-1'), 'connect_deadline'));
    const allocatedAt = Number(await pool.redis.hget(pool.keys.call('life-1'), 'allocated_at'));
    expect(deadline - allocatedAt).toBe(30000);
  });

  it('POST /api/v1/connected: pending -> connected, idempotent; 404 unknown; 409 stale; 400 bad input writes nothing', async () => {
    const call = await api.post('/api/v1/allocate', { call_sid: 'life-c' });
    const connected = await api.post('/api/v1/connected', { call_sid: 'life-c' });
    expect(connected).toEqual({ status: 200, body: { success: true, call_sid: 'life-c', pod_name: call.body.pod_name, allocation_id: call.body.allocation_id, state: 'connected', connected_at: expect.any(Number), was_connected: false } });
    const again = await api.post('/api/v1/connected', { call_sid: 'life-c', allocation_id: call.body.allocation_id });
    expect(again.body).toMatchObject({ was_connected: true, connected_at: connected.body.connected_at });
    expect(await pool.redis.zscore(pool.keys.pendingCalls(), 'life-c')).toBeNull();

    const before = await snapshotState(pool);
    expect(await api.post('/api/v1/connected', { call_sid: 'life-unknown' })).toEqual({ status: 404, body: { error: 'call not found', code: 'CALL_NOT_FOUND' } });
    expect((await api.post('/api/v1/connected', { call_sid: 'life-c', allocation_id: (call.body.allocation_id as number) + 99 })).body).toMatchObject({ code: 'STALE_ALLOCATION' });
    for (const bad of [{}, { call_sid: '' }, { call_sid: 'life-c', allocation_id: 'abc' }, { call_sid: 'life-c', allocation_id: 0 }, { call_sid: 'life-c', allocation_id: 1.5 }, 'not json']) {
      const answer = await api.post('/api/v1/connected', bad);
      expect({ bad, status: answer.status, error: typeof answer.body.error }).toEqual({ bad, status: 400, error: 'string' });
    }
    expect(await snapshotState(pool)).toEqual(before);
  });

  it('release with a stale allocation_id: 409 STALE_ALLOCATION, nothing changed; the current id or none releases', async () => {
    const old = await api.post('/api/v1/allocate', { call_sid: 'life-r' });
    expect((await api.post('/api/v1/release', { call_sid: 'life-r', allocation_id: old.body.allocation_id })).status).toBe(200);
    const current = await api.post('/api/v1/allocate', { call_sid: 'life-r' });
    const before = await snapshotState(pool);
    const stale = await api.post('/api/v1/release', { call_sid: 'life-r', allocation_id: old.body.allocation_id });
    expect(stale).toEqual({ status: 409, body: { error: expect.any(String), code: 'STALE_ALLOCATION' } });
    expect(await snapshotState(pool)).toEqual(before);
    expect((await api.post('/api/v1/release', { call_sid: 'life-r', allocation_id: String(current.body.allocation_id) })).status).toBe(200);
    await api.post('/api/v1/allocate', { call_sid: 'life-r' });
    expect((await api.post('/api/v1/release', { call_sid: 'life-r' })).status).toBe(200);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });
});

describe('allocation API: waiting is bounded (SPEC 10.2)', () => {
  it('beyond WAIT_QUEUE_MAX or a merchant\'s max_waiting: 503 QUEUE_FULL at once, nothing queued, counted; the waiters still get their pod or their timeout', async () => {
    const pool = await createPoolFixture({ url: sharedRedisUrl() });
    const api = await startApi(sharedRedisUrl(), pool.keys.prefix, { WAIT_QUEUE_MAX: '2' });
    try {
      // The default chain's capacity: three standard pods and the basic pod's three slots.
      for (let index = 0; index < 6; index += 1) expect((await api.post('/api/v1/allocate', { call_sid: `full-${index}` })).status).toBe(200);
      const flood = Array.from({ length: 10 }, (_, index) => api.post('/api/v1/allocate', { call_sid: `wait-${index}`, wait_ms: 1500 }));
      await waitFor(async () => (await pool.redis.zcard(pool.keys.waitQueue())) === 2, { what: 'two waiters' });
      await pool.redis.hset(pool.keys.merchantConfig(), 'patient', JSON.stringify({ tier: 'standard', max_waiting: 1 }));
      // The queue is full for everybody, whatever the merchant.
      expect(await api.post('/api/v1/allocate', { call_sid: 'one-more', merchant_id: 'patient', wait_ms: 1500 })).toEqual({ status: 503, body: { error: expect.any(String), code: 'QUEUE_FULL' } });
      await api.post('/api/v1/release', { call_sid: 'full-0' });
      const answers = await Promise.all(flood);
      expect(answers.filter((answer) => answer.status === 200)).toHaveLength(1);
      expect(answers.filter((answer) => answer.body.code === 'NO_POD_AVAILABLE')).toHaveLength(1);
      expect(answers.filter((answer) => answer.body.code === 'QUEUE_FULL')).toHaveLength(8);
      for (const answer of answers.filter((candidate) => candidate.body.code === 'QUEUE_FULL')) expect(answer).toEqual({ status: 503, body: { error: expect.any(String), code: 'QUEUE_FULL' } });
      // Nothing of the refused requests was written: only full-0's release and the served waiter changed calls.
      const served = answers.findIndex((answer) => answer.status === 200);
      expect(await pool.redis.exists(...answers.map((_, index) => pool.keys.waiter(`wait-${index}`)))).toBe(0);
      expect((await pool.redis.zrange(pool.keys.activeCalls(), 0, -1)).sort()).toEqual(['full-1', 'full-2', 'full-3', 'full-4', 'full-5', `wait-${served}`].sort());
      expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(0);

      // max_waiting alone: one of the merchant's requests may wait, the second is refused at once.
      const waiting = api.post('/api/v1/allocate', { call_sid: 'patient-1', merchant_id: 'patient', wait_ms: 300 });
      await waitFor(async () => (await pool.redis.scard(pool.keys.waitMerchant('patient'))) === 1, { what: 'the merchant\'s waiter' });
      expect((await api.post('/api/v1/allocate', { call_sid: 'patient-2', merchant_id: 'patient', wait_ms: 300 })).body).toMatchObject({ code: 'QUEUE_FULL' });
      expect((await waiting).body).toMatchObject({ code: 'NO_POD_AVAILABLE' });
      expect(await pool.redis.scard(pool.keys.waitMerchant('patient'))).toBe(0);

      const metrics = await (await fetch(`${api.base}/metrics`)).text();
      expect(metrics).toMatch(/smart_router_allocations_total\{[^}]*result="queue_full"[^}]*\} 10/);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    } finally {
      await api.app.close();
      await pool.close();
    }
  });

  it('a bad WAIT_QUEUE_MAX stops the app naming the variable', async () => {
    await expect(startApi(sharedRedisUrl(), 'unused:', { WAIT_QUEUE_MAX: '-1' })).rejects.toThrow('invalid configuration: WAIT_QUEUE_MAX must be >= 0');
    await expect(startApi(sharedRedisUrl(), 'unused:', { WAIT_QUEUE_MAX: 'lots' })).rejects.toThrow('invalid configuration: WAIT_QUEUE_MAX must be an integer');
  });
});

describe('allocation API bearer tokens', () => {
  it('requires a configured token and leaves health open', async () => {
    const pool = await createPoolFixture({ url: sharedRedisUrl() });
    const api = await startApi(sharedRedisUrl(), pool.keys.prefix, { API_TOKENS: 'secret-a,secret-b' });
    try {
      expect((await api.post('/api/v1/allocate', { call_sid: 'auth-1' })).status).toBe(401);
      expect((await api.post('/api/v1/allocate', { call_sid: 'auth-1' }, { authorization: 'Bearer wrong' })).status).toBe(401);
      expect((await api.post('/api/v1/allocate', { call_sid: 'auth-1' }, { authorization: 'Bearer secret-b' })).status).toBe(200);
      expect((await fetch(`${api.base}/health`)).status).toBe(200);
    } finally {
      await api.app.close();
      await pool.close();
    }
  });
});

describe('allocation API scoped dispatcher tokens (SPEC 10.1)', () => {
  let pool: PoolFixture;
  let api: Awaited<ReturnType<typeof startApi>>;
  const all = { authorization: 'Bearer dispatch-all' };
  const acme = { authorization: 'Bearer dispatch-acme' };

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    api = await startApi(sharedRedisUrl(), pool.keys.prefix, { API_TOKENS: 'dispatch-all,dispatch-acme@acme|acme.eu', ALLOW_UNAUTHENTICATED: 'true' });
  });
  afterEach(async () => {
    await api.app.close();
    await pool.close();
  });

  it('allocates only for its merchants: another merchant, no merchant, or the reseller_id alias of another is 403 and allocates nothing', async () => {
    const before = await snapshotState(pool);
    const forbidden = { status: 403, body: { error: expect.any(String), code: 'MERCHANT_FORBIDDEN' } };
    expect(await api.post('/api/v1/allocate', { call_sid: 'scope-1', merchant_id: 'globex' }, acme)).toEqual(forbidden);
    expect(await api.post('/api/v1/allocate', { call_sid: 'scope-1' }, acme)).toEqual(forbidden);
    expect(await api.post('/api/v1/allocate', { call_sid: 'scope-1', merchant_id: '' }, acme)).toEqual(forbidden);
    expect(await api.post('/api/v1/allocate', { call_sid: 'scope-1', reseller_id: 'globex' }, acme)).toEqual(forbidden);
    expect(await api.post('/api/v1/allocate', { call_sid: 'scope-1', merchant_id: 'acme', wait_ms: 1000 }, { authorization: 'Bearer dispatch-acme@acme' })).toMatchObject({ status: 401 });
    expect(await snapshotState(pool)).toEqual(before);
    expect((await api.post('/api/v1/allocate', { call_sid: 'scope-ok', merchant_id: 'acme' }, acme)).status).toBe(200);
    expect((await api.post('/api/v1/allocate', { call_sid: 'scope-alias', reseller_id: 'acme.eu' }, acme)).status).toBe(200);
  });

  it('releases and connects only calls of its merchants; another merchant\'s call lives on', async () => {
    expect((await api.post('/api/v1/allocate', { call_sid: 'globex-call', merchant_id: 'globex' }, all)).status).toBe(200);
    expect((await api.post('/api/v1/allocate', { call_sid: 'acme-call', merchant_id: 'acme' }, acme)).status).toBe(200);
    const before = await snapshotState(pool);
    for (const path of ['/api/v1/connected', '/api/v1/release']) {
      expect(await api.post(path, { call_sid: 'globex-call' }, acme)).toEqual({ status: 403, body: { error: expect.any(String), code: 'MERCHANT_FORBIDDEN' } });
    }
    expect(await snapshotState(pool)).toEqual(before);
    expect(await api.post('/api/v1/release', { call_sid: 'never-allocated' }, acme)).toMatchObject({ status: 404, body: { code: 'CALL_NOT_FOUND' } });
    expect((await api.post('/api/v1/connected', { call_sid: 'acme-call' }, acme)).status).toBe(200);
    expect((await api.post('/api/v1/release', { call_sid: 'acme-call' }, acme)).status).toBe(200);
    // The unscoped token may end any call.
    expect((await api.post('/api/v1/release', { call_sid: 'globex-call' }, all)).status).toBe(200);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('a duplicate allocate for another merchant\'s WAITING call_sid is 403 MERCHANT_FORBIDDEN at once; only the waiter gets the pod', async () => {
    // The default chain's capacity: three standard pods and the basic pod's three slots.
    for (let index = 0; index < 6; index += 1) expect((await api.post('/api/v1/allocate', { call_sid: `busy-${index}` }, all)).status).toBe(200);
    const waiting = api.post('/api/v1/allocate', { call_sid: 'globex-waiting', merchant_id: 'globex', wait_ms: 5000 }, all);
    await waitFor(async () => (await pool.redis.zcard(pool.keys.waitQueue())) === 1, { what: 'the waiter' });
    const started = Date.now();
    // The attack: claim the waiting call_sid under the scoped token's own merchant, hoping to share its outcome.
    expect(await api.post('/api/v1/allocate', { call_sid: 'globex-waiting', merchant_id: 'acme', wait_ms: 5000 }, acme))
      .toEqual({ status: 403, body: { error: expect.any(String), code: 'MERCHANT_FORBIDDEN' } });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await pool.redis.zcard(pool.keys.waitQueue())).toBe(1);
    // A duplicate from a caller allowed that merchant still shares the first one's outcome.
    const duplicate = api.post('/api/v1/allocate', { call_sid: 'globex-waiting', merchant_id: 'globex', wait_ms: 5000 }, all);
    expect((await api.post('/api/v1/release', { call_sid: 'busy-0' }, all)).status).toBe(200);
    const [first, second] = await Promise.all([waiting, duplicate]);
    expect(first).toMatchObject({ status: 200, body: { was_existing: false } });
    expect(second).toMatchObject({ status: 200, body: { pod_name: first.body.pod_name, was_existing: true } });
    expect(await pool.redis.hget(pool.keys.call('globex-waiting'), 'merchant_id')).toBe('globex');
    const metrics = await (await fetch(`${api.base}/metrics`)).text();
    expect(metrics).toMatch(/smart_router_allocations_total\{[^}]*result="merchant_forbidden"[^}]*\} 1/);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('configured tokens are enforced even with ALLOW_UNAUTHENTICATED: no or an unknown token is 401', async () => {
    for (const headers of [{}, { authorization: 'Bearer nope' }] as Record<string, string>[]) {
      for (const path of ['/api/v1/allocate', '/api/v1/release', '/api/v1/connected']) {
        expect(await api.post(path, { call_sid: 'anon-1' }, headers)).toEqual({ status: 401, body: { error: expect.any(String), code: 'UNAUTHORIZED' } });
      }
    }
  });

  it('a bad API_TOKENS entry stops the app naming the variable', async () => {
    await expect(startApi(sharedRedisUrl(), pool.keys.prefix, { API_TOKENS: 'ok,leaky-secret@' })).rejects.toThrow(/API_TOKENS entry 2/);
    await expect(startApi(sharedRedisUrl(), pool.keys.prefix, { API_TOKENS: 'ok,leaky-secret@' })).rejects.not.toThrow(/leaky-secret/);
  });
});

describe('allocation API agent tokens when the TokenReview API is down (SPEC 10.1)', () => {
  it('fails closed: 503 AUTH_UNAVAILABLE, counted, never 401 and never served; static tokens still work', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sr-kube-down-'));
    const kubeconfig = join(dir, 'kubeconfig');
    // Nothing listens on port 1: every review fails to connect.
    writeFileSync(kubeconfig, ['apiVersion: v1', 'kind: Config', 'clusters:', '- name: c', '  cluster:', '    server: http://127.0.0.1:1', '    insecure-skip-tls-verify: true',
      'users:', '- name: u', '  user:', '    token: x', 'contexts:', '- name: x', '  context:', '    cluster: c', '    user: u', 'current-context: x', ''].join('\n'));
    const pool = await createPoolFixture({ url: sharedRedisUrl() });
    const api = await startApi(sharedRedisUrl(), pool.keys.prefix, { API_TOKENS: 'dispatch-all', AGENT_TOKEN_AUDIENCE: 'smart-router', KUBECONFIG: kubeconfig });
    try {
      expect((await api.post('/api/v1/allocate', { call_sid: 'review-down-1' }, { authorization: 'Bearer dispatch-all' })).status).toBe(200);
      const before = await snapshotState(pool);
      for (const path of ['/api/v1/release', '/api/v1/connected']) {
        expect(await api.post(path, { call_sid: 'review-down-1' }, { authorization: 'Bearer eyJhbGciOiJSUzI1NiJ9.c29tZS1hZ2VudA.c2lnbmF0dXJl' })).toEqual({ status: 503, body: { error: expect.any(String), code: 'AUTH_UNAVAILABLE' } });
      }
      expect(await snapshotState(pool)).toEqual(before);
      expect(await (await fetch(`${api.base}/metrics`)).text()).toMatch(/smart_router_http_errors_total\{[^}]*code="AUTH_UNAVAILABLE"[^}]*\} 2/);
    } finally {
      await api.app.close();
      await pool.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('allocation API when Redis fails', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(() => server.dispose());

  it('answers 503 within about a second while Redis is down or hung, and recovers without a restart', async () => {
    const prefix = uniquePrefix('down');
    let pool = await createPoolFixture({ url: server.url, prefix });
    const api = await startApi(server.url, prefix);
    try {
      expect((await api.post('/api/v1/allocate', { call_sid: 'before-1' })).status).toBe(200);

      server.pause();
      const started = Date.now();
      const hung = await api.post('/api/v1/allocate', { call_sid: 'hung-1' });
      expect(hung).toEqual({ status: 503, body: { error: 'state store unavailable, retry shortly', code: 'REDIS_UNAVAILABLE' } });
      expect(Date.now() - started).toBeLessThan(2500);
      server.resume();

      await pool.close();
      await server.stop();
      const down = await api.post('/api/v1/allocate', { call_sid: 'down-1' });
      expect(down.status).toBe(503);
      expect(down.body.code).toBe('REDIS_UNAVAILABLE');
      // Public readiness says down, never why (the error would name Redis's address).
      const notReady = await fetch(`${api.base}/ready`);
      expect({ status: notReady.status, body: await notReady.text() }).toEqual({ status: 503, body: '{"status":"down"}' });

      await server.restart();
      // An empty Redis has no epoch: fail closed until the state is rebuilt.
      const empty = await waitFor(async () => {
        const answer = await api.post('/api/v1/allocate', { call_sid: 'after-1' });
        return answer.status === 503 && answer.body.code === 'STATE_REBUILDING' ? answer : null;
      }, { what: 'STATE_REBUILDING after restart' });
      expect(empty.status).toBe(503);
      pool = await createPoolFixture({ url: server.url, prefix });
      const recovered = await waitFor(async () => {
        const answer = await api.post('/api/v1/allocate', { call_sid: 'after-2' });
        return answer.status === 200 ? answer : null;
      }, { what: 'allocation after Redis came back' });
      expect(recovered.body.success).toBe(true);
      expect((await fetch(`${api.base}/ready`)).status).toBe(200);
    } finally {
      server.resume();
      await api.app.close();
      await pool.close();
    }
  });
});
