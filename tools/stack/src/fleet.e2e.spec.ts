import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { jsonRequest, waitFor } from '@smart-router/testing';
import { LocalStack, FREE_PORTS } from './stack';

/**
 * SPEC 9.1 fleet autoscaler and call-safe scale-down, end to end: the built
 * apps as processes, a real redis-server, the simulated cluster (its
 * StatefulSet scaled by the reconciler through the scale subresource). Every
 * pod is in the extra tier's exclusive pool (standard). Throughout, a watcher
 * checks that every live call's pod exists in the cluster; at the end no call
 * was orphaned.
 */

const ROOT = join(__dirname, '..', '..', '..');

let stack: LocalStack;
let redis: Redis;
let api: string;
const cut: string[] = [];
let watching: NodeJS.Timeout | null = null;

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

const request = jsonRequest;

const admin = (method: string, path: string, body?: unknown) => request(stack.url('admin'), method, path, body);
const allocate = (sid: string, waitMs = 0) => request(api, 'POST', '/api/v1/allocate', { call_sid: sid, wait_ms: waitMs });
const release = (sid: string) => request(api, 'POST', '/api/v1/release', { call_sid: sid });

interface Fleet {
  replicas: number;
  target: number;
  pending_removal: string[];
}
const fleet = async () => (await admin('GET', '/api/v1/admin/fleet')).body as unknown as Fleet;
const specReplicas = () => stack.sim.state.getStatefulSet(stack.sim.statefulSetName)!.spec.replicas;

async function available(): Promise<string[]> {
  const status = (await admin('GET', '/api/v1/status')).body as { pools: Record<string, { available: string[] }> };
  return Object.values(status.pools).flatMap((pool) => pool.available).sort();
}

async function settleAt(replicas: number): Promise<void> {
  await waitFor(async () => {
    const view = await fleet();
    return specReplicas() === replicas && view.replicas === replicas && view.pending_removal.length === 0 && (await available()).length === replicas;
  }, { timeoutMs: 30000, what: `the fleet to settle at ${replicas} free pods` });
}

async function orphanedEvents(): Promise<number> {
  const entries = await redis.xrange(stack.keys.callStream(), '-', '+');
  return entries.filter(([, fields]) => fields[fields.indexOf('type') + 1] === 'call.orphaned').length;
}

async function fleetEvents(): Promise<string[]> {
  return (await redis.xrange(stack.keys.fleetStream(), '-', '+')).map(([, fields]) => fields[fields.indexOf('type') + 1]);
}

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-fleet-')),
    replicas: 2,
    apps: ['allocation-api', 'admin', 'pod-watcher', 'reconciler'],
    simTimings: { readyDelayMs: 300 },
    env: {
      TIER_CONFIG: JSON.stringify({ standard: { type: 'exclusive', target: 1 } }),
      JOB_INTERVAL_SCALE: '0.1',
      AUTOSCALER_MIN_REPLICAS: '2',
      AUTOSCALER_MAX_REPLICAS: '8',
      AUTOSCALER_BUFFER: '2',
      AUTOSCALER_SCALE_DOWN_DELAY_SECONDS: '3',
    },
  });
  api = stack.url('allocation-api');
  redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  await settleAt(2);
  // No call is ever cut: each live call's pod exists in the cluster until the call is released.
  watching = setInterval(() => {
    void (async () => {
      for (const sid of await redis.zrange(stack.keys.activeCalls(), 0, -1)) {
        const pod = await redis.hget(stack.keys.call(sid), 'pod_name');
        if (pod && !stack.sim.getPod(pod)) cut.push(`${sid} on ${pod}`);
      }
    })().catch(() => undefined);
  }, 50);
}, 120000);

afterAll(async () => {
  if (watching) clearInterval(watching);
  await redis?.quit().catch(() => undefined);
  await stack?.stop();
}, 60000);

afterEach(async () => {
  expect(cut).toEqual([]);
  expect(await orphanedEvents()).toBe(0);
  expect((await admin('GET', '/api/v1/admin/invariants')).body).toEqual({ ok: true, violations: [] });
});

