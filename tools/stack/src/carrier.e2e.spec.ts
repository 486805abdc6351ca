import { createServer, Server } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import twilio from 'twilio';
import { isValidPlivoV3Signature, isValidTwilioSignature, parseParams } from '@smart-router/providers';
import { waitFor } from '@smart-router/testing';
import { FREE_PORTS, LocalStack } from './stack';

/**
 * SPEC 11 "A simulated provider", end to end through the built apps with
 * provider signatures ON: the carrier places Twilio and Plivo calls through
 * the gateway, the call gets a pod, the stream opens through the gateway and
 * media flows both ways, the stream-status callback marks the call
 * connected, a hang-up posts the final status and frees the pod. The
 * official SDKs, pointed at the simulated cluster's port, redirect a live
 * call to a new document.
 */

const ROOT = join(__dirname, '..', '..', '..');
const TWILIO_TOKEN = 'carrier-e2e-twilio-token';
const PLIVO_TOKEN = 'carrier-e2e-plivo-token';
const TWILIO_SID = 'ACcarriere2e0000000000000000000000';
const PLIVO_ID = 'MACARRIERE2E00000000';

let stack: LocalStack;
let documents: Server;
let documentsUrl: string;
/** Requests for the test's own "new document", with whether their signature checked out. */
const redirected: { path: string; signed: boolean }[] = [];

interface CarrierView {
  state: string;
  streams: { pod: string | null; opened_at: number | null; first_media_at: number | null; closed_at: number | null }[];
}

const sim = () => `http://127.0.0.1:${stack.ports.sim}`;

async function place(provider: 'twilio' | 'plivo', merchantId?: string): Promise<string> {
  const response = await fetch(`${sim()}/sim/carrier/calls`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ provider, merchant_id: merchantId }) });
  expect(response.status).toBe(201);
  return ((await response.json()) as { call_sid: string }).call_sid;
}

async function view(sid: string): Promise<CarrierView> {
  return (await (await fetch(`${sim()}/sim/carrier/calls/${sid}`)).json()) as CarrierView;
}

async function adminCall(sid: string): Promise<{ status: number; body: { state?: string; pod_name?: string; connected_at?: number } }> {
  const response = await fetch(`${stack.url('gateway')}/api/v1/admin/calls/${sid}`);
  return { status: response.status, body: (await response.json()) as { state?: string; pod_name?: string } };
}

async function available(pod: string): Promise<boolean> {
  const status = (await (await fetch(`${stack.url('gateway')}/api/v1/status`)).json()) as { pools: Record<string, { available: string[] }> };
  return Object.values(status.pools).some((pool) => pool.available.includes(pod));
}

/** A live call with media flowing: its stream opened through the gateway and the agent's audio came back. */
async function streaming(sid: string): Promise<CarrierView> {
  return waitFor(async () => {
    const current = await view(sid);
    return current.state === 'in-progress' && current.streams.length > 0 && current.streams[current.streams.length - 1].first_media_at !== null ? current : null;
  }, { timeoutMs: 10000, what: `${sid} streaming with media` });
}

beforeAll(async () => {
  // The "new document" a redirect points at: checks the carrier's signature, then ends the call politely.
  documents = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const url = `${documentsUrl}${request.url}`;
      const params = parseParams(Buffer.concat(chunks).toString('utf8'));
      const plivo = request.url!.startsWith('/plivo');
      const signed = plivo
        ? isValidPlivoV3Signature([PLIVO_TOKEN], String(request.headers['x-plivo-signature-v3'] ?? ''), 'POST', url, String(request.headers['x-plivo-signature-v3-nonce'] ?? ''), params)
        : isValidTwilioSignature([TWILIO_TOKEN], String(request.headers['x-twilio-signature'] ?? ''), url, params);
      redirected.push({ path: request.url!, signed });
      response.writeHead(200, { 'content-type': 'text/xml' }).end(plivo ? '<Response><Speak>moved</Speak><Hangup/></Response>' : '<Response><Say>moved</Say><Hangup/></Response>');
    });
  });
  await new Promise<void>((resolve) => documents.listen(0, '127.0.0.1', resolve));
  const address = documents.address();
  documentsUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;

  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-carrier-')),
    simTimings: { readyDelayMs: 200, terminationDelayMs: 200, recreateDelayMs: 50 },
    env: {
      TWILIO_AUTH_TOKENS: TWILIO_TOKEN, PLIVO_AUTH_TOKENS: PLIVO_TOKEN, TWILIO_ACCOUNT_SID: TWILIO_SID, PLIVO_AUTH_ID: PLIVO_ID,
      MEDIA_URL_SECRET: 'carrier-e2e-media-secret-000001', CONNECT_TIMEOUT_SECONDS: '20',
    },
  });
  await waitFor(async () => stack.sim.listPods().every((pod) => stack.sim.isReady(pod.metadata.name)) && (await available('voice-agent-0')), { timeoutMs: 15000, what: 'pods allocatable' });
}, 90000);

afterAll(async () => {
  await stack?.stop();
  await new Promise((resolve) => documents?.close(resolve));
}, 60000);

afterEach(async () => {
  expect(await (await fetch(`${stack.url('gateway')}/api/v1/admin/invariants`)).json()).toEqual({ ok: true, violations: [] });
});

