import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { WebSocket } from 'ws';
import { PoolScripts } from '@smart-router/redis-scripts';
import { waitFor } from '@smart-router/testing';
import { LocalStack, FREE_PORTS } from './stack';

/**
 * SPEC 11 heartbeats end to end: the simulated voice agents heartbeat with
 * their pods' tokens and real frame counters; a frozen agent stops getting
 * calls within 6 s, is declared dead and its calls end (agent_dead); its late
 * release after the thaw changes nothing; agents stalling 1.5 s are never dead.
 */

const ROOT = join(__dirname, '..', '..', '..');
const PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'];

let stack: LocalStack;
let redis: Redis;
let scripts: PoolScripts;
let sequence = 0;

async function post(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(stack.url('allocation-api') + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function fault(pod: string, action: 'freeze' | 'thaw' | 'crash'): Promise<void> {
  const response = await fetch(`${stack.sim.url}/sim/agents/${pod}/${action}`, { method: 'POST' });
  expect(response.status).toBe(200);
}

function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.once('message', () => resolve(socket));
    socket.once('unexpected-response', (_request, response) => reject(new Error(`refused ${response.statusCode}`)));
    socket.once('error', reject);
  });
}

async function events(type: string): Promise<Record<string, string>[]> {
  const entries = await redis.xrange(stack.keys.callStream(), '-', '+');
  return entries.map(([, fields]) => {
    const record: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
    return record;
  }).filter((event) => event.type === type);
}

const liveness = (pod: string) => redis.hget(stack.keys.pod(pod), 'liveness');

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-heartbeat-')),
    apps: ['allocation-api', 'pod-watcher', 'reconciler'],
    simTimings: { readyDelayMs: 200, terminationDelayMs: 200, recreateDelayMs: 50 },
    // The SPEC's timing (heartbeats every 2 s, suspect 4 s, dead 6 s); the liveness job every 300 ms.
    env: { HEARTBEAT_INTERVAL_MS: '2000', JOB_INTERVAL_SCALE: '0.3' },
  });
  redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  scripts = new PoolScripts(redis, stack.keys, { callTtlSeconds: 3600, tombstoneTtlSeconds: 60, streamMaxLen: 10000 });
  await waitFor(async () => (await redis.zcard(stack.keys.heartbeats())) === PODS.length, { timeoutMs: 20000, what: 'every pod enrolled by its heartbeats' });
}, 90000);

afterAll(async () => {
  await redis?.quit();
  await stack?.stop();
}, 60000);

