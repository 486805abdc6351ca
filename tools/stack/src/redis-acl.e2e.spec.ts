import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { ACL_APPS, AclUser } from '@smart-router/redis-keys';
import { jsonRequest, waitFor } from '@smart-router/testing';
import { APPS, FREE_PORTS, LocalStack } from './stack';

/**
 * SPEC 10.1 "Redis least privilege", end to end: Redis runs with the ACL
 * users of libs/redis-keys (no default user) and every built app connects as
 * its own user. The apps' whole paths (allocate, connect, release, a webhook
 * answer and its status callback, the shared wait queue, drain, merchant
 * config, a pod deleted and recreated through watcher -> stream -> reconciler,
 * a manual reconcile through BullMQ, a fleet scale up and down, the event log)
 * must work, and Redis's ACL LOG must show not one refused command; then the
 * attacks: each app's user against the pod stream, FLUSHALL/CONFIG/KEYS, and
 * keys outside its own.
 */

const ROOT = join(__dirname, '..', '..', '..');

let stack: LocalStack;
let ops: Redis;
const clients: Redis[] = [];

const request = jsonRequest;
const api = (path: string, body: unknown) => request(stack.url('allocation-api'), 'POST', path, body);
const admin = (method: string, path: string, body?: unknown) => request(stack.url('admin'), method, path, body);

function as(user: AclUser): Redis {
  const client = new Redis(stack.redisUrlFor(user), { maxRetriesPerRequest: 0, disableClientInfo: true });
  client.on('error', () => undefined);
  clients.push(client);
  return client;
}

/** Redis's own record of every command it refused for lack of permission. */
async function aclLog(): Promise<string[]> {
  const entries = (await ops.call('ACL', 'LOG', '128')) as unknown[][];
  return entries.map((entry) => {
    const field = (name: string) => String(entry[entry.indexOf(name) + 1]);
    return `${field('username')}: ${field('reason')} ${field('object')} (${field('context')})`;
  });
}

async function freePods(): Promise<string[]> {
  const status = (await admin('GET', '/api/v1/status')).body as { pools: Record<string, { available: string[] }> };
  return Object.values(status.pools).flatMap((pool) => pool.available).sort();
}

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-redis-acl-')),
    replicas: 2,
    redisAcl: true,
    simTimings: { readyDelayMs: 200 },
    env: {
      TIER_CONFIG: JSON.stringify({ standard: { type: 'exclusive', target: 2 } }),
      JOB_INTERVAL_SCALE: '0.05',
      ALLOW_UNAUTHENTICATED: 'true',
      REDIS_REPLICA_ACKS: '0',
    },
  });
  ops = as('ops');
  await waitFor(async () => (await freePods()).length === 2, { timeoutMs: 20000, what: 'both pods in their pool' });
}, 90000);

afterAll(async () => {
  for (const client of clients) client.disconnect();
  await stack?.stop();
}, 60000);