describe('the simulated carrier against the running stack (signatures on)', () => {
  it.each(['twilio', 'plivo'] as const)('%s: signed answer, stream through the gateway, media both ways, connected by the stream callback; DELETE hangs up and frees the pod', async (provider) => {
    const sid = await place(provider, 'merchant-carrier');
    const live = await streaming(sid);
    const pod = live.streams[0].pod!;
    expect(pod).toMatch(/^voice-agent-\d+$/);
    expect(live.streams[0].opened_at).toBeLessThanOrEqual(live.streams[0].first_media_at!);
    // Signed webhooks were accepted: the router allocated and the stream-started callback connected the call.
    await waitFor(async () => (await adminCall(sid)).body.state === 'connected', { what: `${sid} connected` });
    expect((await adminCall(sid)).body.pod_name).toBe(pod);
    expect(await available(pod)).toBe(false);

    const hangUp = await fetch(`${sim()}/sim/carrier/calls/${sid}`, { method: 'DELETE' });
    expect(hangUp.status).toBe(200);
    expect(((await hangUp.json()) as CarrierView).state).toBe('completed');
    const ended = await view(sid);
    expect(ended.streams[0].closed_at).not.toBeNull();
    await waitFor(() => available(pod), { what: `${pod} free after the hang-up` });
    expect((await adminCall(sid)).status).toBe(404);
  });

  it('an unsigned answer webhook is refused (403) and allocates nothing: the carrier really signs', async () => {
    const response = await fetch(`${stack.url('gateway')}/api/v1/twilio/answer`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'CallSid=CAforged0001' });
    expect(response.status).toBe(403);
    expect((await adminCall('CAforged0001')).status).toBe(404);
  });

  it('bad input to the carrier is a 4xx JSON error that places nothing', async () => {
    const before = stack.carrier.liveCalls;
    const bad = await fetch(`${sim()}/sim/carrier/calls`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"provider":"exotel"}' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: expect.any(String), code: 'INVALID_PROVIDER' });
    expect((await fetch(`${sim()}/sim/carrier/calls`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'provider=twilio' })).status).toBe(415);
    expect((await fetch(`${sim()}/sim/carrier/calls/CAnope`)).status).toBe(404);
    expect(stack.carrier.liveCalls).toBe(before);
  });

  it('the twilio SDK (api.baseUrl = the simulated carrier) updates a live call: the stream closes and the new URL is fetched, signed', async () => {
    const sid = await place('twilio');
    const live = await streaming(sid);
    const client = twilio(TWILIO_SID, TWILIO_TOKEN);
    // TWILIO_API_BASE_URL: the SDK's Api domain takes its base URL from this property.
    client.api.baseUrl = sim();
    const updated = await client.calls(sid).update({ url: `${documentsUrl}/twilio/moved`, method: 'POST' });
    expect(updated.sid).toBe(sid);
    await waitFor(async () => (await view(sid)).state === 'completed', { what: `${sid} ended by the new document` });
    expect(redirected).toContainEqual({ path: '/twilio/moved', signed: true });
    expect((await view(sid)).streams[0].closed_at).not.toBeNull();
    await waitFor(() => available(live.streams[0].pod!), { what: 'the pod free again' });
    // A wrong auth token is refused as Twilio does.
    const impostor = twilio(TWILIO_SID, 'wrong');
    impostor.api.baseUrl = sim();
    await expect(impostor.calls(sid).update({ url: `${documentsUrl}/twilio/x` }).catch((error: { status?: number }) => Promise.reject(new Error(String(error.status))))).rejects.toThrow('401');
  });

  it('the plivo SDK transfers the A leg of a live call to a new document', async () => {
    const sid = await place('plivo');
    const live = await streaming(sid);
    // PLIVO_API_BASE_URL: plivo 4.79 sends voice calls to a hard-coded api.plivo.com whatever its `url`
    // option says, unless the request carries no isVoiceRequest flag; the SDK's own transfer, through its
    // own request client built on that option, reaches the carrier.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Axios } = require('plivo/dist/rest/axios') as { Axios: (config: Record<string, string>) => PlivoRequest };
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { camelCaseRequestWrapper } = require('plivo/dist/rest/utils') as { camelCaseRequestWrapper: (request: PlivoRequest) => PlivoRequest };
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { CallInterface } = require('plivo/dist/resources/call') as { CallInterface: new (request: PlivoRequest) => { transfer(uuid: string, params: Record<string, string>): Promise<{ message?: string }> } };
    const request = camelCaseRequestWrapper(Axios({ authId: PLIVO_ID, authToken: PLIVO_TOKEN, version: 'v1', url: `${sim()}/v1/Account/${PLIVO_ID}`, userAgent: 'smart-router' }));
    const calls = new CallInterface((method, action, params) => {
      const { isVoiceRequest: _voice, ...rest } = (params ?? {}) as Record<string, unknown>;
      return request(method, action, rest);
    });
    const answer = await calls.transfer(sid, { legs: 'aleg', alegUrl: `${documentsUrl}/plivo/moved`, alegMethod: 'POST' });
    expect(answer.message).toBe('call transferred');
    await waitFor(async () => (await view(sid)).state === 'completed', { what: `${sid} ended by the new document` });
    expect(redirected).toContainEqual({ path: '/plivo/moved', signed: true });
    await waitFor(() => available(live.streams[0].pod!), { what: 'the pod free again' });
  });
});

type PlivoRequest = (method: string, action: string, params?: Record<string, unknown>) => Promise<unknown>;
