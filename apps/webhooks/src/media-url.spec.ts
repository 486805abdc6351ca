import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { MediaUrlSigner } from '@smart-router/allocation';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { bootstrap } from './main';

/**
 * SPEC 10.1 in the provider answers: with MEDIA_URL_SECRET set, the Twilio
 * TwiML, the Plivo XML and the Exotel JSON carry the signed ws_url, and a
 * provider's retry of the answer webhook gets the very same document (SPEC 5).
 */

const SECRET = 'webhooks-media-spec-secret-01';
const BASE = 'wss://buddy.example.test';

describe('provider answers with signed media URLs', () => {
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  let base: string;

  beforeAll(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    app = await bootstrap({
      REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error',
      VOICE_AGENT_BASE_URL: BASE, WEBHOOK_WAIT_MS: '0', MEDIA_URL_SECRET: SECRET, ALLOW_UNAUTHENTICATED: 'true',
    });
    const address = app.getHttpServer().address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(async () => {
    await app.close();
    await pool.close();
  });

  const answer = async (provider: 'twilio' | 'plivo' | 'exotel', callSid: string): Promise<string> => {
    const body = provider === 'exotel'
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ CallSid: callSid }) }
      : { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(provider === 'twilio' ? { CallSid: callSid, From: '+15550001', To: '+15550002' } : { CallUUID: callSid, From: '14155550100', To: '14155550199', Direction: 'inbound' }).toString() };
    const response = await fetch(`${base}/api/v1/${provider}/allocate`, { method: 'POST', ...body });
    expect(response.status).toBe(200);
    return response.text();
  };
  const urlOf = (document: string) => (/<Stream url="([^"]+)"/.exec(document)?.[1] ?? /<Stream[^>]*>([^<]+)<\/Stream>/.exec(document)?.[1] ?? (JSON.parse(document) as { url: string }).url).replace(/&amp;/g, '&');

  it.each(['twilio', 'plivo', 'exotel'] as const)('%s: the answer carries a URL signed for the call, and a retry gets the same document', async (provider) => {
    const callSid = `media-${provider}-1`;
    const first = await answer(provider, callSid);
    const url = urlOf(first);
    const record = await pool.redis.hmget(pool.keys.call(callSid), 'pod_name', 'allocation_id');
    expect(url).toMatch(new RegExp(`^${BASE}/ws/pod/${record[0]}/${callSid}/${record[1]}/\\d+/[A-Za-z0-9_-]{43}$`));
    expect(new MediaUrlSigner([SECRET], 120).verify(url.slice(BASE.length), Date.now())).toMatchObject({ ok: true, target: { podName: record[0], callSid } });
    expect(await answer(provider, callSid)).toBe(first);
  });
});
