import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis, { Cluster } from 'ioredis';
import { RedisClusterNodes, waitFor } from '@smart-router/testing';
import { FREE_PORTS, LocalStack } from './stack';

/**
 * SPEC 9.3 on a real Redis Cluster: three primaries (`redis-server
 * --cluster-enabled yes`, `redis-cli --cluster create`), the built apps
 * started with REDIS_CLUSTER_NODES and the `{voice}:` prefix. Every script,
 * stream and BullMQ queue must run there, which Redis only allows when a
 * call's keys share a slot; and all state must sit on one primary.
 */

const ROOT = join(__dirname, '..', '..', '..');
const PREFIX = '{voice}:';
const PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2'];

let nodes: RedisClusterNodes;
let stack: LocalStack;
let cluster: Cluster;

async function post(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${stack.url('gateway')}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
const allocate = (sid: string) => post('/api/v1/allocate', { call_sid: sid });
const release = (sid: string) => post('/api/v1/release', { call_sid: sid, reason: 'test' });

async function availablePods(): Promise<Set<string>> {
  const status = (await (await fetch(`${stack.url('admin')}/api/v1/status`)).json()) as { pools: Record<string, { available: string[] }> };
  return new Set(Object.values(status.pools ?? {}).flatMap((pool) => pool.available));
}

async function invariants(): Promise<{ ok: boolean; violations: unknown[] }> {
  return (await (await fetch(`${stack.url('admin')}/api/v1/admin/invariants`)).json()) as { ok: boolean; violations: unknown[] };
}

beforeAll(async () => {
  nodes = await RedisClusterNodes.start(3);
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    // The stack's own helper client is not cluster-aware; the apps use REDIS_CLUSTER_NODES.
    redisUrl: nodes.nodes[0].url,
    replicas: PODS.length,
    logDir: mkdtempSync(join(tmpdir(), 'sr-cluster-')),
    apps: ['allocation-api', 'admin', 'pod-watcher', 'reconciler'],
    simTimings: { readyDelayMs: 300, terminationDelayMs: 300, recreateDelayMs: 100 },
    env: {
      REDIS_CLUSTER_NODES: nodes.nodesSetting,
      REDIS_PREFIX: PREFIX,
      TIER_CONFIG: '{"standard":{"type":"exclusive","target":2},"basic":{"type":"shared","target":1,"max_concurrent":2}}',
      DEFAULT_CHAIN: 'standard,basic',
      JOB_INTERVAL_SCALE: '0.05',
      STREAM_CLAIM_IDLE_MS: '1000',
      LEASE_DURATION_SECONDS: '3',
      LEASE_RETRY_MS: '200',
    },
  });
  cluster = new Cluster(nodes.nodes.map((node) => ({ host: '127.0.0.1', port: node.port })), { redisOptions: { maxRetriesPerRequest: 1 } });
  cluster.on('error', () => undefined);
  await waitFor(async () => (await availablePods()).size === PODS.length, { timeoutMs: 20000, what: 'every pod allocatable' });
}, 90000);

afterAll(async () => {
  await cluster?.quit().catch(() => undefined);
  await stack?.stop();
  await nodes?.dispose();
}, 60000);

describe('on a real 3-primary Redis Cluster with the {voice}: prefix', () => {
  it('allocates and releases through the gateway; the call lives on the slot owner', async () => {
    const first = await allocate('cl-1');
    expect(first.status).toBe(200);
    const again = await allocate('cl-1');
    expect(again.body).toMatchObject({ pod_name: first.body.pod_name, was_existing: true });
    expect(await cluster.hget(`${PREFIX}call:cl-1`, 'pod_name')).toBe(first.body.pod_name);
    expect((await release('cl-1')).status).toBe(200);
    expect((await release('cl-1')).status).toBe(404);
    expect(await cluster.exists(`${PREFIX}call:cl-1`)).toBe(0);
  });

  it('follows a pod through delete and recreate (watcher -> stream -> reconciler scripts), orphaning its call', async () => {
    const sid = 'cl-lifecycle';
    const given = await allocate(sid);
    expect(given.status).toBe(200);
    const pod = String(given.body.pod_name);
    const oldUid = stack.sim.getPod(pod)?.metadata.uid;
    stack.sim.deletePod(pod);
    await waitFor(async () => (await cluster.exists(`${PREFIX}call:${sid}`)) === 0, { timeoutMs: 15000, what: `${sid} orphaned` });
    await waitFor(async () => stack.sim.getPod(pod)?.metadata.uid !== oldUid && stack.sim.isReady(pod) && (await availablePods()).has(pod), {
      timeoutMs: 15000,
      what: `${pod} back with a new UID and allocatable`,
    });
    const events = await cluster.xrange(`${PREFIX}stream:calls`, '-', '+');
    expect(events.some(([, fields]) => fields.includes('call.orphaned') && fields.includes(sid))).toBe(true);
  });

  it('runs BullMQ jobs from the admin enqueue on the hash-tagged queue', async () => {
    const enqueued = await post('/api/v1/admin/reconcile', {});
    expect(enqueued.status).toBe(202);
    const jobId = String(enqueued.body.job_id);
    await waitFor(async () => Boolean(await cluster.hget(`${PREFIX}bull:reconciler:${jobId}`, 'finishedOn')), { timeoutMs: 15000, what: `job ${jobId} finished` });
    expect(await cluster.hget(`${PREFIX}bull:reconciler:${jobId}`, 'failedReason')).toBeNull();
  });

  it('keeps the invariants and every key on the one primary that owns the {voice} slot', async () => {
    const sids = ['cl-a', 'cl-b', 'cl-c'];
    for (const sid of sids) expect((await allocate(sid)).status).toBe(200);
    expect(await invariants()).toEqual({ ok: true, violations: [] });
    for (const sid of sids) expect((await release(sid)).status).toBe(200);
    expect(await invariants()).toEqual({ ok: true, violations: [] });

    const owner = nodes.ownerOf(`${PREFIX}epoch`);
    for (const node of nodes.nodes) {
      const client = new Redis(node.url, { maxRetriesPerRequest: 1 });
      try {
        const keys = await client.dbsize();
        if (node.port === owner) expect(keys).toBeGreaterThan(10);
        else expect({ port: node.port, keys }).toEqual({ port: node.port, keys: 0 });
      } finally {
        await client.quit();
      }
    }
  });
});
