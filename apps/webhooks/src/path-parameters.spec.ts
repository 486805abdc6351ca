import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { bootstrap } from './main';

// Issue 14: the webhooks' path parameters ({provider}, {template}) at 1, 128 and
// 129 characters. The template is only recorded (capped at 128 characters), so a
// longer one is still answered; a provider we do not know is our 404.

describe('webhook path parameters', () => {
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  let base: string;
  const exotel = async (path: string, callSid: string) => {
    const response = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ CallSid: callSid }) });
    return { status: response.status, text: await response.text() };
  };

  beforeAll(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    app = await bootstrap({ REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true', VOICE_AGENT_BASE_URL: 'wss://buddy.example.test' });
    const address = app.getHttpServer().address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(async () => {
    await app.close();
    await pool.close();
  });

  it.each([1, 128, 129])('a template of %i characters is answered and recorded (at most 128 characters)', async (length) => {
    const callSid = `template-${length}`;
    const answer = await exotel(`/agent/voice/breeze-buddy/exotel/callback/${'t'.repeat(length)}`, callSid);
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.text)).toEqual({ url: expect.stringContaining(`/${callSid}`) });
    const metadata = JSON.parse((await pool.redis.hget(pool.keys.call(callSid), 'metadata')) ?? '{}') as { template?: string };
    expect(metadata.template).toBe('t'.repeat(Math.min(length, 128)));
  });

  it.each([1, 128, 129])('an unknown provider of %i characters is our 404 and writes nothing', async (length) => {
    const before = await pool.redis.keys(`${pool.keys.prefix}call:*`);
    const answer = await exotel(`/agent/voice/breeze-buddy/${'p'.repeat(length)}/callback/t1`, `unknown-provider-${length}`);
    expect(answer.status).toBe(404);
    expect(JSON.parse(answer.text)).toEqual({ error: 'route not found', code: 'NOT_FOUND' });
    expect(await pool.redis.keys(`${pool.keys.prefix}call:*`)).toEqual(before);
  });

  it('a call id of 128 characters is allocated; 129 is our 400 and writes nothing', async () => {
    expect((await exotel('/api/v1/exotel/answer/t1', 'c'.repeat(128))).status).toBe(200);
    const refused = await exotel('/api/v1/exotel/answer/t1', 'd'.repeat(129));
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.text)).toMatchObject({ code: 'INVALID_CALL_SID' });
    expect(await pool.redis.exists(pool.keys.call('d'.repeat(129)))).toBe(0);
  });
});
