import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { LivenessScripts } from '@smart-router/redis-scripts';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { bootstrap } from './main';

// SPEC 11: voice-agent liveness in status, the pod view and the pod list.

describe('admin shows voice-agent liveness', () => {
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  let base: string;
  beforeAll(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    app = await bootstrap({ REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true' });
    const address = app.getHttpServer().address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const liveness = new LivenessScripts(pool.redis, pool.keys, 1000);
    for (const pod of ['voice-agent-1', 'voice-agent-3', 'voice-agent-4']) await liveness.recordHeartbeat(pod, []);
    const [seconds] = await pool.redis.time();
    await pool.redis.zadd(pool.keys.heartbeats(), Number(seconds) * 1000 - 4500, 'voice-agent-3', Number(seconds) * 1000 - 7000, 'voice-agent-4');
    await liveness.checkLiveness({ suspectMs: 4000, deadMs: 6000 });
  });
  afterAll(async () => {
    await app.close();
    await pool.close();
  });
  const get = async (path: string) => (await (await fetch(base + path)).json()) as Record<string, unknown>;

  it('status lists suspect and dead pods', async () => {
    expect((await get('/api/v1/status')).liveness).toEqual({ suspect: ['voice-agent-3'], dead: ['voice-agent-4'] });
  });

  it('the pod view says live, suspect, dead or unknown with the last heartbeat and its age', async () => {
    expect(await get('/api/v1/pod/voice-agent-1')).toMatchObject({ liveness: 'live', last_heartbeat_at: expect.any(Number), last_heartbeat_age_ms: expect.any(Number) });
    expect(await get('/api/v1/pod/voice-agent-3')).toMatchObject({ liveness: 'suspect' });
    expect(await get('/api/v1/pod/voice-agent-4')).toMatchObject({ liveness: 'dead' });
    expect(await get('/api/v1/pod/voice-agent-0')).toMatchObject({ liveness: 'unknown', last_heartbeat_at: null, last_heartbeat_age_ms: null });
  });

  it('the pod list carries each pod liveness (the dashboard state column)', async () => {
    const { pods } = (await get('/api/v1/admin/pods')) as { pods: { pod_name: string; liveness: string }[] };
    expect(Object.fromEntries(pods.map((pod) => [pod.pod_name, pod.liveness]))).toEqual({
      'voice-agent-0': 'unknown', 'voice-agent-1': 'live', 'voice-agent-2': 'unknown', 'voice-agent-3': 'suspect', 'voice-agent-4': 'dead',
    });
  });
});
