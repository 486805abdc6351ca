import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '@smart-router/testing';
import { startRehomeEnv } from './start-env';
import { CarrierClient } from './carrier-client';
import { FREE_PORTS, LocalStack } from './stack';

/**
 * Issue 20: re-homing in the `npm start` layout (the stack's defaults: open
 * providers, so unsigned webhooks; re-homing on with the per-run REST
 * credentials the reconciler and the simulated carrier share; the simulated
 * cluster and gateway as supervised children; the liveness job at its own
 * pace). SPEC 9.2 still holds: a stream-stopped callback alone releases the
 * call and frees its pod. And SPEC 11: a frozen agent's Twilio call and a
 * crashed agent's Plivo call stream from a new pod within 10 s / 3 s, measured
 * from the carrier.
 */

const ROOT = join(__dirname, '..', '..', '..');
const PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'];

let stack: LocalStack;
let carrier: CarrierClient;


const sim = () => `http://127.0.0.1:${stack.ports.sim}`;
const gateway = () => stack.url('gateway');

const adminCall = async (sid: string) => (await fetch(`${gateway()}/api/v1/admin/calls/${sid}`)).status;
const available = async () => {
  const status = (await (await fetch(`${gateway()}/api/v1/status`)).json()) as { pools: Record<string, { available: string[] }> };
  return Object.values(status.pools).flatMap((pool) => pool.available);
};
const form = (path: string, fields: Record<string, string>) => fetch(gateway() + path, {
  method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString(),
});

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-rehome-start-')),
    listenersApart: true,
    simTimings: { readyDelayMs: 200 },
    // What tools/stack/src/main.ts gives the stack (without the shell).
    env: { CONNECT_TIMEOUT_SECONDS: '20', MEDIA_URL_SECRET: randomBytes(32).toString('base64url'), HEARTBEAT_INTERVAL_MS: '2000', ...startRehomeEnv() },
  });
  carrier = new CarrierClient(stack);
  // Only an enrolled pod (one that heartbeated) can be declared dead.
  await carrier.waitEnrolled(PODS.length);
}, 90000);

afterAll(async () => {
  await carrier?.thawAll(PODS);
  await stack?.stop();
}, 60000);

afterEach(async () => {
  expect(await (await fetch(`${gateway()}/api/v1/admin/invariants`)).json()).toEqual({ ok: true, violations: [] });
});

describe('re-homing under the npm start layout (issue 20)', () => {
  it.each([
    ['twilio', { CallSid: 'CAstop92twilio', From: '+14155550100' }, { CallSid: 'CAstop92twilio', StreamSid: 'MZ1', StreamEvent: 'stream-stopped' }],
    ['plivo', { CallUUID: 'stop92-plivo-0001', From: '14155550100' }, { CallUUID: 'stop92-plivo-0001', StreamID: 's1', Event: 'StopStream' }],
  ] as const)('SPEC 9.2 (%s): a stream-stopped callback alone releases the call and frees its pod', async (provider, answer, stopped) => {
    const sid = 'CallSid' in answer ? answer.CallSid : answer.CallUUID;
    const answered = await form(`/api/v1/${provider}/answer`, answer);
    expect(answered.status).toBe(200);
    const pod = /\/ws\/pod\/([^/]+)\//.exec(await answered.text())?.[1];
    expect(PODS).toContain(pod);
    expect(await available()).not.toContain(pod);
    const response = await form(`/api/v1/${provider}/stream-status`, stopped);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ released: true, pod_name: pod });
    expect(await adminCall(sid)).toBe(404);
    expect(await available()).toContain(pod);
  });

  it('a frozen agent\'s Twilio call streams from a new pod within 10 s; a crashed agent\'s Plivo call within 3 s', async () => {
    const twilioSid = await carrier.place('twilio');
    const frozen = (await carrier.streaming(twilioSid)).streams[0].pod!;
    const frozeAt = Date.now();
    await carrier.fault(frozen, 'freeze');
    const movedTwilio = await carrier.streamingElsewhere(twilioSid, frozen, 12000);
    expect(movedTwilio.first_media_at! - frozeAt).toBeLessThan(10000);

    const plivoSid = await carrier.place('plivo');
    const crashed = (await carrier.streaming(plivoSid)).streams[0].pod!;
    const crashedAt = Date.now();
    await carrier.fault(crashed, 'crash');
    const movedPlivo = await carrier.streamingElsewhere(plivoSid, crashed, 5000);
    expect(movedPlivo.first_media_at! - crashedAt).toBeLessThan(3000);

    // Both still live on their new pods; the caller's hang-up releases them.
    for (const sid of [twilioSid, plivoSid]) {
      expect(await adminCall(sid)).toBe(200);
      expect((await fetch(`${sim()}/sim/carrier/calls/${sid}`, { method: 'DELETE' })).status).toBe(200);
    }
    await waitFor(async () => (await adminCall(twilioSid)) === 404 && (await adminCall(plivoSid)) === 404, { what: 'the hung-up calls released' });
  }, 40000);
});
