import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { freePort, waitFor } from '@smart-router/testing';
import { LocalStack, FREE_PORTS } from './stack';

/**
 * SPEC 9.1 end to end: the built apps as processes, a real redis-server and the
 * simulated cluster (20 pods, all standard). Two allocation-api processes share
 * one wait queue in Redis; the webhooks app waits too.
 */

const ROOT = join(__dirname, '..', '..', '..');
const REPLICAS = 20;

let stack: LocalStack;
let redis: Redis;
let apis: string[] = [];

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function post(base: string, path: string, body: unknown): Promise<Answer> {
  const response = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function admin<T>(path: string, init?: RequestInit): Promise<T> {
  return (await (await fetch(`${stack.url('admin')}${path}`, init)).json()) as T;
}

async function available(): Promise<number> {
  const status = await admin<{ pools: Record<string, { available: string[] }> }>('/api/v1/status');
  return Object.values(status.pools).reduce((sum, pool) => sum + pool.available.length, 0);
}

/** call_sid -> number of call.allocated events it got. */
async function allocationEvents(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const [, fields] of await redis.xrange(stack.keys.callStream(), '-', '+')) {
    const record: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
    if (record.type === 'call.allocated') counts.set(record.call_sid, (counts.get(record.call_sid) ?? 0) + 1);
  }
  return counts;
}

async function releaseEverything(): Promise<void> {
  for (const sid of await redis.zrange(stack.keys.activeCalls(), 0, -1)) await post(apis[0], '/api/v1/release', { call_sid: sid });
  await waitFor(async () => (await available()) === REPLICAS, { what: 'every pod free again' });
}

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-wait-')),
    replicas: REPLICAS,
    apps: ['allocation-api', 'webhooks', 'admin', 'pod-watcher', 'reconciler'],
    simTimings: { readyDelayMs: 200 },
    env: { TIER_CONFIG: JSON.stringify({ standard: { type: 'exclusive', target: REPLICAS } }), WEBHOOK_WAIT_MS: '4000' },
  });
  const second = await freePort();
  await stack.startApp('allocation-api', { instance: 'allocation-api-2', port: second });
  await stack.waitReady('allocation-api', second);
  apis = [stack.url('allocation-api'), `http://127.0.0.1:${second}`];
  redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  await waitFor(async () => (await available()) === REPLICAS, { timeoutMs: 30000, what: `${REPLICAS} pods available` });
}, 120000);

afterAll(async () => {
  await redis?.quit().catch(() => undefined);
  await stack?.stop();
}, 60000);

afterEach(async () => {
  await releaseEverything();
  expect(await admin('/api/v1/admin/invariants')).toEqual({ ok: true, violations: [] });
  expect(await redis.zcard(stack.keys.waitQueue())).toBe(0);
}, 30000);

