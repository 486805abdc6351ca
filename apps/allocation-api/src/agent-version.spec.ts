import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { RolloutScripts } from '@smart-router/redis-scripts';
import { bootstrap } from './main';

/**
 * POST /api/v1/allocate under a version split (SPEC 12): the answer says which
 * agent version serves the call, and a "caller" keeps its version while the
 * split is unchanged; a bad caller is a 400 that allocates nothing.
 */
describe('allocate with versioned agent fleets', () => {
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  let base: string;
  const post = async (path: string, body: unknown) => {
    const response = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    // Standard pods: voice-agent-1 and -3 run v1, voice-agent-4 runs v2.
    for (const [name, version] of [['voice-agent-1', 'v1'], ['voice-agent-3', 'v1'], ['voice-agent-4', 'v2']]) {
      await pool.scripts.upsertPod({ name, uid: pool.uids.get(name)!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version });
    }
    app = await bootstrap({ REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true' });
    const address = app.getHttpServer().address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterEach(async () => {
    await app.close();
    await pool.close();
  });

  it('answers agent_version with no rollout too, the same on a repeated allocate', async () => {
    const first = await post('/api/v1/allocate', { call_sid: 'av-1' });
    expect(first.status).toBe(200);
    expect(['v1', 'v2']).toContain(first.body.agent_version);
    expect((await post('/api/v1/allocate', { call_sid: 'av-1' })).body).toMatchObject({ was_existing: true, agent_version: first.body.agent_version });
  });

  it('a sticky caller gets the same version on every call while the split is unchanged', async () => {
    await new RolloutScripts(pool.redis, pool.keys, 1000).set({ targets: [{ version: 'v1', percent: 50 }, { version: 'v2', percent: 50 }], assignment: 'sticky_by_caller', guardrail: null }, 'test');
    for (const caller of ['+15550100', '+15550101', '+15550102', '+15550103']) {
      const versions = new Set<unknown>();
      for (let index = 0; index < 4; index += 1) {
        const answer = await post('/api/v1/allocate', { call_sid: `st-${caller.slice(1)}-${index}`, caller });
        expect({ status: answer.status, body: answer.body }).toMatchObject({ status: 200 });
        versions.add(answer.body.agent_version);
        await post('/api/v1/release', { call_sid: `st-${caller.slice(1)}-${index}`, reason: 'done' });
      }
      expect(versions.size).toBe(1);
    }
  });

  it('refuses a caller that is not a string of at most 256 characters, allocating nothing', async () => {
    for (const caller of [42, 'x'.repeat(257), { number: '+1555' }]) {
      expect(await post('/api/v1/allocate', { call_sid: 'bad-caller', caller })).toMatchObject({ status: 400, body: { code: 'INVALID_FIELD' } });
    }
    expect(await pool.redis.exists(pool.keys.call('bad-caller'))).toBe(0);
  });
});
