import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { waitFor } from '@smart-router/testing';
import { FREE_PORTS, LocalStack } from './stack';

/**
 * SPEC 11 "Recovery (re-home)" end to end through the built apps, the
 * simulated carrier and agents, signatures on, REHOME_ENABLED: a frozen
 * agent's Twilio and Plivo calls are redirected through the providers' REST
 * APIs (the official SDKs, pointed at the carrier) and stream from a new pod
 * within 10 s of the freeze, measured from the carrier; the thawed agent's
 * late release is refused (409) and changes nothing; a crashed agent's call
 * resumes within 3 s (the closed socket makes the provider ask at once).
 */

const ROOT = join(__dirname, '..', '..', '..');
const TWILIO_TOKEN = 'rehome-e2e-twilio-token';
const PLIVO_TOKEN = 'rehome-e2e-plivo-token';
const PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'];

let stack: LocalStack;

interface CarrierView {
  state: string;
  streams: { pod: string | null; opened_at: number | null; first_media_at: number | null; closed_at: number | null }[];
}
interface Rehomed {
  count: number;
  stale_releases: number;
  calls: { pod: string; call_sid: string; rehome_from: string; at: number }[];
}

const sim = () => `http://127.0.0.1:${stack.ports.sim}`;
const gateway = () => stack.url('gateway');

async function place(provider: 'twilio' | 'plivo'): Promise<string> {
  const response = await fetch(`${sim()}/sim/carrier/calls`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ provider }) });
  expect(response.status).toBe(201);
  return ((await response.json()) as { call_sid: string }).call_sid;
}
const view = async (sid: string) => (await (await fetch(`${sim()}/sim/carrier/calls/${sid}`)).json()) as CarrierView;
const rehomed = async () => (await (await fetch(`${sim()}/sim/agents/rehomed`)).json()) as Rehomed;
async function adminCall(sid: string): Promise<{ status: number; body: { pod_name?: string; allocation_id?: number } }> {
  const response = await fetch(`${gateway()}/api/v1/admin/calls/${sid}`);
  return { status: response.status, body: (await response.json()) as { pod_name?: string } };
}
async function fault(pod: string, action: 'freeze' | 'thaw' | 'crash'): Promise<void> {
  expect((await fetch(`${sim()}/sim/agents/${pod}/${action}`, { method: 'POST' })).status).toBe(200);
}
/** The call's first stream with media flowing. */
const streaming = (sid: string) => waitFor(async () => {
  const current = await view(sid);
  return current.state === 'in-progress' && current.streams[0]?.first_media_at ? current : null;
}, { timeoutMs: 10000, what: `${sid} streaming` });
/** The call's newest stream once it is on another pod than `from` with media flowing. */
const streamingElsewhere = (sid: string, from: string, timeoutMs: number) => waitFor(async () => {
  const current = await view(sid);
  const last = current.streams[current.streams.length - 1];
  return current.state === 'in-progress' && current.streams.length >= 2 && last.pod && last.pod !== from && last.first_media_at ? last : null;
}, { timeoutMs, intervalMs: 50, what: `${sid} streaming from a pod other than ${from}` });

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-rehome-')),
    simTimings: { readyDelayMs: 200, terminationDelayMs: 200, recreateDelayMs: 50 },
    env: {
      TWILIO_AUTH_TOKENS: TWILIO_TOKEN, PLIVO_AUTH_TOKENS: PLIVO_TOKEN,
      TWILIO_ACCOUNT_SID: 'ACrehomee2e00000000000000000000000', PLIVO_AUTH_ID: 'MAREHOMEE2E000000000',
      MEDIA_URL_SECRET: 'rehome-e2e-media-secret-00000001',
      // The SPEC's timing (heartbeats every 2 s, suspect 4 s, dead 6 s); the liveness job every 300 ms.
      HEARTBEAT_INTERVAL_MS: '2000', JOB_INTERVAL_SCALE: '0.3', REHOME_ENABLED: 'true',
    },
  });
  // Only an enrolled pod (one that heartbeated) can be declared dead.
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  try {
    await waitFor(async () => (await redis.zcard(stack.keys.heartbeats())) === PODS.length, { timeoutMs: 20000, what: 'every pod enrolled by its heartbeats' });
  } finally {
    await redis.quit();
  }
  await waitFor(async () => {
    const status = (await (await fetch(`${gateway()}/api/v1/status`)).json()) as { pools: Record<string, { available: string[] }> };
    return Object.values(status.pools).flatMap((pool) => pool.available).length === PODS.length;
  }, { timeoutMs: 20000, what: 'every pod allocatable' });
}, 90000);