describe('wait instead of refuse, across two allocation-api processes', () => {
  it('wait_ms outside 0..10000 or not an integer is a 400 that allocates nothing', async () => {
    for (const waitMs of [-1, 10001, 1.5, '100', null]) {
      const answer = await post(apis[0], '/api/v1/allocate', { call_sid: 'bad-wait', wait_ms: waitMs });
      expect({ waitMs, status: answer.status, code: answer.body.code }).toEqual({ waitMs, status: 400, code: 'INVALID_FIELD' });
    }
    expect(await redis.exists(stack.keys.call('bad-wait'))).toBe(0);
  });

  it('200 concurrent waiters over 20 pods with random releases: each gets one pod or a 503 at its deadline, nothing leaks', async () => {
    const started = Date.now();
    const releases: Promise<unknown>[] = [];
    const outcomes = await Promise.all(Array.from({ length: 200 }, async (_, index) => {
      const sid = `w200-${index}`;
      const waitMs = 1500 + Math.floor(Math.random() * 2500);
      const sent = Date.now();
      const answer = await post(apis[index % 2], '/api/v1/allocate', { call_sid: sid, wait_ms: waitMs });
      const elapsed = Date.now() - sent;
      if (answer.status === 200) {
        // Hold the call 50-400 ms, then release it through either process.
        releases.push(new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 350))
          .then(() => post(apis[(index + 1) % 2], '/api/v1/release', { call_sid: sid })));
      }
      return { sid, waitMs, elapsed, status: answer.status, code: answer.body.code, pod: answer.body.pod_name as string | undefined };
    }));
    await Promise.all(releases);

    const served = outcomes.filter((outcome) => outcome.status === 200);
    const refused = outcomes.filter((outcome) => outcome.status !== 200);
    expect(served.length + refused.length).toBe(200);
    expect(served.length).toBeGreaterThan(REPLICAS);
    for (const outcome of refused) {
      expect({ sid: outcome.sid, status: outcome.status, code: outcome.code }).toEqual({ sid: outcome.sid, status: 503, code: 'NO_POD_AVAILABLE' });
      // At its deadline: not before, and within a generous bound on this shared machine.
      expect(outcome.elapsed).toBeGreaterThanOrEqual(outcome.waitMs - 50);
      expect(outcome.elapsed).toBeLessThan(outcome.waitMs + 3000);
      expect(await redis.exists(stack.keys.call(outcome.sid))).toBe(0);
    }
    for (const outcome of served) expect(outcome.elapsed).toBeLessThan(outcome.waitMs + 3000);
    const events = await allocationEvents();
    for (const outcome of served) expect({ sid: outcome.sid, allocations: events.get(outcome.sid) }).toEqual({ sid: outcome.sid, allocations: 1 });
    for (const outcome of refused) expect({ sid: outcome.sid, allocations: events.get(outcome.sid) ?? 0 }).toEqual({ sid: outcome.sid, allocations: 0 });
    expect(Date.now() - started).toBeLessThan(30000);
  }, 60000);

  it('status and metrics show the waiting requests; a duplicate of a waiting call gets the same pod', async () => {
    const hold = Array.from({ length: REPLICAS }, (_, index) => `hold-${index}`);
    for (const sid of hold) expect((await post(apis[0], '/api/v1/allocate', { call_sid: sid })).status).toBe(200);
    const first = post(apis[0], '/api/v1/allocate', { call_sid: 'dup-wait', wait_ms: 8000 });
    await waitFor(async () => (await admin<{ waiting: number }>('/api/v1/status')).waiting === 1, { what: 'status to show one waiting request' });
    const duplicate = post(apis[1], '/api/v1/allocate', { call_sid: 'dup-wait', wait_ms: 0 });
    const metrics = await (await fetch(`${stack.url('admin')}/metrics`)).text();
    expect(metrics).toMatch(/^smart_router_waiting_requests(\{[^}]*\})? 1$/m);
    expect(await redis.zcard(stack.keys.waitQueue())).toBe(1);
    const released = Date.now();
    expect((await post(apis[1], '/api/v1/release', { call_sid: hold[7] })).status).toBe(200);
    const [a, b] = await Promise.all([first, duplicate]);
    // Woken by the hand-off (pub/sub from the other process's release), long before the 8 s deadline.
    expect(Date.now() - released).toBeLessThan(2000);
    expect(a).toMatchObject({ status: 200, body: { was_existing: false } });
    expect(b).toMatchObject({ status: 200, body: { pod_name: a.body.pod_name, was_existing: true } });
    const apiMetrics = await (await fetch(`${apis[0]}/metrics`)).text();
    expect(apiMetrics).toMatch(/^smart_router_wait_seconds_count\{[^}]*result="allocated"[^}]*\} [1-9]/m);
  }, 30000);

  it('an operator undrain hands the pod to a waiter at once', async () => {
    const drained = 'voice-agent-5';
    expect(await admin('/api/v1/drain', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pod_name: drained }) })).toMatchObject({ success: true });
    for (let index = 0; index < REPLICAS - 1; index += 1) expect((await post(apis[index % 2], '/api/v1/allocate', { call_sid: `undrain-hold-${index}` })).status).toBe(200);
    const waiting = post(apis[0], '/api/v1/allocate', { call_sid: 'undrain-waiter', wait_ms: 8000 });
    await waitFor(async () => (await redis.zcard(stack.keys.waitQueue())) === 1, { what: 'the request to wait' });
    const undrained = Date.now();
    expect(await admin('/api/v1/undrain', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pod_name: drained }) })).toMatchObject({ success: true });
    expect(await waiting).toMatchObject({ status: 200, body: { pod_name: drained, was_existing: false } });
    expect(Date.now() - undrained).toBeLessThan(2000);
  }, 30000);

  it('a new pod becoming ready hands itself to a waiter (StatefulSet scaled up in the simulated cluster)', async () => {
    for (let index = 0; index < REPLICAS; index += 1) expect((await post(apis[index % 2], '/api/v1/allocate', { call_sid: `scale-hold-${index}` })).status).toBe(200);
    const waiting = post(apis[1], '/api/v1/allocate', { call_sid: 'scale-waiter', wait_ms: 9000 });
    await waitFor(async () => (await redis.zcard(stack.keys.waitQueue())) === 1, { what: 'the request to wait' });
    stack.sim.scale(REPLICAS + 1);
    const newPod = `voice-agent-${REPLICAS}`;
    expect(await waiting).toMatchObject({ status: 200, body: { pod_name: newPod, was_existing: false } });
    // Back to REPLICAS pods: the call on the new pod ends first, then the pod goes and leaves nothing behind.
    expect((await post(apis[0], '/api/v1/release', { call_sid: 'scale-waiter' })).status).toBe(200);
    stack.sim.scale(REPLICAS);
    await waitFor(async () => !(await redis.sismember(stack.keys.pods(), newPod)), { timeoutMs: 15000, what: `${newPod} to be removed` });
  }, 40000);

  it('a provider answer webhook waits WEBHOOK_WAIT_MS for a pod, then answers the stream document', async () => {
    for (let index = 0; index < REPLICAS; index += 1) expect((await post(apis[0], '/api/v1/allocate', { call_sid: `hook-hold-${index}` })).status).toBe(200);
    const answer = fetch(`${stack.url('webhooks')}/api/v1/twilio/answer`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'CallSid=CA-hook-wait',
    });
    await waitFor(async () => (await redis.zcard(stack.keys.waitQueue())) === 1, { what: 'the webhook to wait' });
    await post(apis[0], '/api/v1/release', { call_sid: 'hook-hold-3' });
    const response = await answer;
    expect(response.status).toBe(200);
    expect(await response.text()).toMatch(/<Stream url="ws:\/\/[^"]+\/ws\/pod\/voice-agent-\d+\/CA-hook-wait" statusCallback="[^"]+\/api\/v1\/twilio\/stream-status\?allocation_id=\d+" statusCallbackMethod="POST">/);
  }, 30000);
});

