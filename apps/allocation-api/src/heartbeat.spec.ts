import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { ApiError } from '@smart-router/http';
import { PoolMetrics } from '@smart-router/pool-state';
import { LivenessScripts } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';
import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState } from '@smart-router/testing';
import { HeartbeatService } from './heartbeat.service';
import { bootstrap } from './main';

// SPEC 11: POST /api/v1/heartbeat on allocation-api; the reconciler's job decides liveness.

function baseOf(app: NestFastifyApplication): string {
  const address = app.getHttpServer().address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

describe('POST /api/v1/heartbeat', () => {
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  beforeAll(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    app = await bootstrap({
      REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error',
      ALLOW_UNAUTHENTICATED: 'true',
    });
  });
  afterAll(async () => {
    await app.close();
    await pool.close();
  });

  const post = async (body: unknown, headers: Record<string, string> = {}) => {
    const response = await fetch(`${baseOf(app)}/api/v1/heartbeat`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  it('enrolls the pod with its calls and media counters, and tells the agent which calls it no longer has', async () => {
    const allocated = await pool.scripts.allocate({ callSid: 'hb-call-1', merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
    if (!allocated.ok) throw new Error('no pod');
    const pod = allocated.allocation.podName;
    const answer = await post({ pod_name: pod, calls: [
      { call_sid: 'hb-call-1', allocation_id: allocated.allocation.allocationId, media_in: 42, media_out: 40 },
      { call_sid: 'hb-ended', allocation_id: '7', media_in: 1, media_out: 1 },
    ] });
    expect(answer).toEqual({ status: 200, body: { success: true, pod_name: pod, liveness: 'live', unknown_calls: ['hb-ended'], at: expect.any(Number) } });
    expect(await pool.redis.zscore(pool.keys.heartbeats(), pod)).toBe(String(answer.body.at));
    expect(await pool.redis.hmget(pool.keys.call('hb-call-1'), 'media_in', 'media_out')).toEqual(['42', '40']);
    expect(await (await fetch(`${baseOf(app)}/metrics`)).text()).toMatch(/smart_router_heartbeats_total\{[^}]*result="live"[^}]*\} 1/);
  });

  it.each([
    ['missing pod_name', { calls: [] }, 'POD_NAME_REQUIRED'],
    ['pod_name not a DNS label', { pod_name: 'Voice_Agent', calls: [] }, 'INVALID_POD_NAME'],
    ['missing calls', { pod_name: 'voice-agent-1' }, 'INVALID_FIELD'],
    ['negative media counter', { pod_name: 'voice-agent-1', calls: [{ call_sid: 'x', media_in: -1, media_out: 0 }] }, 'INVALID_FIELD'],
    ['fractional media counter', { pod_name: 'voice-agent-1', calls: [{ call_sid: 'x', media_in: 1.5, media_out: 0 }] }, 'INVALID_FIELD'],
    ['bad call_sid in calls', { pod_name: 'voice-agent-1', calls: [{ call_sid: 'a b', media_in: 1, media_out: 0 }] }, 'INVALID_FIELD'],
    ['bad allocation_id', { pod_name: 'voice-agent-1', calls: [{ call_sid: 'x', allocation_id: 0, media_in: 1, media_out: 0 }] }, 'INVALID_FIELD'],
    ['too many calls', { pod_name: 'voice-agent-1', calls: Array.from({ length: 201 }, (_, i) => ({ call_sid: `c${i}`, media_in: 0, media_out: 0 })) }, 'INVALID_FIELD'],
  ])('refuses %s with a 400 that records nothing', async (_reason, body, code) => {
    const before = await snapshotState(pool);
    const answer = await post(body);
    expect(answer).toEqual({ status: 400, body: { error: expect.any(String), code } });
    expect(await snapshotState(pool)).toEqual(before);
  });

  it('answers 404 POD_NOT_FOUND for a pod the router does not know, recording nothing', async () => {
    const before = await snapshotState(pool);
    expect(await post({ pod_name: 'voice-agent-99', calls: [] })).toEqual({ status: 404, body: { error: 'pod not found', code: 'POD_NOT_FOUND' } });
    expect(await snapshotState(pool)).toEqual(before);
  });
});

describe('POST /api/v1/heartbeat with dispatcher tokens', () => {
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  beforeAll(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    app = await bootstrap({
      REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error',
      API_TOKENS: 'dispatch-all,dispatch-acme@acme',
    });
  });
  afterAll(async () => {
    await app.close();
    await pool.close();
  });

  const post = async (headers: Record<string, string>) => {
    const response = await fetch(`${baseOf(app)}/api/v1/heartbeat`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ pod_name: 'voice-agent-1', calls: [] }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  it('an unscoped token may report any pod; no token is 401; a merchant-scoped token is 403 FORBIDDEN and records nothing', async () => {
    const before = await snapshotState(pool);
    expect((await post({})).status).toBe(401);
    expect(await post({ authorization: 'Bearer dispatch-acme' })).toEqual({ status: 403, body: { error: expect.any(String), code: 'FORBIDDEN' } });
    expect(await snapshotState(pool)).toEqual(before);
    expect((await post({ authorization: 'Bearer dispatch-all' })).status).toBe(200);
    expect(await pool.redis.zscore(pool.keys.heartbeats(), 'voice-agent-1')).not.toBeNull();
  });
});

describe('HeartbeatService scope (a voice agent reports for its own pod only)', () => {
  let pool: PoolFixture;
  let service: HeartbeatService;
  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    const telemetry = Telemetry.start('heartbeat-spec');
    service = new HeartbeatService(new LivenessScripts(pool.redis, pool.keys, 1000), new PoolMetrics(telemetry), telemetry);
  });
  afterEach(() => pool.close());

  it("another pod's heartbeat from an agent identity is 403 NOT_YOUR_CALL and records nothing; its own is recorded", async () => {
    const before = await snapshotState(pool);
    const refused = await service.record({ pod_name: 'voice-agent-2', calls: [] }, { podName: 'voice-agent-1' }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused).toMatchObject({ status: 403, code: 'NOT_YOUR_CALL' });
    expect(await snapshotState(pool)).toEqual(before);
    expect(await service.record({ pod_name: 'voice-agent-1', calls: [] }, { podName: 'voice-agent-1' })).toMatchObject({ success: true, liveness: 'live' });
  });
});
