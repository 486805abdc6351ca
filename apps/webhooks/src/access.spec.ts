import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState } from '@smart-router/testing';
import { bootstrap } from './main';

// SPEC 10.1 for webhooks: every enabled provider needs its secret, PROVIDERS picks them,
// provider routes take their form bodies and nothing else a browser form could send.

const PUBLIC = 'https://router.example.test';

const env = (pool: PoolFixture, extra: Record<string, string> = {}) => ({
  REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error',
  VOICE_AGENT_BASE_URL: 'wss://buddy.example.test', WEBHOOK_WAIT_MS: '0', ...extra,
});

function baseOf(app: NestFastifyApplication): string {
  const address = app.getHttpServer().address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

async function post(app: NestFastifyApplication, path: string, contentType: string, body: string, headers: Record<string, string> = {}) {
  const response = await fetch(baseOf(app) + path, { method: 'POST', headers: { 'content-type': contentType, ...headers }, body });
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', text: await response.text() };
}

describe('webhooks fail closed', () => {
  let pool: PoolFixture;
  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
  });
  afterEach(() => pool.close());

  it('refuses to start with an enabled provider lacking its secret, naming it (and the others missing)', async () => {
    await expect(bootstrap(env(pool))).rejects.toThrow(
      'invalid configuration: TWILIO_AUTH_TOKENS is empty but twilio is enabled (PROVIDERS=twilio,plivo,exotel; also empty: PLIVO_AUTH_TOKENS for plivo, EXOTEL_CREDENTIALS for exotel)',
    );
    await expect(bootstrap(env(pool, { TWILIO_AUTH_TOKENS: 't', PLIVO_AUTH_TOKENS: 'p', PUBLIC_BASE_URL: PUBLIC }))).rejects.toThrow(/^invalid configuration: EXOTEL_CREDENTIALS is empty but exotel is enabled \(PROVIDERS=twilio,plivo,exotel\)/);
    await expect(bootstrap(env(pool, { PROVIDERS: 'plivo', TWILIO_AUTH_TOKENS: 't', PUBLIC_BASE_URL: PUBLIC }))).rejects.toThrow(/^invalid configuration: PLIVO_AUTH_TOKENS is empty/);
  });

  it('refuses an unknown provider in PROVIDERS, naming the variable', async () => {
    await expect(bootstrap(env(pool, { PROVIDERS: 'twilio,vonage', ALLOW_UNAUTHENTICATED: 'true' }))).rejects.toThrow('invalid configuration: PROVIDERS must list providers among twilio, plivo, exotel, got "vonage"');
  });

  it('serves only the providers of PROVIDERS: the others answer 404 and write nothing', async () => {
    const app = await bootstrap(env(pool, { PROVIDERS: 'exotel', EXOTEL_CREDENTIALS: 'exo:secret', PUBLIC_BASE_URL: PUBLIC }));
    try {
      const before = await snapshotState(pool);
      for (const path of ['/api/v1/twilio/answer', '/agent/voice/breeze-buddy/plivo/callback/t1', '/api/v1/twilio/status', '/api/v1/plivo/hangup', '/api/v1/plivo/stream-status']) {
        const answer = await post(app, path, 'application/x-www-form-urlencoded', 'CallSid=off-1&CallUUID=off-1&CallStatus=completed');
        expect({ path, status: answer.status, body: JSON.parse(answer.text) }).toEqual({ path, status: 404, body: { error: 'route not found', code: 'NOT_FOUND' } });
      }
      expect(await snapshotState(pool)).toEqual(before);
      const exotel = await post(app, '/api/v1/exotel/answer', 'application/json', '{"CallSid":"exo-on-1"}', { authorization: `Basic ${Buffer.from('exo:secret').toString('base64')}` });
      expect(exotel.status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('in open mode starts without secrets and still enforces a secret that is set', async () => {
    const app = await bootstrap(env(pool, { ALLOW_UNAUTHENTICATED: 'true', PROVIDERS: 'twilio,exotel', EXOTEL_CREDENTIALS: 'exo:secret', PUBLIC_BASE_URL: PUBLIC }));
    try {
      expect((await post(app, '/api/v1/twilio/answer', 'application/x-www-form-urlencoded', 'CallSid=open-1')).text).toContain('<Connect>');
      expect(JSON.parse((await post(app, '/api/v1/exotel/answer', 'application/json', '{"CallSid":"open-2"}')).text)).toEqual({ error: expect.any(String), code: 'CREDENTIALS_MISSING' });
      expect((await post(app, '/api/v1/plivo/answer', 'application/x-www-form-urlencoded', 'CallUUID=open-3')).status).toBe(404);
    } finally {
      await app.close();
    }
  });
});

describe('webhooks media types', () => {
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

  it('provider routes take form posts (and Exotel JSON), and refuse text/plain or multipart, writing nothing', async () => {
    expect((await post(app, '/api/v1/twilio/answer', 'application/x-www-form-urlencoded; charset=utf-8', 'CallSid=form-1')).text).toContain('<Connect>');
    expect((await post(app, '/api/v1/exotel/answer', 'application/json', '{"CallSid":"json-1"}')).status).toBe(200);
    const before = await snapshotState(pool);
    for (const [path, type, body] of [
      ['/api/v1/twilio/answer', 'text/plain', 'CallSid=plain-1'],
      ['/api/v1/plivo/status', 'text/plain', 'CallUUID=form-1&CallStatus=completed'],
      ['/api/v1/exotel/answer', 'multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="CallSid"\r\n\r\nmulti-1\r\n--x--\r\n'],
    ]) {
      const answer = await post(app, path, type, body);
      expect({ path, status: answer.status, body: JSON.parse(answer.text) }).toEqual({ path, status: 415, body: { error: 'unsupported content type', code: 'UNSUPPORTED_MEDIA_TYPE' } });
    }
    expect(await snapshotState(pool)).toEqual(before);
  });
});
