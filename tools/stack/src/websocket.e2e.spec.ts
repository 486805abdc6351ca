import { SmartRouterClient } from '@smart-router/client';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { WebSocket } from 'ws';
import { waitFor } from '@smart-router/testing';
import { LocalStack, FREE_PORTS } from './stack';

/**
 * The whole public path, as a provider and a voice agent see it: answer
 * webhook -> ws_url -> WebSocket through the gateway to that exact simulated
 * pod -> socket closes -> the pod releases the call -> the pod is available.
 */

const ROOT = join(__dirname, '..', '..', '..');

let stack: LocalStack;
const CONNECT_TIMEOUT_SECONDS = 3;

async function available(pod: string): Promise<boolean> {
  const status = (await (await fetch(`${stack.url('gateway')}/api/v1/status`)).json()) as { pools: Record<string, { available: string[] }> };
  return Object.values(status.pools).some((pool) => pool.available.includes(pod));
}

async function invariants(): Promise<{ ok: boolean; violations: unknown[] }> {
  return (await (await fetch(`${stack.url('gateway')}/api/v1/admin/invariants`)).json()) as { ok: boolean; violations: unknown[] };
}

/** Opens a socket and resolves with it once the pod greeted us, or rejects with the HTTP status of a refusal. */
function connect(url: string): Promise<{ socket: WebSocket; greeting: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.once('message', (data) => resolve({ socket, greeting: JSON.parse(String(data)) }));
    socket.once('unexpected-response', (_request, response) => reject(new Error(`refused ${response.statusCode}`)));
    socket.once('error', reject);
  });
}

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-websocket-')),
    simTimings: { readyDelayMs: 200, terminationDelayMs: 200, recreateDelayMs: 50 },
    // A short connect deadline (SPEC 9.2), checked every 300 ms by the reconciler's connect-timeout job.
    env: { CONNECT_TIMEOUT_SECONDS: String(CONNECT_TIMEOUT_SECONDS), JOB_INTERVAL_SCALE: '0.3' },
  });
  await waitFor(async () => ['voice-agent-1', 'voice-agent-3', 'voice-agent-4'].every((pod) => stack.sim.isReady(pod)) && (await available('voice-agent-1')), { timeoutMs: 15000, what: 'pods allocatable' });
}, 90000);

afterAll(async () => {
  await stack?.stop();
}, 60000);

afterEach(async () => {
  expect(await invariants()).toEqual({ ok: true, violations: [] });
});

describe('provider webhook -> WebSocket through the gateway -> release on close', () => {
  it('Twilio answer webhook: the Stream url reaches that pod; closing the socket frees it', async () => {
    const gateway = stack.url('gateway');
    const answer = await fetch(`${gateway}/api/v1/twilio/allocate?merchant_id=`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ CallSid: 'CAws0001', From: '+15550001', To: '+15550002' }).toString(),
    });
    expect(answer.status).toBe(200);
    const twiml = await answer.text();
    const url = /<Stream url="([^"]+)"/.exec(twiml)?.[1]?.replace(/&amp;/g, '&');
    expect(url).toMatch(new RegExp(`^ws://127\\.0\\.0\\.1:${stack.ports.gateway}/ws/pod/voice-agent-\\d+/CAws0001$`));
    const pod = /\/ws\/pod\/([^/]+)\//.exec(url!)![1];
    expect(await available(pod)).toBe(false);

    const { socket, greeting } = await connect(url!);
    expect(greeting).toEqual({ event: 'connected', pod, call_sid: 'CAws0001' });
    const echoed = new Promise((resolve) => socket.once('message', (data) => resolve(String(data))));
    socket.send('{"event":"media"}');
    expect(await echoed).toBe('{"event":"media"}');

    socket.close();
    await waitFor(() => available(pod), { what: `${pod} back in its pool after the socket closed` });
    expect((await new SmartRouterClient(gateway).release({ call_sid: 'CAws0001' })).status).toBe(404);
  });

  it('JSON allocation: ws_url works the same; a socket for another pod or an unknown call is refused', async () => {
    const gateway = stack.url('gateway');
    const answer = await new SmartRouterClient(gateway).allocate({ call_sid: 'ws-json-1' });
    if (!answer.ok) throw new Error(`allocation failed: ${answer.status} ${answer.body.code}`);
    const allocated = answer.body;
    const other = ['voice-agent-1', 'voice-agent-3', 'voice-agent-4'].find((pod) => pod !== allocated.pod_name)!;
    const base = `ws://127.0.0.1:${stack.ports.gateway}/ws/pod`;

    await expect(connect(`${base}/${other}/ws-json-1`)).rejects.toThrow('refused 403');
    await expect(connect(`${base}/${allocated.pod_name}/never-allocated`)).rejects.toThrow('refused 403');
    await expect(connect(`${base}/voice-agent-99/ws-json-1`)).rejects.toThrow('refused 404');
    await expect(connect(`${base}/Bad_Pod/ws-json-1`)).rejects.toThrow('refused 404');
    expect(await available(allocated.pod_name)).toBe(false);

    const { socket } = await connect(allocated.ws_url);
    socket.close();
    await waitFor(() => available(allocated.pod_name), { what: 'the pod to be released' });
  });
});

