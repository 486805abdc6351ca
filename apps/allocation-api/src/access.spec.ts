import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState } from '@smart-router/testing';
import { bootstrap } from './main';

// SPEC 10.1 for allocation-api: fail closed without a caller identity, JSON bodies only.

const env = (pool: PoolFixture, extra: Record<string, string> = {}) => ({
  REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ...extra,
});

function baseOf(app: NestFastifyApplication): string {
  const address = app.getHttpServer().address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

describe('allocation-api fails closed', () => {
  let pool: PoolFixture;
  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
  });
  afterEach(() => pool.close());

  it('refuses to start without API_TOKENS or AGENT_TOKEN_AUDIENCE, naming the variable', async () => {
    await expect(bootstrap(env(pool))).rejects.toThrow(/^invalid configuration: API_TOKENS is empty and AGENT_TOKEN_AUDIENCE is unset: .*ALLOW_UNAUTHENTICATED=true/);
    await expect(bootstrap(env(pool, { ALLOW_UNAUTHENTICATED: 'false' }))).rejects.toThrow(/API_TOKENS/);
    await expect(bootstrap(env(pool, { ALLOW_UNAUTHENTICATED: 'maybe' }))).rejects.toThrow(/ALLOW_UNAUTHENTICATED must be true or false/);
  });

  it.each([
    ['ALLOW_UNAUTHENTICATED=true', { ALLOW_UNAUTHENTICATED: 'true' }],
    ['API_TOKENS', { API_TOKENS: 'dispatcher-1' }],
    ['AGENT_TOKEN_AUDIENCE (voice agents identified by their ServiceAccount tokens)', { AGENT_TOKEN_AUDIENCE: 'smart-router' }],
  ])('starts with %s', async (_name, extra) => {
    const app = await bootstrap(env(pool, extra));
    try {
      expect((await fetch(`${baseOf(app)}/ready`)).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('open mode still enforces a configured token', async () => {
    const app = await bootstrap(env(pool, { ALLOW_UNAUTHENTICATED: 'true', API_TOKENS: 'dispatcher-1' }));
    try {
      const post = (headers: Record<string, string>) => fetch(`${baseOf(app)}/api/v1/allocate`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"call_sid":"open-1"}' });
      expect((await post({})).status).toBe(401);
      expect((await post({ authorization: 'Bearer dispatcher-1' })).status).toBe(200);
    } finally {
      await app.close();
    }
  });
});

describe('allocation-api takes JSON bodies only', () => {
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  beforeAll(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    app = await bootstrap(env(pool, { ALLOW_UNAUTHENTICATED: 'true' }));
  });
  afterAll(async () => {
    await app.close();
    await pool.close();
  });

  const post = async (path: string, contentType: string | undefined, body: string) => {
    const response = await fetch(baseOf(app) + path, { method: 'POST', headers: contentType ? { 'content-type': contentType } : {}, body });
    return { status: response.status, body: await response.json() as unknown };
  };
  const refused = { status: 415, body: { error: 'unsupported content type', code: 'UNSUPPORTED_MEDIA_TYPE' } };

  it('refuses a cross-site form post (urlencoded, multipart, text/plain) to allocate, release and connected, and allocates nothing', async () => {
    await post('/api/v1/allocate', 'application/json', '{"call_sid":"held-1"}');
    const before = await snapshotState(pool);
    for (const path of ['/api/v1/allocate', '/api/v1/release', '/api/v1/connected']) {
      expect({ path, ...(await post(path, 'application/x-www-form-urlencoded', 'call_sid=csrf-1')) }).toEqual({ path, ...refused });
      expect({ path, ...(await post(path, 'application/x-www-form-urlencoded', 'call_sid=held-1')) }).toEqual({ path, ...refused });
      expect({ path, ...(await post(path, 'text/plain', '{"call_sid":"csrf-2"}')) }).toEqual({ path, ...refused });
      expect({ path, ...(await post(path, 'multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="call_sid"\r\n\r\ncsrf-3\r\n--x--\r\n')) }).toEqual({ path, ...refused });
    }
    expect(await snapshotState(pool)).toEqual(before);
    const metrics = await (await fetch(`${baseOf(app)}/metrics`)).text();
    expect(metrics).toMatch(/smart_router_http_errors_total\{[^}]*code="UNSUPPORTED_MEDIA_TYPE"[^}]*\} 12/);
  });

  it('accepts application/json with a charset, in any letter case', async () => {
    expect((await post('/api/v1/allocate', 'application/json; charset=utf-8', '{"call_sid":"json-1"}')).status).toBe(200);
    expect((await post('/api/v1/release', 'Application/JSON;charset=UTF-8', '{"call_sid":"json-1"}')).status).toBe(200);
  });
});
