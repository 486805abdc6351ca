import { SmartRouterClient } from '@smart-router/client';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { freePort, waitFor } from '@smart-router/testing';
import { LocalStack, FREE_PORTS } from './stack';

/**
 * SPEC section 6 end to end: the built apps as separate processes, a real
 * redis-server and the simulated cluster. Pools come only from the
 * pod-watcher -> stream -> reconciler pipeline. Seed 001 scenarios 9.6, 9.15,
 * 9.16 and seed bugs 1 (pod both busy and free after a restart) and 3 (Redis
 * loss leaves the router empty until restarted) are covered here.
 */

const ROOT = join(__dirname, '..', '..', '..');
const PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'];

let stack: LocalStack;
let redis: Redis;
let sequence = 0;

function callSid(label: string): string {
  sequence += 1;
  return `lc-${label}-${sequence}-${Date.now()}`;
}

/** The typed client through the gateway; bodies read loosely, as the assertions compare success and error fields alike. */
type LooseAnswer = Promise<{ status: number; body: Record<string, unknown> }>;
const allocate = (sid: string, merchantId?: string) => new SmartRouterClient(stack.url('gateway')).allocate({ call_sid: sid, merchant_id: merchantId }) as unknown as LooseAnswer;
const release = (sid: string) => new SmartRouterClient(stack.url('gateway')).release({ call_sid: sid, reason: 'test' }) as unknown as LooseAnswer;

async function allocatedPod(sid: string): Promise<string> {
  const result = await allocate(sid);
  expect(result.status).toBe(200);
  return result.body.pod_name as string;
}

async function tiers(): Promise<Record<string, string | null>> {
  const names = stack.sim.listPods().map((pod) => pod.metadata.name);
  const values = await Promise.all(names.map((name) => redis.get(stack.keys.podTier(name))));
  return Object.fromEntries(names.map((name, index) => [name, values[index]]));
}

async function availablePods(): Promise<Set<string>> {
  const status = (await (await fetch(`${stack.url('admin')}/api/v1/status`)).json()) as { pools: Record<string, { available: string[] }> };
  return new Set(Object.values(status.pools).flatMap((pool) => pool.available));
}

async function invariants(): Promise<{ ok: boolean; violations: unknown[] }> {
  return (await (await fetch(`${stack.url('admin')}/api/v1/admin/invariants`)).json()) as { ok: boolean; violations: unknown[] };
}

/** Every simulated pod is Ready and allocatable. */
async function settled(names: string[] = PODS): Promise<void> {
  await waitFor(async () => {
    if (!names.every((name) => stack.sim.isReady(name))) return false;
    const available = await availablePods();
    return names.every((name) => available.has(name));
  }, { timeoutMs: 15000, what: `pods ${names.join(', ')} ready and available` });
}

async function orphanedEvents(sid: string): Promise<number> {
  const entries = await redis.xrange(stack.keys.callStream(), '-', '+');
  return entries.filter(([, fields]) => {
    const record: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
    return record.type === 'call.orphaned' && record.call_sid === sid;
  }).length;
}

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-lifecycle-')),
    apps: ['allocation-api', 'admin', 'pod-watcher', 'reconciler'],
    simTimings: { readyDelayMs: 300, terminationDelayMs: 300, recreateDelayMs: 100 },
    env: { JOB_INTERVAL_SCALE: '0.05', STREAM_CLAIM_IDLE_MS: '1000', LEASE_DURATION_SECONDS: '3', LEASE_RETRY_MS: '200' },
  });
  redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  await settled();
}, 90000);

afterAll(async () => {
  await redis?.quit().catch(() => undefined);
  await stack?.stop();
}, 60000);

afterEach(async () => {
  await settled(stack.sim.listPods().map((pod) => pod.metadata.name));
  expect(await invariants()).toEqual({ ok: true, violations: [] });
}, 30000);

