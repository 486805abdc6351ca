import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { WebSocket } from 'ws';
import { waitFor } from '@smart-router/testing';
import { LocalStack, FREE_PORTS } from './stack';

/**
 * SPEC 10.1 end to end: the built allocation-api validates voice agents'
 * projected ServiceAccount tokens with a TokenReview against the simulated
 * Kubernetes API (real @kubernetes/client-node), binds them to their pod, and
 * holds scoped dispatcher tokens to their merchants.
 */

const ROOT = join(__dirname, '..', '..', '..');
const PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'];
const ALL = 'Bearer dispatch-all';
const ACME = 'Bearer dispatch-acme';

let stack: LocalStack;
let redis: Redis;
let sequence = 0;

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function post(path: string, body: unknown, authorization?: string): Promise<Answer> {
  const response = await fetch(stack.url('allocation-api') + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const agent = (pod: string, audience?: string) => `Bearer ${stack.sim.podToken(pod, { audience })}`;

/** A live call allocated by the unscoped dispatcher: its sid and pod. */
async function liveCall(merchantId = 'globex'): Promise<{ sid: string; pod: string }> {
  sequence += 1;
  const sid = `callers-${sequence}`;
  const answer = await post('/api/v1/allocate', { call_sid: sid, merchant_id: merchantId }, ALL);
  expect(answer.status).toBe(200);
  return { sid, pod: answer.body.pod_name as string };
}

const record = (sid: string) => redis.hgetall(stack.keys.call(sid));
const forbidden = (code: string) => ({ status: 403, body: { error: expect.any(String), code } });

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-callers-')),
    apps: ['allocation-api', 'pod-watcher', 'reconciler'],
    simTimings: { readyDelayMs: 200, terminationDelayMs: 200, recreateDelayMs: 50 },
    // AGENT_TOKEN_AUDIENCE=smart-router comes with the Stack; a short cache shows revocation quickly.
    env: { API_TOKENS: 'dispatch-all,dispatch-acme@acme', AGENT_TOKEN_CACHE_SECONDS: '1', JOB_INTERVAL_SCALE: '0.3' },
  });
  redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  await waitFor(async () => {
    const probe = await post('/api/v1/allocate', { call_sid: 'callers-probe' }, ALL);
    if (probe.status !== 200) return false;
    await post('/api/v1/release', { call_sid: 'callers-probe' }, ALL);
    return true;
  }, { timeoutMs: 20000, what: 'pods allocatable' });
}, 90000);

afterAll(async () => {
  await redis?.quit();
  await stack?.stop();
}, 60000);

