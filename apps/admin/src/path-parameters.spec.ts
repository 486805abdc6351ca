import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, createPoolFixture, jsonError, rawHttpExchange, sharedRedisUrl } from '@smart-router/testing';
import { bootstrap } from './main';

// Issue 14: every id the contract allows (1–128 characters) reaches its route,
// one character more gets our 400, and errors raised by the framework or by
// Node's parser are our JSON and never quote the request.

interface Answer {
  status: number;
  contentType: string;
  text: string;
  body: Record<string, unknown>;
}

const id = (length: number, fill = 'a') => fill.repeat(length);

describe('admin path parameters and framework errors', () => {
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  let port: number;
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> => {
    if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, contentType: response.headers.get('content-type') ?? '', text, body: JSON.parse(text) as Record<string, unknown> };
  };
  const merchantConfigs = () => pool.redis.hgetall(pool.keys.merchantConfig());

  beforeAll(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    app = await bootstrap({ REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true' });
    const address = app.getHttpServer().address();
    port = typeof address === 'object' && address ? address.port : 0;
  });
  afterAll(async () => {
    await app.close();
    await pool.close();
  });

  it.each([1, 128])('GET /api/v1/admin/calls/{call_sid} finds a live call whose id has %i characters', async (length) => {
    const callSid = id(length, length === 1 ? 'c' : 'C');
    const allocated = await pool.scripts.allocate({ callSid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
    expect(allocated.ok).toBe(true);
    const answer = await call('GET', `/api/v1/admin/calls/${callSid}`);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ call_sid: callSid });
  });

  it('GET /api/v1/admin/calls/{call_sid} refuses 129 characters with our 400', async () => {
    const answer = await call('GET', `/api/v1/admin/calls/${id(129)}`);
    expect(answer).toMatchObject({ status: 400, body: { code: 'INVALID_CALL_SID', error: 'call_sid must be 1-128 characters of A-Za-z0-9._:-' } });
  });

  it.each([1, 128])('PUT, GET and DELETE /api/v1/admin/merchants/{merchant_id} work for an id of %i characters', async (length) => {
    const merchantId = id(length, 'm');
    expect((await call('PUT', `/api/v1/admin/merchants/${merchantId}`, { tier: 'gold' })).body).toMatchObject({ success: true, config: { tier: 'gold' } });
    expect((await call('GET', `/api/v1/admin/merchants/${merchantId}`)).body).toEqual({ merchant_id: merchantId, config: { tier: 'gold' } });
    expect(Object.keys(await merchantConfigs())).toContain(merchantId);
    expect((await call('DELETE', `/api/v1/admin/merchants/${merchantId}`)).status).toBe(200);
    // The 404 names no id: answers never repeat the request.
    expect(await call('GET', `/api/v1/admin/merchants/${merchantId}`)).toMatchObject({ status: 404, body: { error: 'merchant has no config', code: 'MERCHANT_NOT_FOUND' } });
    expect(await call('DELETE', `/api/v1/admin/merchants/${merchantId}`)).toMatchObject({ status: 404, body: { error: 'merchant has no config', code: 'MERCHANT_NOT_FOUND' } });
  });

  it('PUT, GET and DELETE /api/v1/admin/merchants/{merchant_id} refuse 129 characters with our 400 and write nothing', async () => {
    const before = await merchantConfigs();
    for (const method of ['PUT', 'GET', 'DELETE']) {
      const answer = await call(method, `/api/v1/admin/merchants/${id(129)}`, method === 'PUT' ? { tier: 'gold' } : undefined);
      expect(answer).toMatchObject({ status: 400, body: { code: 'INVALID_MERCHANT_ID' } });
    }
    expect(await merchantConfigs()).toEqual(before);
  });

  it('GET /api/v1/pod/{name} takes a DNS-1123 label (1 and 63 characters) and refuses 64, 128 and 129 with our 400', async () => {
    expect((await call('GET', '/api/v1/pod/voice-agent-0')).status).toBe(200);
    for (const length of [1, 63]) expect((await call('GET', `/api/v1/pod/${id(length, 'p')}`)).body).toMatchObject({ code: 'POD_NOT_FOUND' });
    for (const length of [64, 128, 129]) {
      expect(await call('GET', `/api/v1/pod/${id(length, 'p')}`)).toMatchObject({ status: 400, body: { code: 'INVALID_POD_NAME' } });
    }
  });

  it('the OpenAPI document declares the same limits', async () => {
    const paths = (await call('GET', '/openapi.json')).body.paths as Record<string, { parameters?: Array<{ name: string; schema: { maxLength: number } }> }>;
    expect(paths['/api/v1/admin/calls/{call_sid}'].parameters).toMatchObject([{ name: 'call_sid', schema: { maxLength: 128 } }]);
    expect(paths['/api/v1/admin/merchants/{merchant_id}'].parameters).toMatchObject([{ name: 'merchant_id', schema: { maxLength: 128 } }]);
    expect(paths['/api/v1/pod/{name}'].parameters).toMatchObject([{ name: 'name', schema: { maxLength: 63 } }]);
  });

  it('a parameter of many kilobytes still reaches our validation, and nothing quotes the URL back', async () => {
    const long = id(8 * 1024, 'z');
    for (const path of [`/api/v1/admin/calls/${long}`, `/api/v1/admin/merchants/${long}`, `/api/v1/pod/${long}`]) {
      const answer = await call('GET', path);
      expect(answer.status).toBe(400);
      expect(String(answer.body.code)).toMatch(/^INVALID_/);
      expect(answer.text).not.toContain('zzzz');
    }
  });

  it('framework errors get our codes and messages: bad URL encoding, unknown route, wrong content type, bad JSON, empty body', async () => {
    expect(await call('GET', '/api/v1/pod/%E0%A4%A')).toMatchObject({ status: 400, body: { code: 'INVALID_PATH', error: 'invalid URL path' } });
    const unknown = await call('GET', '/api/v1/no-such-route-zzzz');
    expect(unknown).toMatchObject({ status: 404, body: { code: 'NOT_FOUND', error: 'route not found' } });
    expect(unknown.text).not.toContain('zzzz');
    expect(await call('PUT', '/api/v1/admin/merchants/m-1', 'tier=gold', { 'content-type': 'text/csv' })).toMatchObject({ status: 415, body: { code: 'UNSUPPORTED_MEDIA_TYPE' } });
    expect(await call('PUT', '/api/v1/admin/merchants/m-1', '{"tier":', {})).toMatchObject({ status: 400, body: { code: 'INVALID_BODY' } });
    expect(await call('POST', '/api/v1/drain', '', { 'content-type': 'application/json' })).toMatchObject({ status: 400, body: { code: 'INVALID_BODY' } });
    for (const answer of [unknown]) expect(answer.contentType).toMatch(/^application\/json/);
    expect(await merchantConfigs()).toEqual({});
  });

  it('an oversized request line gets a JSON 431 instead of an empty one; a malformed request or one without Host a JSON 400', async () => {
    expect(await rawHttpExchange(port, `GET /api/v1/pod/${id(20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`)).toMatchObject(jsonError(431, 'HEADERS_TOO_LARGE', 'request line or headers too large'));
    expect(await rawHttpExchange(port, 'NOT A REQUEST\r\n\r\n')).toMatchObject(jsonError(400, 'INVALID_REQUEST', 'malformed HTTP request'));
    // Node's own Host check would answer an empty 400.
    expect(await rawHttpExchange(port, 'GET /api/v1/status HTTP/1.1\r\nConnection: close\r\n\r\n')).toMatchObject(jsonError(400, 'INVALID_REQUEST', 'Host header required'));
  });
});