describe('the call follows its media stream (SPEC 9.2, CONNECT_TIMEOUT_SECONDS=3)', () => {
  const gateway = () => stack.url('gateway');
  const callOf = async (callSid: string) => {
    const response = await fetch(`${gateway()}/api/v1/admin/calls/${callSid}`);
    return response.status === 404 ? null : ((await response.json()) as { pod_name: string; state: string; allocated_at: number; connected_at: number | null; allocation_id: number });
  };
  const releaseEvent = async (callSid: string) => {
    const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
    try {
      const entries = await redis.xrange(stack.keys.callStream(), '-', '+');
      const events = entries.map(([, fields]) => Object.fromEntries(Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]])));
      return events.find((event) => event.call_sid === callSid && event.type === 'call.released');
    } finally {
      redis.disconnect();
    }
  };
  const form = (path: string, params: Record<string, string>) => fetch(`${gateway()}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params).toString(),
  });

  it('a WebSocket that never opens: its pod is freed at the deadline (connect_timeout), not before', async () => {
    const answer = await form('/api/v1/plivo/answer', { CallUUID: 'ws-never-1', From: '14155550100', To: '14155550199', Direction: 'inbound' });
    const pod = /\/ws\/pod\/([^/]+)\//.exec(await answer.text())![1];
    const call = await callOf('ws-never-1');
    expect(call).toMatchObject({ pod_name: pod, state: 'pending', connected_at: null });
    await waitFor(() => available(pod), { timeoutMs: 20000, what: `${pod} freed by the connect deadline` });
    expect(await callOf('ws-never-1')).toBeNull();
    const released = await releaseEvent('ws-never-1');
    expect(released).toMatchObject({ reason: 'connect_timeout', state: 'pending', allocation_id: String(call!.allocation_id) });
    expect(Number(released!.at) - call!.allocated_at).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_SECONDS * 1000);
  }, 30000);

  it('a WebSocket that opens keeps its pod past the deadline until it closes', async () => {
    const answer = await form('/api/v1/twilio/answer', { CallSid: 'ws-open-1', From: '+15550001', To: '+15550002' });
    const url = /<Stream url="([^"]+)"/.exec(await answer.text())![1].replace(/&amp;/g, '&');
    const pod = /\/ws\/pod\/([^/]+)\//.exec(url)![1];
    const { socket } = await connect(url);
    await waitFor(async () => (await callOf('ws-open-1'))?.state === 'connected', { what: 'the simulated agent to report the call connected' });
    // A call allocated after ours that never connects: once the deadline job has freed it, ours is past its deadline too.
    const witness = (await (await fetch(`${gateway()}/api/v1/allocate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"call_sid":"ws-witness-1"}' })).json()) as { pod_name: string };
    await waitFor(async () => (await callOf('ws-witness-1')) === null, { timeoutMs: 20000, what: 'the witness call released by the deadline' });
    expect(await available(witness.pod_name)).toBe(true);
    expect(await callOf('ws-open-1')).toMatchObject({ pod_name: pod, state: 'connected' });
    expect(await available(pod)).toBe(false);
    socket.close();
    await waitFor(() => available(pod), { what: `${pod} freed when the socket closed` });
    expect(await releaseEvent('ws-open-1')).toMatchObject({ reason: 'websocket_closed', state: 'connected' });
  }, 30000);

  it("the provider's stream callbacks through the gateway: stream-started connects, stream-stopped releases", async () => {
    const answer = await form('/api/v1/twilio/answer', { CallSid: 'ws-callback-1', From: '+15550001', To: '+15550002' });
    const twiml = await answer.text();
    const callback = /statusCallback="([^"]+)"/.exec(twiml)![1].replace(/&amp;/g, '&');
    expect(callback).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${stack.ports.gateway}/api/v1/twilio/stream-status\\?allocation_id=\\d+$`));
    const pod = /\/ws\/pod\/([^/]+)\//.exec(twiml)![1];
    const path = callback.slice(gateway().length);
    const params = { AccountSid: 'ACtest', CallSid: 'ws-callback-1', StreamSid: 'MZtest', StreamName: 'MZtest', Timestamp: new Date().toISOString() };
    expect((await form(path, { ...params, StreamEvent: 'stream-started' })).status).toBe(200);
    expect(await callOf('ws-callback-1')).toMatchObject({ state: 'connected' });
    const stopped = (await (await form(path, { ...params, StreamEvent: 'stream-stopped' })).json()) as { released: boolean };
    expect(stopped.released).toBe(true);
    expect(await available(pod)).toBe(true);
    expect(await releaseEvent('ws-callback-1')).toMatchObject({ reason: 'stream_stopped' });
  });
});
