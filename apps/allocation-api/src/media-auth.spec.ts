import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { MediaUrlSigner } from '@smart-router/allocation';
import { PoolFixture, RedisServer, createPoolFixture, sharedRedisUrl, snapshotState, uniquePrefix, waitFor } from '@smart-router/testing';
import { bootstrap } from './main';

/**
 * SPEC 10.1 "Media URLs are credentials": allocation-api signs every ws_url
 * and answers the edge's question (GET /internal/media-auth, the original URI
 * in X-Original-URI) against the real call record in Redis.
 */

const SECRET = 'media-auth-spec-secret-0001';
const BASE = 'wss://buddy.example.test';

async function startApi(redisUrl: string, prefix: string, extra: Record<string, string> = {}) {
  const app: NestFastifyApplication = await bootstrap({
    REDIS_URL: redisUrl, REDIS_PREFIX: prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', VOICE_AGENT_BASE_URL: BASE, ALLOW_UNAUTHENTICATED: 'true', ...extra,
  });
  const address = app.getHttpServer().address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const post = async (path: string, body: unknown) => {
    const response = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  /** The edge's check of a ws_url (or of a path); the answer's status and body. */
  const check = async (url: string | null) => {
    const headers: Record<string, string> = url === null ? {} : { 'x-original-uri': url.startsWith(BASE) ? url.slice(BASE.length) : url };
    const response = await fetch(`${base}/internal/media-auth`, { headers });
    const text = await response.text();
    return { status: response.status, body: text ? (JSON.parse(text) as unknown) : null };
  };
  const allocate = async (callSid: string) => {
    const answer = await post('/api/v1/allocate', { call_sid: callSid });
    if (answer.status !== 200) throw new Error(`allocate ${callSid}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body as { pod_name: string; ws_url: string; allocation_id: number };
  };
  return { app, base, post, check, allocate };
}

const REFUSED = { status: 403, body: { error: 'media URL refused', code: 'MEDIA_URL_REFUSED' } };
const ALLOWED = { status: 204, body: null };

describe('media URLs with MEDIA_URL_SECRET set', () => {
  let pool: PoolFixture;
  let api: Awaited<ReturnType<typeof startApi>>;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    api = await startApi(sharedRedisUrl(), pool.keys.prefix, { MEDIA_URL_SECRET: SECRET });
  });
  afterEach(async () => {
    await api.app.close();
    await pool.close();
  });

  it('signs ws_url in the path; a repeated allocate answers the same URL; the edge check allows it and changes nothing', async () => {
    const first = await api.allocate('media-1');
    const path = new URL(first.ws_url).pathname;
    expect(first.ws_url).toMatch(new RegExp(`^${BASE}/ws/pod/${first.pod_name}/media-1/${first.allocation_id}/\\d+/[A-Za-z0-9_-]{43}$`));
    const expiry = Number(path.split('/')[6]);
    const allocatedAt = Number(await pool.redis.hget(pool.keys.call('media-1'), 'allocated_at'));
    expect(expiry).toBe(Math.floor(allocatedAt / 1000) + 120);
    expect((await api.allocate('media-1')).ws_url).toBe(first.ws_url);

    const before = await snapshotState(pool);
    expect(await api.check(first.ws_url)).toEqual(ALLOWED);
    // A query string is not part of what is checked (nginx hands over $request_uri).
    expect(await api.check(`${path}?x=1`)).toEqual(ALLOWED);
    expect(await snapshotState(pool)).toEqual(before);
  });

  it('refuses a released call (a stolen URL), and the old URL of a call_sid allocated again', async () => {
    const first = await api.allocate('media-2');
    expect((await api.post('/api/v1/release', { call_sid: 'media-2' })).status).toBe(200);
    expect(await api.check(first.ws_url)).toEqual(REFUSED);

    const again = await api.allocate('media-2');
    expect(again.allocation_id).toBeGreaterThan(first.allocation_id);
    expect(await api.check(again.ws_url)).toEqual(ALLOWED);
    expect(await api.check(first.ws_url)).toEqual(REFUSED);
  });

  it('refuses a call moved to another pod, even with a valid signature for the old pod', async () => {
    const call = await api.allocate('media-3');
    const signer = new MediaUrlSigner([SECRET], 120);
    const expiry = Math.floor(Date.now() / 1000) + 60;
    const otherPod = call.pod_name === 'voice-agent-4' ? 'voice-agent-3' : 'voice-agent-4';
    // Correctly signed, but for a pod that does not hold the call.
    expect(await api.check(signer.path({ podName: otherPod, callSid: 'media-3', allocationId: call.allocation_id }, expiry))).toEqual(REFUSED);
    // The record now says another pod (a re-home): the URL issued for the first pod stops working.
    await pool.redis.hset(pool.keys.call('media-3'), 'pod_name', otherPod);
    expect(await api.check(call.ws_url)).toEqual(REFUSED);
    expect(await api.check(signer.path({ podName: otherPod, callSid: 'media-3', allocationId: call.allocation_id }, expiry))).toEqual(ALLOWED);
    // And a valid signature for another allocation_id of the same call is refused.
    expect(await api.check(signer.path({ podName: otherPod, callSid: 'media-3', allocationId: call.allocation_id + 1 }, expiry))).toEqual(REFUSED);
  });

  it('refuses a missing header, the unsigned seed form, a forged, truncated or other-secret signature', async () => {
    const call = await api.allocate('media-4');
    const path = new URL(call.ws_url).pathname;
    const signature = path.split('/').pop()!;
    const forged = signature.startsWith('A') ? `B${signature.slice(1)}` : `A${signature.slice(1)}`;
    const expiry = Number(path.split('/')[6]);
    const cases = {
      missing: null,
      empty: '',
      seed: `/ws/pod/${call.pod_name}/media-4`,
      forged: path.replace(signature, forged),
      truncated: path.slice(0, -1),
      'no signature': path.slice(0, path.lastIndexOf('/')),
      'other secret': new MediaUrlSigner(['some-other-secret-000001'], 120).path({ podName: call.pod_name, callSid: 'media-4', allocationId: call.allocation_id }, expiry),
      'later expiry': path.replace(`/${expiry}/`, `/${expiry + 3600}/`),
      'percent-encoded': path.replace('media-4', 'media%2D4'),
      'not a media path': '/api/v1/allocate',
    };
    for (const [name, uri] of Object.entries(cases)) expect({ name, answer: await api.check(uri) }).toEqual({ name, answer: REFUSED });
    expect(await api.check(call.ws_url)).toEqual(ALLOWED);
  });

  it('a request that waited for a pod (wait_ms) gets a signed URL counted from its hand-off, which passes', async () => {
    // Fill the default chain (standard x3, then the shared basic pod's 3 slots).
    const held: string[] = [];
    for (let index = 0; index < 6; index += 1) held.push((await api.allocate(`media-fill-${index}`)).ws_url);
    const waiting = api.post('/api/v1/allocate', { call_sid: 'media-waiter', wait_ms: 5000 });
    await waitFor(async () => (await pool.redis.zcard(pool.keys.waitQueue())) === 1, { what: 'the request to wait' });
    expect((await api.post('/api/v1/release', { call_sid: 'media-fill-0' })).status).toBe(200);
    const answer = await waiting;
    expect(answer.status).toBe(200);
    const url = answer.body.ws_url as string;
    const allocatedAt = Number(await pool.redis.hget(pool.keys.call('media-waiter'), 'allocated_at'));
    expect(Number(new URL(url).pathname.split('/')[6])).toBe(Math.floor(allocatedAt / 1000) + 120);
    expect(await api.check(url)).toEqual(ALLOWED);
    expect(await api.check(held[0])).toEqual(REFUSED);
  });

  it('refuses an expired URL (MEDIA_URL_TTL_SECONDS=1)', async () => {
    await api.app.close();
    api = await startApi(sharedRedisUrl(), pool.keys.prefix, { MEDIA_URL_SECRET: SECRET, MEDIA_URL_TTL_SECONDS: '1' });
    const call = await api.allocate('media-5');
    const expiry = Number(new URL(call.ws_url).pathname.split('/')[6]);
    await waitFor(() => Date.now() >= expiry * 1000, { timeoutMs: 3000, intervalMs: 50, what: 'the URL to expire' });
    expect(await api.check(call.ws_url)).toEqual(REFUSED);
    // A repeated allocate of the still-live call answers a URL that works again.
    const repeated = await api.allocate('media-5');
    expect(repeated.ws_url).not.toBe(call.ws_url);
    expect(await api.check(repeated.ws_url)).toEqual(ALLOWED);
  });

  it('rotation: a URL signed with the previous secret still passes while it is listed second', async () => {
    const call = await api.allocate('media-6');
    await api.app.close();
    api = await startApi(sharedRedisUrl(), pool.keys.prefix, { MEDIA_URL_SECRET: `media-auth-spec-secret-0002,${SECRET}` });
    expect(await api.check(call.ws_url)).toEqual(ALLOWED);
    const resigned = await api.allocate('media-6');
    expect(resigned.ws_url).not.toBe(call.ws_url);
    expect(await api.check(resigned.ws_url)).toEqual(ALLOWED);
    await api.app.close();
    api = await startApi(sharedRedisUrl(), pool.keys.prefix, { MEDIA_URL_SECRET: 'media-auth-spec-secret-0002' });
    expect(await api.check(call.ws_url)).toEqual(REFUSED);
    expect(await api.check(resigned.ws_url)).toEqual(ALLOWED);
  });
});

describe('media URLs without MEDIA_URL_SECRET (the seed format)', () => {
  let pool: PoolFixture;
  let api: Awaited<ReturnType<typeof startApi>>;

  beforeAll(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    api = await startApi(sharedRedisUrl(), pool.keys.prefix);
  });
  afterAll(async () => {
    await api.app.close();
    await pool.close();
  });

  it('answers the seed ws_url, which the edge check passes unchanged; a signed-looking path is refused', async () => {
    const call = await api.allocate('seed-1');
    expect(call.ws_url).toBe(`${BASE}/ws/pod/${call.pod_name}/seed-1`);
    expect(await api.check(call.ws_url)).toEqual(ALLOWED);
    expect(await api.check(`/ws/pod/${call.pod_name}/seed-1/1/1/abc`)).toEqual(REFUSED);
    expect(await api.check(null)).toEqual(REFUSED);
  });
});

describe('media URL configuration', () => {
  it.each([
    ['a secret shorter than 16 characters', { MEDIA_URL_SECRET: 'short' }, 'MEDIA_URL_SECRET'],
    ['a rotation list with a short entry', { MEDIA_URL_SECRET: `${SECRET},tiny` }, 'MEDIA_URL_SECRET'],
    ['a TTL of 0', { MEDIA_URL_SECRET: SECRET, MEDIA_URL_TTL_SECONDS: '0' }, 'MEDIA_URL_TTL_SECONDS'],
    ['a TTL that is not a number', { MEDIA_URL_SECRET: SECRET, MEDIA_URL_TTL_SECONDS: 'soon' }, 'MEDIA_URL_TTL_SECONDS'],
  ])('refuses to start with %s, naming the variable and never the secret', async (_name, env, variable) => {
    const failure = await startApi(sharedRedisUrl(), uniquePrefix('cfg'), env).then(async (api) => {
      await api.app.close();
      return null;
    }, (error: Error) => error);
    expect(failure?.message).toContain(variable);
    expect(failure?.message).not.toContain(SECRET);
  });
});

describe('the edge check when Redis fails', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(() => server.dispose());

  it('fails closed: 503 REDIS_UNAVAILABLE while Redis hangs, never a 204', async () => {
    const prefix = uniquePrefix('media-down');
    const pool = await createPoolFixture({ url: server.url, prefix });
    const api = await startApi(server.url, prefix, { MEDIA_URL_SECRET: SECRET });
    try {
      const call = await api.allocate('down-1');
      expect(await api.check(call.ws_url)).toEqual(ALLOWED);
      server.pause();
      expect(await api.check(call.ws_url)).toEqual({ status: 503, body: { error: 'state store unavailable, retry shortly', code: 'REDIS_UNAVAILABLE' } });
      // A forged URL is refused before Redis is asked.
      expect(await api.check(`/ws/pod/${call.pod_name}/down-1/1/1/forged`)).toEqual(REFUSED);
      server.resume();
      expect(await api.check(call.ws_url)).toEqual(ALLOWED);
      const metrics = await (await fetch(`${api.base}/metrics`)).text();
      expect(metrics).toMatch(/smart_router_redis_errors_total\{[^}]*operation="media_auth"[^}]*\} 1/);
    } finally {
      server.resume();
      await api.app.close();
      await pool.close();
    }
  });
});
