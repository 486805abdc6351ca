import { SmartRouterClient } from '@smart-router/client';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