describe('fleet scale (POST /api/v1/admin/fleet/scale)', () => {
  it('validates the body and the autoscaler settings (400, nothing changes)', async () => {
    for (const body of [{}, { replicas: -1 }, { replicas: 1.5 }, { replicas: '3' }, { replicas: 1001 }, { replicas: 3, extra: 1 }]) {
      const answer = await admin('POST', '/api/v1/admin/fleet/scale', body);
      expect({ body, status: answer.status, code: answer.body.code }).toEqual({ body, status: 400, code: 'INVALID_REPLICAS' });
    }
    for (const body of [{ enabled: 'yes' }, { buffer: -1 }, { min_replicas: 1.5 }, { scale_down_delay_seconds: null }, { surprise: 1 }, []]) {
      const answer = await admin('PUT', '/api/v1/admin/autoscaler', body);
      expect({ body, status: answer.status, code: answer.body.code }).toEqual({ body, status: 400, code: 'INVALID_AUTOSCALER_CONFIG' });
    }
    const range = await admin('PUT', '/api/v1/admin/autoscaler', { min_replicas: 9 });
    expect([range.status, range.body.code]).toEqual([400, 'INVALID_REPLICA_RANGE']);
    const settings = (await admin('GET', '/api/v1/admin/autoscaler')).body;
    expect(settings).toMatchObject({ enabled: false, min_replicas: 2, max_replicas: 8, buffer: 2, scale_down_delay_seconds: 3, current_replicas: 2 });
    // Free pods are read live, also while the autoscaler is off (not null until its first decision).
    expect(settings).toMatchObject({ free: expect.any(Number), waiting: 0 });
    expect(await fleet()).toEqual({ replicas: 2, target: 2, pending_removal: [] });
  });

  it('a scale-down drains the pods above the new size, waits for their calls, then lowers spec.replicas, across a reconciler restart', async () => {
    expect((await admin('POST', '/api/v1/admin/fleet/scale', { replicas: 4 })).status).toBe(202);
    await settleAt(4);
    const pods = new Map<string, string>();
    for (let index = 0; index < 4; index += 1) {
      const answer = await allocate(`sd-${index}`);
      expect(answer.status).toBe(200);
      pods.set(answer.body.pod_name as string, `sd-${index}`);
    }
    const planned = await admin('POST', '/api/v1/admin/fleet/scale', { replicas: 2 });
    expect(planned.status).toBe(202);
    expect(planned.body).toMatchObject({ target: 2, pending_removal: ['voice-agent-2', 'voice-agent-3'] });
    // The reconciler dies mid-way: the plan is in Redis.
    await stack.stopApp('reconciler', 'SIGKILL');
    // The pods above the new size are draining (for removal): the release says so.
    expect(await release(pods.get('voice-agent-3')!)).toMatchObject({ status: 200, body: { was_draining: true } });
    await stack.startApp('reconciler');
    await stack.waitReady('reconciler');
    // voice-agent-3 is idle now, but out of its pool (drained for removal); voice-agent-2 still holds a call.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(specReplicas()).toBe(4);
    expect(await available()).toEqual([]);
    expect((await fleet()).pending_removal).toEqual(['voice-agent-2', 'voice-agent-3']);
    expect((await allocate('sd-new')).status).toBe(503);
    expect((await admin('GET', '/api/v1/pod/voice-agent-3')).body).toMatchObject({ draining: true, pending_removal: true, active_calls: 0 });
    expect((await admin('GET', '/api/v1/status')).body.draining).toEqual(['voice-agent-2', 'voice-agent-3']);
    expect((await release(pods.get('voice-agent-2')!)).status).toBe(200);
    await waitFor(async () => specReplicas() === 2 && (await fleet()).pending_removal.length === 0, { timeoutMs: 20000, what: 'spec.replicas lowered to 2 once the pods are idle' });
    for (const pod of ['voice-agent-0', 'voice-agent-1']) expect((await release(pods.get(pod)!)).status).toBe(200);
    await settleAt(2);
    expect(await fleetEvents()).toEqual(expect.arrayContaining(['fleet.scale_requested', 'fleet.scale_down_committed', 'fleet.scaled']));
  }, 90000);

  it('a scale-up during a pending removal cancels it: the pods it keeps are available again (a waiter gets one) and an operator drain stays', async () => {
    expect((await admin('POST', '/api/v1/admin/fleet/scale', { replicas: 4 })).status).toBe(202);
    await settleAt(4);
    const pods = new Map<string, string>();
    for (let index = 0; index < 4; index += 1) {
      const answer = await allocate(`cx-${index}`);
      pods.set(answer.body.pod_name as string, `cx-${index}`);
    }
    expect((await admin('POST', '/api/v1/drain', { pod_name: 'voice-agent-2' })).status).toBe(200);
    expect((await admin('POST', '/api/v1/admin/fleet/scale', { replicas: 2 })).body).toMatchObject({ pending_removal: ['voice-agent-2', 'voice-agent-3'] });
    expect((await release(pods.get('voice-agent-3')!)).status).toBe(200);
    const waiter = allocate('cx-waiter', 8000);
    await waitFor(async () => (await redis.zcard(stack.keys.waitQueue())) === 1, { what: 'the request to wait' });
    const cancelled = await admin('POST', '/api/v1/admin/fleet/scale', { replicas: 4 });
    expect(cancelled.body).toMatchObject({ target: 4, pending_removal: [], cancelled: 2 });
    const served = await waiter;
    expect([served.status, served.body.pod_name]).toEqual([200, 'voice-agent-3']);
    expect((await admin('GET', '/api/v1/pod/voice-agent-2')).body).toMatchObject({ draining: true, pending_removal: false });
    expect((await release(pods.get('voice-agent-2')!)).status).toBe(200);
    expect(await available()).toEqual([]);
    expect((await admin('POST', '/api/v1/undrain', { pod_name: 'voice-agent-2' })).status).toBe(200);
    expect(await available()).toEqual(['voice-agent-2']);
    expect(specReplicas()).toBe(4);
    for (const sid of ['cx-waiter', pods.get('voice-agent-0')!, pods.get('voice-agent-1')!]) expect((await release(sid)).status).toBe(200);
    expect((await admin('POST', '/api/v1/admin/fleet/scale', { replicas: 2 })).status).toBe(202);
    await settleAt(2);
  }, 60000);
});