describe('voice-agent liveness (SPEC 11)', () => {
  it('a frozen agent gets no new call 6 s after the freeze, is declared dead, its call ends (agent_dead); its late release changes nothing', async () => {
    sequence += 1;
    const sid = `hb-frozen-${sequence}`;
    const allocated = await post('/api/v1/allocate', { call_sid: sid });
    expect(allocated.status).toBe(200);
    const pod = allocated.body.pod_name as string;
    const socket = await connect(allocated.body.ws_url as string);
    socket.send('frame-1');
    // The agent reports the call with its frame counters.
    await waitFor(async () => Number(await redis.hget(stack.keys.call(sid), 'media_in')) >= 1, { timeoutMs: 8000, what: 'media counters from a heartbeat' });

    await fault(pod, 'freeze');
    const frozenAt = Date.now();
    const reached: { pod: string; at: number }[] = [];
    // New calls keep coming (each released at once) while the frozen pod goes suspect, then dead.
    while (Date.now() - frozenAt < 7500) {
      sequence += 1;
      const probe = await post('/api/v1/allocate', { call_sid: `hb-probe-${sequence}` });
      if (probe.status === 200) {
        reached.push({ pod: probe.body.pod_name as string, at: Date.now() });
        await post('/api/v1/release', { call_sid: `hb-probe-${sequence}` });
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(reached.length).toBeGreaterThan(10);
    expect(reached.filter((entry) => entry.pod === pod && entry.at > frozenAt + 6000)).toEqual([]);

    await waitFor(async () => (await liveness(pod)) === 'dead', { timeoutMs: 5000, what: `${pod} declared dead` });
    expect(await redis.exists(stack.keys.call(sid))).toBe(0);
    expect((await events('call.released')).filter((event) => event.call_sid === sid)).toEqual([expect.objectContaining({ reason: 'agent_dead', pod })]);
    expect((await events('pod.dead')).map((event) => event.pod)).toContain(pod);
    expect(await scripts.checkInvariants()).toEqual([]);

    // The caller hangs up while the agent is frozen; the thawed agent's release is late: 404, nothing changes.
    const releasesBefore = stack.agents.releases;
    socket.close();
    await new Promise((resolve) => socket.once('close', resolve));
    await fault(pod, 'thaw');
    await waitFor(() => stack.agents.releases > releasesBefore, { timeoutMs: 5000, what: 'the late release' });
    expect(await post('/api/v1/release', { call_sid: sid })).toMatchObject({ status: 404 });
    // Its next heartbeat lists none of the calls it had: it rejoins its pool.
    await waitFor(async () => (await liveness(pod)) === null, { timeoutMs: 6000, what: `${pod} live again` });
    expect((await events('pod.live')).map((event) => event.pod)).toContain(pod);
    expect(await scripts.checkInvariants()).toEqual([]);
  }, 40000);

  it('agents stalling 1.5 s at random are never declared dead and lose no call', async () => {
    const deadBefore = (await events('pod.dead')).length;
    const endedBefore = (await events('call.released')).filter((event) => event.reason === 'agent_dead').length;
    const started = Date.now();
    let stalls = 0;
    while (Date.now() - started < 9000) {
      const pod = PODS[Math.floor(Math.random() * PODS.length)];
      await fault(pod, 'freeze');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await fault(pod, 'thaw');
      stalls += 1;
    }
    // Let the last heartbeats land and the job run.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(stalls).toBeGreaterThanOrEqual(5);
    expect((await events('pod.dead')).length).toBe(deadBefore);
    expect((await events('call.released')).filter((event) => event.reason === 'agent_dead').length).toBe(endedBefore);
    for (const pod of PODS) expect(await liveness(pod)).not.toBe('dead');
    expect(await scripts.checkInvariants()).toEqual([]);
  }, 30000);
});

describe('a crashed voice agent (SPEC 11)', () => {
  it('releases nothing; its pod is dead after HEARTBEAT_DEAD_MS, its call ends (agent_dead), and a recreated pod starts unjudged', async () => {
    sequence += 1;
    const sid = `hb-crashed-${sequence}`;
    const allocated = await post('/api/v1/allocate', { call_sid: sid });
    expect(allocated.status).toBe(200);
    const pod = allocated.body.pod_name as string;
    const socket = await connect(allocated.body.ws_url as string);
    const closed = new Promise((resolve) => socket.once('close', resolve));
    const releasesBefore = stack.agents.releases;
    const crashedAt = Date.now();
    await fault(pod, 'crash');
    await closed;
    // Nobody released the call: the router learns of the crash only from the silence.
    expect(await redis.hget(stack.keys.call(sid), 'pod_name')).toBe(pod);
    await waitFor(async () => (await liveness(pod)) === 'dead', { timeoutMs: 10000, what: `${pod} declared dead` });
    expect(Date.now() - crashedAt).toBeLessThan(9000);
    expect(await redis.exists(stack.keys.call(sid))).toBe(0);
    expect((await events('call.released')).filter((event) => event.call_sid === sid)).toEqual([expect.objectContaining({ reason: 'agent_dead' })]);
    expect(stack.agents.releases).toBe(releasesBefore);

    // The pod is replaced (what HEARTBEAT_DEAD_ACTION=delete does): the new incarnation's agent heartbeats and is live.
    const oldUid = stack.sim.getPod(pod)?.metadata.uid;
    stack.sim.deletePod(pod);
    await waitFor(() => { const uid = stack.sim.getPod(pod)?.metadata.uid; return Boolean(uid && uid !== oldUid && stack.sim.isReady(pod)); }, { timeoutMs: 10000, what: `${pod} recreated` });
    await waitFor(async () => (await redis.hget(stack.keys.pod(pod), 'heartbeat_uid')) === stack.sim.getPod(pod)?.metadata.uid, { timeoutMs: 10000, what: 'the new incarnation heartbeating' });
    expect(await scripts.checkInvariants()).toEqual([]);
  }, 40000);
});