afterAll(async () => {
  // A frozen agent's pending work waits for its thaw: thaw everything so the stack stops promptly.
  for (const pod of PODS) await fetch(`${sim()}/sim/agents/${pod}/thaw`, { method: 'POST' }).catch(() => undefined);
  await stack?.stop();
}, 60000);

afterEach(async () => {
  expect(await (await fetch(`${gateway()}/api/v1/admin/invariants`)).json()).toEqual({ ok: true, violations: [] });
});

describe('re-homing live calls (SPEC 11)', () => {
  it('frozen agents: each Twilio and Plivo call streams from a new pod within 10 s of the freeze; the late release after the thaw is refused and changes nothing', async () => {
    const calls = [await place('twilio'), await place('plivo')];
    const pods = await Promise.all(calls.map(async (sid) => (await streaming(sid)).streams[0].pod!));
    const before = await rehomed();
    const frozeAt = Date.now();
    for (const pod of new Set(pods)) await fault(pod, 'freeze');

    const moved = await Promise.all(calls.map((sid, index) => streamingElsewhere(sid, pods[index], 12000)));
    moved.forEach((stream) => expect(stream.first_media_at! - frozeAt).toBeLessThan(10000));
    // The new agents learnt where each call came from.
    const learnt = await rehomed();
    for (const [index, sid] of calls.entries()) {
      expect(learnt.calls).toContainEqual(expect.objectContaining({ call_sid: sid, pod: moved[index].pod, rehome_from: pods[index] }));
      expect((await adminCall(sid)).body.pod_name).toBe(moved[index].pod);
    }

    for (const pod of new Set(pods)) await fault(pod, 'thaw');
    // The thawed agents' releases name their old allocations: 409, the calls stay on their new pods.
    await waitFor(async () => (await rehomed()).stale_releases >= before.stale_releases + calls.length, { timeoutMs: 10000, what: 'the late releases refused as stale' });
    for (const [index, sid] of calls.entries()) {
      expect((await adminCall(sid)).body.pod_name).toBe(moved[index].pod);
      expect((await view(sid)).state).toBe('in-progress');
    }
    for (const sid of calls) expect((await fetch(`${sim()}/sim/carrier/calls/${sid}`, { method: 'DELETE' })).status).toBe(200);
    await waitFor(async () => (await Promise.all(calls.map(adminCall))).every((call) => call.status === 404), { what: 'the hung-up calls released' });
  }, 60000);

  it('a crashed agent: its call streams from a new pod within 3 s', async () => {
    const sid = await place('twilio');
    const pod = (await streaming(sid)).streams[0].pod!;
    const crashedAt = Date.now();
    await fault(pod, 'crash');
    const moved = await streamingElsewhere(sid, pod, 5000);
    expect(moved.first_media_at! - crashedAt).toBeLessThan(3000);
    expect((await rehomed()).calls).toContainEqual(expect.objectContaining({ call_sid: sid, rehome_from: pod }));
    expect((await fetch(`${sim()}/sim/carrier/calls/${sid}`, { method: 'DELETE' })).status).toBe(200);
    await waitFor(async () => (await adminCall(sid)).status === 404, { what: 'the hung-up call released' });
  }, 30000);
});
