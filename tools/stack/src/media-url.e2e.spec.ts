import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { MediaUrlSigner } from '@smart-router/allocation';
import { jsonError, rawHttpExchange, waitFor, websocketUpgradeRequest } from '@smart-router/testing';
import { LocalStack, FREE_PORTS } from './stack';

/**
 * SPEC 10.1 "Media URLs are credentials", through the local gateway with the
 * built apps: a ws_url from allocate or from a provider answer opens its
 * socket; a stolen, forged, truncated, expired or unsigned one is refused with
 * 403 at the gateway, and the pod never sees the attempt (the simulated
 * agents count every upgrade that reaches them).
 */

const ROOT = join(__dirname, '..', '..', '..');
const SECRET = 'media-url-e2e-secret-000000001';
const TTL_SECONDS = 5;

let stack: LocalStack;

/** Opens a socket; resolves once the pod greeted us, rejects with the HTTP status of a refusal. */
function connect(url: string): Promise<{ socket: WebSocket; greeting: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.once('message', (data) => resolve({ socket, greeting: JSON.parse(String(data)) }));
    socket.once('unexpected-response', (_request, response) => reject(new Error(`refused ${response.statusCode}`)));
    socket.once('error', reject);
  });
}

async function allocate(callSid: string): Promise<{ pod_name: string; ws_url: string; allocation_id: number }> {
  const response = await fetch(`${stack.url('gateway')}/api/v1/allocate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ call_sid: callSid }) });
  if (response.status !== 200) throw new Error(`allocate ${callSid}: ${response.status} ${await response.text()}`);
  return (await response.json()) as { pod_name: string; ws_url: string; allocation_id: number };
}

async function release(callSid: string): Promise<number> {
  const response = await fetch(`${stack.url('gateway')}/api/v1/release`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ call_sid: callSid }) });
  await response.body?.cancel();
  return response.status;
}

async function available(pod: string): Promise<boolean> {
  const status = (await (await fetch(`${stack.url('gateway')}/api/v1/status`)).json()) as { pools: Record<string, { available: string[] }> };
  return Object.values(status.pools).some((pool) => pool.available.includes(pod));
}

/** Expects every URL refused with 403 at the gateway, and none of them to reach a pod. */
async function expectRefusedAtEdge(urls: Record<string, string>): Promise<void> {
  const reached = stack.agents.upgrades;
  for (const [name, url] of Object.entries(urls)) {
    await expect(connect(url).then(() => `${name}: opened`, (error: Error) => `${name}: ${error.message}`)).resolves.toBe(`${name}: refused 403`);
  }
  expect(stack.agents.upgrades).toBe(reached);
}

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-media-url-')),
    simTimings: { readyDelayMs: 200, terminationDelayMs: 200, recreateDelayMs: 50 },
    env: { MEDIA_URL_SECRET: SECRET, MEDIA_URL_TTL_SECONDS: String(TTL_SECONDS) },
  });
  await waitFor(async () => ['voice-agent-1', 'voice-agent-3', 'voice-agent-4'].every((pod) => stack.sim.isReady(pod)) && (await available('voice-agent-1')), { timeoutMs: 15000, what: 'pods allocatable' });
}, 90000);

afterAll(async () => {
  await stack?.stop();
}, 60000);

afterEach(async () => {
  expect(await (await fetch(`${stack.url('gateway')}/api/v1/admin/invariants`)).json()).toEqual({ ok: true, violations: [] });
});

describe('signed media URLs through the local gateway (MEDIA_URL_SECRET set)', () => {
  it('a JSON allocation: its signed ws_url opens the socket on that pod; closing it releases the call', async () => {
    const call = await allocate('media-e2e-1');
    expect(call.ws_url).toMatch(new RegExp(`^ws://127\\.0\\.0\\.1:${stack.ports.gateway}/ws/pod/${call.pod_name}/media-e2e-1/${call.allocation_id}/\\d+/[A-Za-z0-9_-]{43}$`));
    const reached = stack.agents.upgrades;
    const { socket, greeting } = await connect(call.ws_url);
    expect(greeting).toEqual({ event: 'connected', pod: call.pod_name, call_sid: 'media-e2e-1' });
    expect(stack.agents.upgrades).toBe(reached + 1);
    socket.close();
    await waitFor(() => available(call.pod_name), { what: 'the pod released when the socket closed' });
  });

  it('provider answers carry the signed URL (Twilio TwiML, Plivo XML), and it opens', async () => {
    const form = (path: string, params: Record<string, string>) => fetch(`${stack.url('gateway')}${path}`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params).toString(),
    }).then((answer) => answer.text());
    const twiml = await form('/api/v1/twilio/answer', { CallSid: 'media-e2e-twilio', From: '+15550001', To: '+15550002' });
    const twilioUrl = /<Stream url="([^"]+)"/.exec(twiml)![1].replace(/&amp;/g, '&');
    const plivo = await form('/api/v1/plivo/answer', { CallUUID: 'media-e2e-plivo', From: '14155550100', To: '14155550199', Direction: 'inbound' });
    const plivoUrl = /<Stream[^>]*>([^<]+)<\/Stream>/.exec(plivo)![1].replace(/&amp;/g, '&');
    for (const [url, callSid] of [[twilioUrl, 'media-e2e-twilio'], [plivoUrl, 'media-e2e-plivo']]) {
      expect(url).toMatch(new RegExp(`/ws/pod/voice-agent-\\d+/${callSid}/\\d+/\\d+/[A-Za-z0-9_-]{43}$`));
      const { socket, greeting } = await connect(url);
      expect(greeting).toMatchObject({ event: 'connected', call_sid: callSid });
      socket.close();
      await waitFor(() => available(String(greeting.pod)), { what: `${callSid}'s pod released` });
    }
  });

  it('a stolen ws_url after the call was released is refused at the gateway; the pod never sees it', async () => {
    const call = await allocate('media-e2e-stolen');
    expect(await release('media-e2e-stolen')).toBe(200);
    await expectRefusedAtEdge({ stolen: call.ws_url });
    // The refusal is the edge's JSON 403 (nginx answers the same page).
    const path = new URL(call.ws_url).pathname;
    expect(await rawHttpExchange(stack.ports.gateway, websocketUpgradeRequest(path))).toMatchObject(jsonError(403, 'FORBIDDEN'));
    // The same call_sid allocated again gets a new allocation_id: the old URL stays dead, the new one opens.
    const again = await allocate('media-e2e-stolen');
    await expectRefusedAtEdge({ 'old allocation': call.ws_url });
    const { socket } = await connect(again.ws_url);
    socket.close();
    await waitFor(() => available(again.pod_name), { what: 'the pod released' });
  });

  it('a forged, truncated, re-pointed or unsigned URL of a live call is refused at the gateway', async () => {
    const call = await allocate('media-e2e-forged');
    const url = new URL(call.ws_url);
    const base = `${url.protocol}//${url.host}`;
    const parts = url.pathname.split('/');
    const signature = parts[7];
    const other = ['voice-agent-1', 'voice-agent-3', 'voice-agent-4'].find((pod) => pod !== call.pod_name)!;
    await expectRefusedAtEdge({
      forged: `${base}${parts.slice(0, 7).join('/')}/${signature.startsWith('A') ? 'B' : 'A'}${signature.slice(1)}`,
      truncated: call.ws_url.slice(0, -10),
      'another pod': call.ws_url.replace(`/ws/pod/${call.pod_name}/`, `/ws/pod/${other}/`),
      'later expiry': `${base}${parts.slice(0, 6).join('/')}/${Number(parts[6]) + 3600}/${signature}`,
      'unsigned seed form': `${base}/ws/pod/${call.pod_name}/media-e2e-forged`,
      'another secret': `${base}${new MediaUrlSigner(['not-the-deployment-secret-01'], TTL_SECONDS).path({ podName: call.pod_name, callSid: 'media-e2e-forged', allocationId: call.allocation_id }, Number(parts[6]))}`,
    });
    // The genuine URL still works: nothing above disturbed the call.
    const { socket } = await connect(call.ws_url);
    socket.close();
    await waitFor(() => available(call.pod_name), { what: 'the pod released' });
  });

  it(`an expired URL (MEDIA_URL_TTL_SECONDS=${TTL_SECONDS}) is refused; a repeated allocate answers one that works`, async () => {
    const call = await allocate('media-e2e-expired');
    const expiry = Number(new URL(call.ws_url).pathname.split('/')[6]);
    await waitFor(() => Date.now() >= expiry * 1000, { timeoutMs: (TTL_SECONDS + 2) * 1000, intervalMs: 100, what: 'the URL to expire' });
    await expectRefusedAtEdge({ expired: call.ws_url });
    const repeated = await allocate('media-e2e-expired');
    expect(repeated.allocation_id).toBe(call.allocation_id);
    const { socket } = await connect(repeated.ws_url);
    socket.close();
    await waitFor(() => available(call.pod_name), { what: 'the pod released' });
  }, 30000);

  it('the media check itself is not on the public path', async () => {
    const response = await fetch(`${stack.url('gateway')}/internal/media-auth`, { headers: { 'x-original-uri': '/ws/pod/voice-agent-1/x' } });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: 'route not found', code: 'NOT_FOUND' });
  });
});