describe('every app under its own Redis ACL user', () => {
  it('gives each app its own user, and no connection is the default user', async () => {
    const connected = String(await ops.call('CLIENT', 'LIST')).split('\n').filter(Boolean).map((line) => /user=(\S+)/.exec(line)![1]);
    for (const app of ACL_APPS) expect(connected).toContain(app);
    expect(connected).not.toContain('default');
  });

  it('runs allocate, connect, webhooks, the wait queue, drain, pod replacement, reconcile and fleet scaling with no refused command', async () => {
    // Allocate, connect, release (allocation-api).
    const first = await api('/api/v1/allocate', { call_sid: 'acl-1' });
    expect(first.status).toBe(200);
    expect((await api('/api/v1/connected', { call_sid: 'acl-1' })).status).toBe(200);

    // A provider answer and its final status callback (webhooks): Exotel's JSON, open mode.
    const answer = await request(stack.url('webhooks'), 'POST', '/api/v1/exotel/allocate', { CallSid: 'acl-2', merchant_id: '' });
    expect(answer.status).toBe(200);
    expect(String(answer.body.url)).toContain('/ws/pod/');

    // Both pods busy: a waiting request gets the pod the webhook's call frees (subscribe + publish on wait:wake).
    const waiting = api('/api/v1/allocate', { call_sid: 'acl-3', wait_ms: 8000 });
    let settled: unknown = null;
    void waiting.then((answer) => (settled = answer));
    await waitFor(async () => Number((await admin('GET', '/api/v1/status')).body.waiting) === 1, { timeoutMs: 5000, what: 'one waiting request' }).catch(async (error) => {
      throw new Error(`${error}: ${JSON.stringify(settled)} ${JSON.stringify((await admin('GET', '/api/v1/status')).body)} ${JSON.stringify(await aclLog())}`);
    });
    expect((await request(stack.url('webhooks'), 'POST', '/api/v1/exotel/status', { CallSid: 'acl-2', Status: 'completed' })).status).toBe(200);
    expect((await waiting).status).toBe(200);

    // Operator paths (admin): drain, undrain, merchant config, tiers, pods, events.
    const pod = String(first.body.pod_name);
    expect((await admin('POST', '/api/v1/drain', { pod_name: pod })).status).toBe(200);
    expect((await admin('POST', '/api/v1/undrain', { pod_name: pod })).status).toBe(200);
    expect((await admin('PUT', '/api/v1/admin/merchants/acme', { tier: 'standard', max_calls: 5 })).status).toBe(200);
    expect((await admin('GET', '/api/v1/admin/tiers')).status).toBe(200);
    expect((await admin('GET', `/api/v1/pod/${pod}`)).status).toBe(200);
    expect((await admin('GET', '/api/v1/admin/pods')).status).toBe(200);
    const events = (await admin('GET', '/api/v1/admin/events?limit=1000')).body as { events: { stream: string }[] };
    expect(events.events.some((event) => event.stream === 'pods')).toBe(true);

    // The pod holding acl-1 is deleted: watcher -> stream:pods -> reconciler ends its call; it comes back empty.
    const uid = stack.sim.getPod(pod)!.metadata.uid;
    stack.sim.deletePod(pod, 0);
    await waitFor(async () => (await api('/api/v1/release', { call_sid: 'acl-1' })).status === 404, { timeoutMs: 15000, what: 'the deleted pod\'s call to end' });
    await waitFor(() => Boolean(stack.sim.getPod(pod) && stack.sim.getPod(pod)!.metadata.uid !== uid && stack.sim.isReady(pod)), { timeoutMs: 15000, what: 'the pod back with a new UID' });
    expect((await api('/api/v1/release', { call_sid: 'acl-3' })).status).toBe(200);
    await waitFor(async () => (await freePods()).length === 2, { timeoutMs: 15000, what: 'both pods free again' });

    // Versioned fleets (SPEC 12): admin writes rollout revisions; allocate and release count per version under them.
    expect((await admin('PUT', '/api/v1/admin/rollout', { targets: [{ version: '', percent: 100 }] })).status).toBe(200);
    expect((await api('/api/v1/allocate', { call_sid: 'acl-4', caller: '+15550100' })).status).toBe(200);
    expect((await api('/api/v1/release', { call_sid: 'acl-4' })).status).toBe(200);
    expect((await admin('POST', '/api/v1/admin/rollout/promote', { version: '' })).status).toBe(200);
    expect((await admin('POST', '/api/v1/admin/rollout/rollback')).status).toBe(200);
    expect((await admin('GET', '/api/v1/admin/rollout')).body).toMatchObject({ revision: 3, versions: { '': { allocations: 1 } } });

    // A manual reconcile is a BullMQ job admin enqueues and the reconciler runs.
    expect((await admin('POST', '/api/v1/admin/reconcile')).status).toBeLessThan(300);
    // Fleet: up to 3 pods and back to 2, through the reconciler's fleet step.
    expect((await admin('POST', '/api/v1/admin/fleet/scale', { replicas: 3 })).status).toBe(202);
    await waitFor(async () => (await freePods()).length === 3, { timeoutMs: 40000, what: 'a third pod in its pool' });
    expect((await admin('POST', '/api/v1/admin/fleet/scale', { replicas: 2 })).status).toBe(202);
    await waitFor(async () => stack.sim.listPods().length === 2 && (await freePods()).length === 2, { timeoutMs: 40000, what: 'the fleet back at 2 pods' });
    const reconciled = await waitFor(async () => (await ops.hget(stack.keys.lastReconcile(), 'reason')) ?? null, { timeoutMs: 10000, what: 'a full reconcile recorded' });
    expect(reconciled).toBeTruthy();

    expect((await admin('GET', '/api/v1/admin/invariants')).body).toEqual({ ok: true, violations: [] });
    for (const app of APPS) expect((await fetch(`${stack.url(app)}/ready`)).status).toBe(200);
    // Not one command of any app was refused, and no app logged a NOPERM.
    expect(await aclLog()).toEqual([]);
    const logDir = join(stack.kubeconfigPath, '..');
    for (const app of APPS) expect({ app, noperm: /NOPERM|no permissions/i.test(readFileSync(join(logDir, `${app}.log`), 'utf8')) }).toEqual({ app, noperm: false });
  }, 120000);

  it('refuses the attacks with NOPERM and logs them', async () => {
    await ops.call('ACL', 'LOG', 'RESET');
    // Only pod-watcher may add to the pod event stream: a forged "Ready pod" from webhooks is refused.
    await expect(as('webhooks').xadd(stack.keys.podStream(), '*', 'name', 'voice-agent-9', 'ready', '1')).rejects.toThrow(/NOPERM/);
    await expect(as('reconciler').xadd(stack.keys.podStream(), '*', 'name', 'voice-agent-9')).rejects.toThrow(/NOPERM/);
    for (const app of ACL_APPS) {
      const client = as(app);
      await expect(client.flushall()).rejects.toThrow(/NOPERM/);
      await expect(client.call('CONFIG', 'SET', 'appendonly', 'no')).rejects.toThrow(/NOPERM/);
      await expect(client.keys('*')).rejects.toThrow(/NOPERM/);
      await expect(client.set('not-our-prefix:x', '1')).rejects.toThrow(/NOPERM/);
    }
    const log = await aclLog();
    expect(log).toEqual(expect.arrayContaining(['webhooks: key voice:stream:pods (toplevel)', 'admin: command flushall (toplevel)', 'pod-watcher: command set (toplevel)', 'admin: key not-our-prefix:x (toplevel)']));
    // Nothing was written: the stream holds only the watcher's events.
    const forged = (await ops.xrange(stack.keys.podStream(), '-', '+')).filter(([, fields]) => fields.includes('voice-agent-9'));
    expect(forged).toEqual([]);
    expect(await ops.exists('not-our-prefix:x')).toBe(0);
  });
});