describe('fleet autoscaler', () => {
  it('a sustained demand step raises replicas until the buffer holds; a lull lowers them after the delay, never sooner', async () => {
    const enabled = await admin('PUT', '/api/v1/admin/autoscaler', { enabled: true });
    expect(enabled.status).toBe(200);
    expect(enabled.body).toMatchObject({ enabled: true, min_replicas: 2, max_replicas: 8, buffer: 2, scale_down_delay_seconds: 3 });
    // Steady: 2 free pods = the buffer.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(specReplicas()).toBe(2);
    // Demand step: 5 calls (3 more than there are pods); the extra ones wait.
    const answers = await Promise.all(Array.from({ length: 5 }, (_, index) => allocate(`as-${index}`, 10000)));
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200, 200]);
    await waitFor(async () => {
      const state = (await admin('GET', '/api/v1/admin/autoscaler')).body;
      return specReplicas() === 7 && state.free === 2 && (await available()).length === 2;
    }, { timeoutMs: 30000, what: 'replicas 7: 5 busy + a buffer of 2 free' });
    const up = (await admin('GET', '/api/v1/admin/autoscaler')).body as { last_decision: { from: number; to: number; reason: string }; current_replicas: number; desired_replicas: number; waiting: number };
    expect(up).toMatchObject({ current_replicas: 7, desired_replicas: 7, waiting: 0 });
    expect(up.last_decision.to).toBeGreaterThan(up.last_decision.from);
    // Lull: release everything; the surplus must last 3 s before anything is removed.
    const lull = Date.now();
    for (let index = 0; index < 5; index += 1) expect((await release(`as-${index}`)).status).toBe(200);
    await waitFor(async () => specReplicas() === 2, { timeoutMs: 30000, what: 'the autoscaler to scale back down to min_replicas' });
    const down = (await admin('GET', '/api/v1/admin/autoscaler')).body as { last_decision: { at: number; from: number; to: number } };
    expect(down.last_decision).toMatchObject({ from: 7, to: 2 });
    expect(down.last_decision.at - lull).toBeGreaterThanOrEqual(3000);
    await settleAt(2);
    expect((await admin('PUT', '/api/v1/admin/autoscaler', { enabled: false })).body).toMatchObject({ enabled: false });
  }, 90000);
});
