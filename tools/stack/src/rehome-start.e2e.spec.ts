import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { waitFor } from '@smart-router/testing';
import { startRehomeEnv } from './start-env';
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

interface CarrierView {
  state: string;
  streams: { pod: string | null; opened_at: number | null; first_media_at: number | null; closed_at: number | null }[];
}

const sim = () => `http://127.0.0.1:${stack.ports.sim}`;
const gateway = () => stack.url('gateway');

async function place(provider: 'twilio' | 'plivo'): Promise<string> {
  const response = await fetch(`${sim()}/sim/carrier/calls`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ provider }) });
  expect(response.status).toBe(201);
  return ((await response.json()) as { call_sid: string }).call_sid;
}
const view = async (sid: string) => (await (await fetch(`${sim()}/sim/carrier/calls/${sid}`)).json()) as CarrierView;
const adminCall = async (sid: string) => (await fetch(`${gateway()}/api/v1/admin/calls/${sid}`)).status;
async function fault(pod: string, action: 'freeze' | 'thaw' | 'crash'): Promise<void> {
  expect((await fetch(`${sim()}/sim/agents/${pod}/${action}`, { method: 'POST' })).status).toBe(200);
}
const available = async () => {
  const status = (await (await fetch(`${gateway()}/api/v1/status`)).json()) as { pools: Record<string, { available: string[] }> };
  return Object.values(status.pools).flatMap((pool) => pool.available);
};
const form = (path: string, fields: Record<string, string>) => fetch(gateway() + path, {
  method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString(),
});
const streaming = (sid: string) => waitFor(async () => {
  const current = await view(sid);
  return current.state === 'in-progress' && current.streams[0]?.first_media_at ? current : null;
}, { timeoutMs: 10000, what: `${sid} streaming` });
const streamingElsewhere = (sid: string, from: string, timeoutMs: number) => waitFor(async () => {
  const current = await view(sid);
  const last = current.streams[current.streams.length - 1];
  return current.state === 'in-progress' && current.streams.length >= 2 && last.pod && last.pod !== from && last.first_media_at ? last : null;
}, { timeoutMs, intervalMs: 50, what: `${sid} streaming from a pod other than ${from}` });

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
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  try {
    await waitFor(async () => (await redis.zcard(stack.keys.heartbeats())) === PODS.length, { timeoutMs: 20000, what: 'every pod enrolled by its heartbeats' });
  } finally {
    await redis.quit();
  }
  await waitFor(async () => (await available()).length === PODS.length, { timeoutMs: 20000, what: 'every pod allocatable' });
}, 90000);

afterAll(async () => {
  for (const pod of PODS) await fetch(`${sim()}/sim/agents/${pod}/thaw`, { method: 'POST' }).catch(() => undefined);
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
    const twilioSid = await place('twilio');
    const frozen = (await streaming(twilioSid)).streams[0].pod!;
    const frozeAt = Date.now();
    await fault(frozen, 'freeze');
    const movedTwilio = await streamingElsewhere(twilioSid, frozen, 12000);
    expect(movedTwilio.first_media_at! - frozeAt).toBeLessThan(10000);

    const plivoSid = await place('plivo');
    const crashed = (await streaming(plivoSid)).streams[0].pod!;
    const crashedAt = Date.now();
    await fault(crashed, 'crash');
    const movedPlivo = await streamingElsewhere(plivoSid, crashed, 5000);
    expect(movedPlivo.first_media_at! - crashedAt).toBeLessThan(3000);

    // Both still live on their new pods; the caller's hang-up releases them.
    for (const sid of [twilioSid, plivoSid]) {
      expect(await adminCall(sid)).toBe(200);
      expect((await fetch(`${sim()}/sim/carrier/calls/${sid}`, { method: 'DELETE' })).status).toBe(200);
    }
    await waitFor(async () => (await adminCall(twilioSid)) === 404 && (await adminCall(plivoSid)) === 404, { what: 'the hung-up calls released' });
  }, 40000);
});
