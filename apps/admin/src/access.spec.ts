import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState } from '@smart-router/testing';
import { bootstrap } from './main';

// SPEC 10.1 for admin: fail closed without admin tokens; no cross-site form can change anything.

const env = (pool: PoolFixture, extra: Record<string, string> = {}) => ({
  REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ...extra,
});

function baseOf(app: NestFastifyApplication): string {
  const address = app.getHttpServer().address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

describe('admin fails closed', () => {
  let pool: PoolFixture;
  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
  });
  afterEach(() => pool.close());

  it('refuses to start without admin tokens, naming the variable', async () => {
    await expect(bootstrap(env(pool))).rejects.toThrow(/^invalid configuration: ADMIN_OPERATOR_TOKENS and ADMIN_VIEWER_TOKENS are empty: .*ALLOW_UNAUTHENTICATED=true/);
  });

  it.each([
    ['ALLOW_UNAUTHENTICATED=true', { ALLOW_UNAUTHENTICATED: 'true' }],
    ['ADMIN_OPERATOR_TOKENS', { ADMIN_OPERATOR_TOKENS: 'op-1' }],
    ['ADMIN_VIEWER_TOKENS alone', { ADMIN_VIEWER_TOKENS: 'view-1' }],
  ])('starts with %s', async (_name, extra) => {
    const app = await bootstrap(env(pool, extra));
    try {
      const ready = await fetch(`${baseOf(app)}/ready`);
      expect({ status: ready.status, body: await ready.json() }).toEqual({ status: 200, body: { status: 'up' } });
    } finally {
      await app.close();
    }
  });
});

describe('admin takes JSON bodies only', () => {
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

  const send = async (method: string, path: string, contentType: string, body?: string) => {
    const response = await fetch(baseOf(app) + path, { method, headers: { 'content-type': contentType }, body });
    return { method, path, status: response.status, body: await response.json() as unknown };
  };
  const refused = (method: string, path: string) => ({ method, path, status: 415, body: { error: 'unsupported content type', code: 'UNSUPPORTED_MEDIA_TYPE' } });

  it('refuses a cross-site form to drain, undrain, reconcile (no body) and config routes, changing nothing', async () => {
    const before = await snapshotState(pool);
    const form = 'application/x-www-form-urlencoded';
    expect(await send('POST', '/api/v1/drain', form, 'pod_name=voice-agent-1')).toEqual(refused('POST', '/api/v1/drain'));
    expect(await send('POST', '/api/v1/drain', 'text/plain', '{"pod_name":"voice-agent-1"}')).toEqual(refused('POST', '/api/v1/drain'));
    expect(await send('POST', '/api/v1/undrain', form, 'pod_name=voice-agent-1')).toEqual(refused('POST', '/api/v1/undrain'));
    // A form with no fields still posts its content type: the body-less reconcile is refused too.
    expect(await send('POST', '/api/v1/admin/reconcile', form)).toEqual(refused('POST', '/api/v1/admin/reconcile'));
    expect(await send('POST', '/api/v1/admin/reconcile', 'text/plain', '')).toEqual(refused('POST', '/api/v1/admin/reconcile'));
    expect(await send('PUT', '/api/v1/admin/merchants/acme', 'text/plain', '{"tier":"gold"}')).toEqual(refused('PUT', '/api/v1/admin/merchants/acme'));
    expect(await send('DELETE', '/api/v1/admin/merchants/acme', form)).toEqual(refused('DELETE', '/api/v1/admin/merchants/acme'));
    expect(await send('PUT', '/api/v1/admin/tiers', 'multipart/form-data; boundary=x', '--x--\r\n')).toEqual(refused('PUT', '/api/v1/admin/tiers'));
    // Nothing drained, no reconcile job queued (BullMQ's keys would appear), no config written.
    expect(await snapshotState(pool)).toEqual(before);
  });

  it('still serves JSON and a body-less request without a content type', async () => {
    expect((await send('POST', '/api/v1/drain', 'application/json; charset=utf-8', '{"pod_name":"voice-agent-1"}')).status).toBe(200);
    expect((await send('POST', '/api/v1/undrain', 'application/json', '{"pod_name":"voice-agent-1"}')).status).toBe(200);
    expect((await fetch(`${baseOf(app)}/api/v1/admin/reconcile`, { method: 'POST' })).status).toBe(202);
    // A GET carrying a stray content type has no body to refuse.
    expect((await fetch(`${baseOf(app)}/api/v1/status`, { headers: { 'content-type': 'text/plain' } })).status).toBe(200);
  });
});