describe('merchant caps', () => {
  it('50 concurrent new calls of a merchant with max_calls 3, over both processes: exactly 3 succeed, 47 get 429', async () => {
    const bad = await fetch(`${stack.url('admin')}/api/v1/admin/merchants/capped`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tier: 'standard', max_calls: 0 }) });
    expect(bad.status).toBe(400);
    const put = await fetch(`${stack.url('admin')}/api/v1/admin/merchants/capped`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tier: 'standard', max_calls: 3 }) });
    expect(put.status).toBe(200);
    const answers = await Promise.all(Array.from({ length: 50 }, (_, index) =>
      post(apis[index % 2], '/api/v1/allocate', { call_sid: `cap-${index}`, merchant_id: 'capped', wait_ms: index % 3 === 0 ? 1000 : 0 })));
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(3);
    const limited = answers.filter((answer) => answer.status === 429);
    expect(limited).toHaveLength(47);
    expect(limited[0].body).toEqual({ error: expect.any(String), code: 'MERCHANT_LIMIT' });

    // The webhooks answer a capped merchant with the provider's failure document.
    const hook = await fetch(`${stack.url('webhooks')}/api/v1/twilio/answer?merchant_id=capped`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'CallSid=CA-capped-hook',
    });
    expect(hook.status).toBe(200);
    const twiml = await hook.text();
    expect(twiml).toMatch(/<Hangup\/>/);
    expect(twiml).not.toMatch(/<Stream/);
    expect(await redis.exists(stack.keys.call('CA-capped-hook'))).toBe(0);
  }, 30000);
});
