import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '@smart-router/testing';
import { CarrierClient } from './carrier-client';
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
let carrier: CarrierClient;

interface Rehomed {
  count: number;
  stale_releases: number;
  calls: { pod: string; call_sid: string; rehome_from: string; at: number }[];
}

const sim = () => `http://127.0.0.1:${stack.ports.sim}`;
const gateway = () => stack.url('gateway');

const rehomed = async () => (await (await fetch(`${sim()}/sim/agents/rehomed`)).json()) as Rehomed;
async function adminCall(sid: string): Promise<{ status: number; body: { pod_name?: string; allocation_id?: number } }> {
  const response = await fetch(`${gateway()}/api/v1/admin/calls/${sid}`);
  return { status: response.status, body: (await response.json()) as { pod_name?: string } };
}

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

describe('re-homing live calls (SPEC 11)', () => {
  it('frozen agents: each Twilio and Plivo call streams from a new pod within 10 s of the freeze; the late release after the thaw is refused and changes nothing', async () => {
    const calls = [await carrier.place('twilio'), await carrier.place('plivo')];
    const pods = await Promise.all(calls.map(async (sid) => (await carrier.streaming(sid)).streams[0].pod!));
    const before = await rehomed();
    const oldAllocations = await Promise.all(calls.map(async (sid) => (await adminCall(sid)).body.allocation_id));
    const frozeAt = Date.now();
    for (const pod of new Set(pods)) await carrier.fault(pod, 'freeze');

    const moved = await Promise.all(calls.map((sid, index) => carrier.streamingElsewhere(sid, pods[index], 12000)));
    moved.forEach((stream) => expect(stream.first_media_at! - frozeAt).toBeLessThan(10000));
    // The new agents learnt where each call came from.
    const learnt = await rehomed();
    for (const [index, sid] of calls.entries()) {
      expect(learnt.calls).toContainEqual(expect.objectContaining({ call_sid: sid, pod: moved[index].pod, rehome_from: pods[index] }));
      expect((await adminCall(sid)).body.pod_name).toBe(moved[index].pod);
    }

    for (const pod of new Set(pods)) await carrier.fault(pod, 'thaw');
    // The thawed agents' releases name their old allocations: 409, the calls stay on their new pods.
    await waitFor(async () => (await rehomed()).stale_releases >= before.stale_releases + calls.length, { timeoutMs: 10000, what: 'the late releases refused as stale' });
    for (const [index, sid] of calls.entries()) {
      const now = (await adminCall(sid)).body;
      expect(now.pod_name).toBe(moved[index].pod);
      expect((await carrier.view(sid)).state).toBe('in-progress');
      // Its late `connected` for the old allocation: 409 STALE_ALLOCATION, the call unchanged.
      const late = await fetch(`${stack.url('allocation-api')}/api/v1/connected`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ call_sid: sid, allocation_id: oldAllocations[index] }),
      });
      expect({ status: late.status, body: await late.json() }).toMatchObject({ status: 409, body: { code: 'STALE_ALLOCATION' } });
      const after = (await adminCall(sid)).body as Record<string, unknown>;
      const fenced = (view: Record<string, unknown>) => ({ pod_name: view.pod_name, allocation_id: view.allocation_id, state: view.state, connected_at: view.connected_at });
      expect(fenced(after)).toEqual(fenced(now as Record<string, unknown>));
    }
    for (const sid of calls) expect((await fetch(`${sim()}/sim/carrier/calls/${sid}`, { method: 'DELETE' })).status).toBe(200);
    await waitFor(async () => (await Promise.all(calls.map(adminCall))).every((call) => call.status === 404), { what: 'the hung-up calls released' });
  }, 60000);

  it('a crashed agent: its call streams from a new pod within 3 s', async () => {
    const sid = await carrier.place('twilio');
    const pod = (await carrier.streaming(sid)).streams[0].pod!;
    const crashedAt = Date.now();
    await carrier.fault(pod, 'crash');
    const moved = await carrier.streamingElsewhere(sid, pod, 5000);
    expect(moved.first_media_at! - crashedAt).toBeLessThan(3000);
    expect((await rehomed()).calls).toContainEqual(expect.objectContaining({ call_sid: sid, rehome_from: pod }));
    expect((await fetch(`${sim()}/sim/carrier/calls/${sid}`, { method: 'DELETE' })).status).toBe(200);
    await waitFor(async () => (await adminCall(sid)).status === 404, { what: 'the hung-up call released' });
  }, 30000);
});