describe('voice agents are workloads (SPEC 10.1)', () => {
  it('an agent of another pod can neither connect nor release the call: 403 NOT_YOUR_CALL, and the call lives on', async () => {
    const call = await liveCall();
    const other = PODS.find((pod) => pod !== call.pod)!;
    const before = await record(call.sid);
    expect(await post('/api/v1/connected', { call_sid: call.sid }, agent(other))).toEqual(forbidden('NOT_YOUR_CALL'));
    expect(await post('/api/v1/release', { call_sid: call.sid, reason: 'hijack' }, agent(other))).toEqual(forbidden('NOT_YOUR_CALL'));
    expect(await record(call.sid)).toEqual(before);

    const own = agent(call.pod);
    expect(await post('/api/v1/connected', { call_sid: call.sid }, own)).toMatchObject({ status: 200, body: { pod_name: call.pod, state: 'connected' } });
    expect(await post('/api/v1/release', { call_sid: call.sid }, own)).toMatchObject({ status: 200, body: { pod_name: call.pod } });
    expect(await post('/api/v1/release', { call_sid: call.sid }, own)).toMatchObject({ status: 404, body: { code: 'CALL_NOT_FOUND' } });
  });

  it('an agent may not allocate: 403 FORBIDDEN, nothing allocated', async () => {
    expect(await post('/api/v1/allocate', { call_sid: 'agent-alloc-1' }, agent('voice-agent-1'))).toEqual(forbidden('FORBIDDEN'));
    expect(await redis.exists(stack.keys.call('agent-alloc-1'))).toBe(0);
  });

  it('a token for another audience, a forged token, or none: 401 UNAUTHORIZED on every route', async () => {
    const call = await liveCall();
    const unauthorized = { status: 401, body: { error: expect.any(String), code: 'UNAUTHORIZED' } };
    for (const authorization of [agent(call.pod, 'vault'), 'Bearer forged-token', undefined]) {
      expect(await post('/api/v1/allocate', { call_sid: 'anon-1' }, authorization)).toEqual(unauthorized);
      expect(await post('/api/v1/connected', { call_sid: call.sid }, authorization)).toEqual(unauthorized);
      expect(await post('/api/v1/release', { call_sid: call.sid }, authorization)).toEqual(unauthorized);
    }
    expect(await record(call.sid)).toMatchObject({ pod_name: call.pod, state: 'pending' });
    expect((await post('/api/v1/release', { call_sid: call.sid }, ALL)).status).toBe(200);
  });

  it('the simulated pod answers the media socket, reports connected and releases on close with its own token', async () => {
    sequence += 1;
    const sid = `callers-ws-${sequence}`;
    const answer = await post('/api/v1/allocate', { call_sid: sid, merchant_id: 'acme' }, ACME);
    expect(answer.status).toBe(200);
    const releases = stack.agents.releases;
    const socket = new WebSocket(answer.body.ws_url as string);
    await new Promise((resolve, reject) => socket.once('message', resolve).once('error', reject));
    await waitFor(async () => (await record(sid)).state === 'connected', { what: 'the agent to report connected' });
    socket.close();
    // With API_TOKENS configured, an anonymous release would be 401: this one carried the pod's token.
    await waitFor(() => stack.agents.releases === releases + 1, { what: 'the agent to release the call' });
    expect(await redis.exists(stack.keys.call(sid))).toBe(0);
  });

  it('a deleted pod\'s token stops working within the cache time (1 s here, at most 60 s)', async () => {
    const pod = 'voice-agent-4';
    const token = agent(pod);
    expect(await post('/api/v1/release', { call_sid: 'never-allocated' }, token)).toMatchObject({ status: 404 });
    const uid = stack.sim.getPod(pod)!.metadata.uid;
    stack.sim.deletePod(pod);
    await waitFor(() => stack.sim.getPod(pod) && stack.sim.getPod(pod)!.metadata.uid !== uid, { what: `${pod} recreated` });
    const started = Date.now();
    await waitFor(async () => (await post('/api/v1/release', { call_sid: 'never-allocated' }, token)).status === 401, { timeoutMs: 60000, what: 'the old token to be refused' });
    expect(Date.now() - started).toBeLessThan(60000);
    // The new incarnation's token works.
    expect(await post('/api/v1/release', { call_sid: 'never-allocated' }, agent(pod))).toMatchObject({ status: 404 });
  }, 90000);
});

describe('scoped dispatcher tokens (SPEC 10.1)', () => {
  it('another merchant (or none) is 403 MERCHANT_FORBIDDEN for allocate, release and connected, changing nothing', async () => {
    expect(await post('/api/v1/allocate', { call_sid: 'scoped-1', merchant_id: 'globex' }, ACME)).toEqual(forbidden('MERCHANT_FORBIDDEN'));
    expect(await post('/api/v1/allocate', { call_sid: 'scoped-1' }, ACME)).toEqual(forbidden('MERCHANT_FORBIDDEN'));
    expect(await redis.exists(stack.keys.call('scoped-1'))).toBe(0);

    const theirs = await liveCall('globex');
    const before = await record(theirs.sid);
    expect(await post('/api/v1/connected', { call_sid: theirs.sid }, ACME)).toEqual(forbidden('MERCHANT_FORBIDDEN'));
    expect(await post('/api/v1/release', { call_sid: theirs.sid }, ACME)).toEqual(forbidden('MERCHANT_FORBIDDEN'));
    // Claiming its own merchant on another merchant's call_sid gets neither that call's pod nor its signed ws_url.
    expect(await post('/api/v1/allocate', { call_sid: theirs.sid, merchant_id: 'acme' }, ACME)).toEqual(forbidden('MERCHANT_FORBIDDEN'));
    expect(await record(theirs.sid)).toEqual(before);

    const ours = await post('/api/v1/allocate', { call_sid: 'scoped-ours', merchant_id: 'acme' }, ACME);
    expect(ours.status).toBe(200);
    expect((await post('/api/v1/connected', { call_sid: 'scoped-ours' }, ACME)).status).toBe(200);
    expect((await post('/api/v1/release', { call_sid: 'scoped-ours' }, ACME)).status).toBe(200);
    expect((await post('/api/v1/release', { call_sid: theirs.sid }, ALL)).status).toBe(200);
  });
});
