import { mkdtempSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { SimCluster } from '@smart-router/sim';
import { PoolFixture, RedisServer, createPoolFixture, snapshotState, uniquePrefix } from '@smart-router/testing';
import { EnvReader } from '@smart-router/config';
import { readAllocationApiConfig } from './allocation-api.config';
import { bootstrap } from './main';

const PODS = ['voice-agent-0', 'voice-agent-1'];

/**
 * SPEC 10.1: a TokenReview authenticates any pod-bound token of the cluster. allocation-api
 * takes an agent identity only from a ServiceAccount of AGENT_NAMESPACE whose pod UID is the
 * one the watcher recorded, and never reviews a token on a route no agent may call. Real
 * redis-server, the real @kubernetes/client-node against the simulated API (tools/sim).
 */
describe('allocation API: which agent identities count (namespace, pod UID, route)', () => {
  let dir: string;
  let server: RedisServer;
  let cluster: SimCluster;
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  let base: string;
  let sequence = 0;

  /** Records each pod with the UID the simulated cluster gave it, as pod-watcher and the reconciler would. */
  const recordPod = (name: string, uid: string) =>
    pool.scripts.upsertPod({ name, uid, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sr-agent-identity-'));
    const kubeconfig = join(dir, 'kubeconfig');
    server = await RedisServer.start();
    cluster = await SimCluster.start({ replicas: PODS.length, kubeconfigPath: kubeconfig, timings: { readyDelayMs: 10, terminationDelayMs: 10, recreateDelayMs: 10 } });
    pool = await createPoolFixture({ url: server.url, prefix: uniquePrefix('agentid'), pods: PODS });
    for (const pod of PODS) await recordPod(pod, cluster.getPod(pod)!.metadata.uid);
    app = await bootstrap({
      REDIS_URL: server.url, REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', VOICE_AGENT_BASE_URL: 'wss://buddy.example.test',
      API_TOKENS: 'dispatch-all', AGENT_TOKEN_AUDIENCE: 'smart-router', AGENT_TOKEN_CACHE_SECONDS: '0', KUBECONFIG: kubeconfig,
    });
    const address = app.getHttpServer().address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(async () => {
    server?.resume();
    await app?.close();
    await pool?.close();
    await cluster?.stop();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = async (path: string, body: unknown, token: string) => {
    const response = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const liveCall = async () => {
    sequence += 1;
    const sid = `agentid-${sequence}`;
    const answer = await post('/api/v1/allocate', { call_sid: sid }, 'dispatch-all');
    expect(answer.status).toBe(200);
    return { sid, pod: answer.body.pod_name as string };
  };
  const unauthorized = { status: 401, body: { error: expect.any(String), code: 'UNAUTHORIZED' } };
  const metric = async (pattern: RegExp) => Number(pattern.exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? 0);

  it('a same-named pod of another namespace (even with the same UID) is 401 on connected and release, and the call is untouched', async () => {
    const call = await liveCall();
    const uid = cluster.getPod(call.pod)!.metadata.uid;
    const before = await snapshotState(pool);
    for (const token of [cluster.podToken(call.pod, { namespace: 'intruders' }), cluster.podToken(call.pod, { namespace: 'intruders', podUid: uid })]) {
      expect(await post('/api/v1/connected', { call_sid: call.sid }, token)).toEqual(unauthorized);
      expect(await post('/api/v1/release', { call_sid: call.sid, reason: 'hijack' }, token)).toEqual(unauthorized);
      expect(await post('/api/v1/heartbeat', { pod_name: call.pod, calls: [] }, token)).toEqual(unauthorized);
    }
    expect(await snapshotState(pool)).toEqual(before);
    // The real pod's own token still works.
    const own = cluster.podToken(call.pod);
    expect(await post('/api/v1/connected', { call_sid: call.sid }, own)).toMatchObject({ status: 200, body: { pod_name: call.pod, state: 'connected' } });
    expect(await post('/api/v1/release', { call_sid: call.sid }, own)).toMatchObject({ status: 200 });
  });

  it('a token whose pod UID is not the recorded one (the pod was replaced) is 401, changing nothing', async () => {
    const pod = PODS[1];
    const token = cluster.podToken(pod);
    // The watcher has recorded a new incarnation of the name; the token is of the one before.
    const replaced = randomUUID();
    await recordPod(pod, replaced);
    const before = await snapshotState(pool);
    expect(await post('/api/v1/release', { call_sid: 'agentid-none' }, token)).toEqual(unauthorized);
    expect(await post('/api/v1/heartbeat', { pod_name: pod, calls: [] }, token)).toEqual(unauthorized);
    expect(await snapshotState(pool)).toEqual(before);
    // Once the record names the pod the token is bound to, it is that pod again (CALL_NOT_FOUND: authenticated, no such call).
    await recordPod(pod, cluster.getPod(pod)!.metadata.uid);
    expect(await post('/api/v1/release', { call_sid: 'agentid-none' }, cluster.podToken(pod))).toMatchObject({ status: 404, body: { code: 'CALL_NOT_FOUND' } });
  });

  it('100 JWT-shaped garbage tokens on /api/v1/allocate are 401 with 0 TokenReviews; an agent\'s own token there is 403 FORBIDDEN, unreviewed', async () => {
    const before = cluster.state.tokenReviews;
    const segment = (value: string) => Buffer.from(value).toString('base64url');
    const answers = await Promise.all(Array.from({ length: 100 }, (_, index) =>
      post('/api/v1/allocate', { call_sid: `flood-${index}` }, `${segment('{"alg":"RS256"}')}.${segment(`{"n":${index}}`)}.${segment(randomUUID())}`)));
    for (const answer of answers) expect(answer).toEqual(unauthorized);
    expect(await post('/api/v1/allocate', { call_sid: 'agent-alloc' }, cluster.podToken(PODS[0]))).toEqual({ status: 403, body: { error: expect.any(String), code: 'FORBIDDEN' } });
    expect(cluster.state.tokenReviews).toBe(before);
    expect(await pool.redis.exists(pool.keys.call('agent-alloc'), pool.keys.call('flood-0'))).toBe(0);
  });

  it('the pod record unreadable (Redis hung) is 503 AUTH_UNAVAILABLE, counted, not a cached refusal', async () => {
    const token = cluster.podToken(PODS[0]);
    server.pause();
    try {
      expect(await post('/api/v1/release', { call_sid: 'agentid-none' }, token)).toEqual({ status: 503, body: { error: expect.any(String), code: 'AUTH_UNAVAILABLE' } });
    } finally {
      server.resume();
    }
    expect(await metric(/smart_router_redis_errors_total\{[^}]*operation="agent_pod_uid"[^}]*\} (\d+)/)).toBe(1);
    expect(await post('/api/v1/release', { call_sid: 'agentid-none' }, token)).toMatchObject({ status: 404, body: { code: 'CALL_NOT_FOUND' } });
  });
});

describe('AGENT_NAMESPACE and AGENT_SERVICE_ACCOUNTS', () => {
  const read = (env: Record<string, string>) => readAllocationApiConfig(new EnvReader({ API_TOKENS: 'x', ...env }));

  it('default to the voice agents\' namespace (voice-system, as NAMESPACE of pod-watcher) and any ServiceAccount of it', () => {
    expect(read({})).toMatchObject({ agentNamespace: 'voice-system', agentServiceAccounts: [] });
    expect(read({ AGENT_NAMESPACE: 'agents', AGENT_SERVICE_ACCOUNTS: 'voice-agent, voice-agent-v2' })).toMatchObject({ agentNamespace: 'agents', agentServiceAccounts: ['voice-agent', 'voice-agent-v2'] });
  });

  it.each([
    ['AGENT_NAMESPACE', { AGENT_NAMESPACE: 'Voice_System' }],
    ['AGENT_NAMESPACE', { AGENT_NAMESPACE: 'a:b' }],
    ['AGENT_SERVICE_ACCOUNTS', { AGENT_SERVICE_ACCOUNTS: 'voice-agent,system:serviceaccount:x:y' }],
  ])('a bad value stops the app naming %s', (variable, env) => {
    expect(() => read(env)).toThrow(expect.objectContaining({ variable }));
  });
});