describe('pod lifecycle through the watcher, the stream and the reconciler', () => {
  it('gives every ready pod a tier from the config and makes it allocatable (seed 9.6)', async () => {
    expect(await tiers()).toEqual({
      'voice-agent-0': 'gold', 'voice-agent-1': 'standard', 'voice-agent-2': 'basic', 'voice-agent-3': 'standard', 'voice-agent-4': 'standard',
    });
    const sid = callSid('ready');
    const pod = await allocatedPod(sid);
    expect(['voice-agent-1', 'voice-agent-3', 'voice-agent-4']).toContain(pod);
    expect((await release(sid)).status).toBe(200);
  });

  it('a not-ready pod gets no new calls; its active call keeps working and releases normally', async () => {
    const sid = callSid('notready');
    const busy = await allocatedPod(sid);
    const idle = ['voice-agent-1', 'voice-agent-3', 'voice-agent-4'].find((name) => name !== busy)!;
    stack.sim.setReady(busy, false);
    stack.sim.setReady(idle, false);
    await waitFor(async () => !(await availablePods()).has(idle), { what: `${idle} out of available` });
    await waitFor(async () => (await redis.hget(stack.keys.pod(busy), 'ready')) === '0', { what: `${busy} marked not ready` });

    const others = [callSid('other'), callSid('other'), callSid('other')];
    const given = await Promise.all(others.map(allocatedPod));
    expect(given).not.toContain(idle);
    expect(given).not.toContain(busy);
    expect(await redis.hget(stack.keys.call(sid), 'pod_name')).toBe(busy);

    const released = await release(sid);
    expect(released.status).toBe(200);
    expect(released.body.pod_name).toBe(busy);
    expect(await availablePods()).not.toContain(busy);
    for (const other of others) expect((await release(other)).status).toBe(200);
    stack.sim.setReady(busy, true);
    stack.sim.setReady(idle, true);
  });

  it('a terminating pod gets no new calls and its call releases normally', async () => {
    const sid = callSid('terminating');
    const pod = await allocatedPod(sid);
    stack.sim.deletePod(pod, 3000);
    await waitFor(async () => (await redis.hget(stack.keys.pod(pod), 'terminating')) === '1', { what: `${pod} marked terminating` });
    const other = callSid('other');
    expect(await allocatedPod(other)).not.toBe(pod);
    const released = await release(sid);
    expect(released.status).toBe(200);
    expect(await availablePods()).not.toContain(pod);
    expect((await release(other)).status).toBe(200);
  });

  it('a deleted pod ends its call (orphaned, 404 on release); the recreated pod has a new UID and starts empty (seed bug 1)', async () => {
    const sid = callSid('deleted');
    const pod = await allocatedPod(sid);
    const oldUid = stack.sim.getPod(pod)!.metadata.uid;
    expect(await redis.hget(stack.keys.pod(pod), 'uid')).toBe(oldUid);
    stack.sim.deletePod(pod);

    await waitFor(async () => (await redis.exists(stack.keys.call(sid))) === 0, { timeoutMs: 5000, what: 'the call to be ended' });
    expect(await orphanedEvents(sid)).toBe(1);
    expect((await release(sid)).status).toBe(404);

    await settled();
    const newUid = stack.sim.getPod(pod)!.metadata.uid;
    expect(newUid).not.toBe(oldUid);
    expect(await redis.hget(stack.keys.pod(pod), 'uid')).toBe(newUid);
    expect(await redis.scard(stack.keys.podCalls(pod))).toBe(0);
    expect(await redis.exists(stack.keys.lease(pod))).toBe(0);
    expect(await tiers()).toMatchObject({ [pod]: 'standard' });
  });

  it('rolling restart of the voice agents (seed 9.6 B): calls on replaced pods end, every pod comes back empty on its tier', async () => {
    const before = await tiers();
    const sids = [callSid('rollout'), callSid('rollout')];
    const pods = await Promise.all(sids.map(allocatedPod));
    const uids = new Map(stack.sim.listPods().map((pod) => [pod.metadata.name, pod.metadata.uid]));
    stack.sim.rolloutRestart();
    await waitFor(() => stack.sim.listPods().filter((pod) => pod.metadata.uid !== uids.get(pod.metadata.name)).length === uids.size, { timeoutMs: 20000, what: 'every pod replaced' });
    await settled();
    for (const sid of sids) expect(await redis.exists(stack.keys.call(sid))).toBe(0);
    for (const sid of sids) expect(await orphanedEvents(sid)).toBe(1);
    for (const pod of pods) expect(await redis.scard(stack.keys.podCalls(pod))).toBe(0);
    expect(await tiers()).toEqual(before);
  });

  it('scales 5 -> 7 -> 5: new pods get tiers and take calls, removed pods leave no state, other tiers never change', async () => {
    const before = await tiers();
    stack.sim.scale(7);
    await settled([...PODS, 'voice-agent-5', 'voice-agent-6']);
    const grown = await tiers();
    expect(grown).toEqual({ ...before, 'voice-agent-5': 'standard', 'voice-agent-6': 'standard' });

    // The default chain is standard first: five standard pods, five calls.
    const sids = Array.from({ length: 5 }, () => callSid('scale'));
    const pods = await Promise.all(sids.map(allocatedPod));
    expect(pods).toEqual(expect.arrayContaining(['voice-agent-5', 'voice-agent-6']));
    for (const sid of sids) expect((await release(sid)).status).toBe(200);

    stack.sim.scale(5);
    await waitFor(async () => {
      if (stack.sim.getPod('voice-agent-5') || stack.sim.getPod('voice-agent-6')) return false;
      // Only the 10-minute deletion marker may stay (it stops an older LIST from resurrecting the pod).
      const leftovers = [...(await redis.keys(`${stack.keys.prefix}*voice-agent-5*`)), ...(await redis.keys(`${stack.keys.prefix}*voice-agent-6*`))];
      return leftovers.every((key) => key === stack.keys.podDeleted('voice-agent-5') || key === stack.keys.podDeleted('voice-agent-6'));
    }, { timeoutMs: 10000, what: 'scaled-down pods to leave no keys' });
    const members = (await redis.keys(`${stack.keys.prefix}pool:*`)).filter((key) => !key.includes('bull'));
    for (const key of members) {
      const type = await redis.type(key);
      const values = type === 'zset' ? await redis.zrange(key, 0, -1) : await redis.smembers(key);
      expect(values).not.toEqual(expect.arrayContaining(['voice-agent-5']));
      expect(values).not.toEqual(expect.arrayContaining(['voice-agent-6']));
    }
    expect(await tiers()).toEqual(before);
  });

  it('FLUSHALL: allocations work again within 5 s with every pod on its old tier (seed bug 3)', async () => {
    const before = await tiers();
    await redis.flushall();
    const started = Date.now();
    const sid = callSid('flush');
    await waitFor(async () => (await allocate(sid)).status === 200, { timeoutMs: 5000, intervalMs: 50, what: 'allocation after FLUSHALL' });
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await release(sid)).status).toBe(200);
    await settled();
    expect(await tiers()).toEqual(before);
  });

  it('redis-server restarted empty: the same recovery, no app restarted', async () => {
    const before = await tiers();
    const pids = [...stack.running.values()].map((running) => running.child.pid);
    await stack.redisServerHandle!.restart();
    const sid = callSid('restart');
    await waitFor(async () => (await allocate(sid)).status === 200, { timeoutMs: 10000, intervalMs: 100, what: 'allocation after a Redis restart' });
    expect((await release(sid)).status).toBe(200);
    await settled();
    expect(await tiers()).toEqual(before);
    expect([...stack.running.values()].map((running) => running.child.pid)).toEqual(pids);
  });

  it('watch dropped and history expired (410): the watcher relists and misses no deletion', async () => {
    const sid = callSid('gap');
    const pod = await allocatedPod(sid);
    stack.sim.stallWatches();
    stack.sim.deletePod(pod, 0);
    await waitFor(() => stack.sim.getPod(pod)?.metadata.uid !== undefined && !stack.sim.getPod(pod)!.metadata.deletionTimestamp, { what: `${pod} recreated` });
    stack.sim.expireHistory();
    stack.sim.dropWatches();
    await waitFor(async () => (await redis.exists(stack.keys.call(sid))) === 0, { timeoutMs: 10000, what: 'the call on the replaced pod to be ended' });
    expect(await orphanedEvents(sid)).toBe(1);
  });

  it('a stalled watch: the periodic full reconcile (a fresh LIST) still ends the deleted pod\'s call', async () => {
    const sid = callSid('stall');
    const pod = await allocatedPod(sid);
    stack.sim.stallWatches();
    stack.sim.deletePod(pod, 0);
    await waitFor(async () => (await redis.exists(stack.keys.call(sid))) === 0, { timeoutMs: 15000, what: 'the reconcile job to end the call' });
    expect(await orphanedEvents(sid)).toBe(1);
    stack.sim.dropWatches();
  });

  it('the watcher leader killed: a standby takes the lease and events flow again within the lease duration', async () => {
    const port = await freePort();
    stack.startApp('pod-watcher', { instance: 'pod-watcher-b', port, env: { POD_IDENTITY: 'pod-watcher-b' } });
    await stack.waitReady('pod-watcher', port);
    const leader = await waitFor(async () => redis.hgetall(stack.keys.watcherLeader()), { what: 'a watcher leader' }).then((hash) => (hash.identity ? hash : null));
    expect(leader).not.toBeNull();
    const killedAt = Date.now();
    await stack.stopApp(leader!.identity === 'pod-watcher-b' ? 'pod-watcher-b' : 'pod-watcher', 'SIGKILL');

    const successor = await waitFor(async () => {
      const hash = await redis.hgetall(stack.keys.watcherLeader());
      return hash.identity && hash.identity !== leader!.identity ? hash : null;
    }, { timeoutMs: 10000, what: 'the standby to take the lease' });
    // Lease 3 s plus one retry period (200 ms) plus start-up of the watch.
    expect(Date.now() - killedAt).toBeLessThan(5000);
    expect(Number(successor.term)).toBeGreaterThan(Number(leader!.term));

    const sid = callSid('failover');
    const pod = await allocatedPod(sid);
    stack.sim.deletePod(pod, 0);
    await waitFor(async () => (await redis.exists(stack.keys.call(sid))) === 0, { timeoutMs: 10000, what: 'the deletion to end the call' });
    const events = await redis.xrevrange(stack.keys.podStream(), '+', '-', 'COUNT', 50);
    const fromSuccessor = events.map(([, fields]) => Object.fromEntries(fields.flatMap((value, index) => (index % 2 === 0 ? [[value, fields[index + 1]]] : []))))
      .filter((event) => event.name === pod && event.term === successor.term);
    expect(fromSuccessor.length).toBeGreaterThan(0);
  });

  it('a reconciler frozen mid-stream: another consumer claims its pending events and applies them', async () => {
    const port = await freePort();
    stack.startApp('reconciler', { instance: 'reconciler-b', port, env: { POD_IDENTITY: 'reconciler-b' } });
    await stack.waitReady('reconciler', port);
    const frozen = stack.running.get('reconciler')!.child;
    frozen.kill('SIGSTOP');
    try {
      const sids = [callSid('claim'), callSid('claim')];
      const pods = await Promise.all(sids.map(allocatedPod));
      for (const pod of pods) stack.sim.deletePod(pod, 0);
      for (const sid of sids) {
        await waitFor(async () => (await redis.exists(stack.keys.call(sid))) === 0, { timeoutMs: 15000, what: `call ${sid} ended by the surviving consumer` });
      }
      await settled();
    } finally {
      await stack.stopApp('reconciler', 'SIGKILL');
    }
  });
});
