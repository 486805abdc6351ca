import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, RedisServer, createPoolFixture, sharedRedisUrl, snapshotState, uniquePrefix, waitFor } from '@smart-router/testing';
import { paramMap, plivoV3Signature, twilioSignature } from '@smart-router/providers';
import { bootstrap } from './main';

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

async function startWebhooks(redisUrl: string, prefix: string, extra: Record<string, string> = {}) {
  const app: NestFastifyApplication = await bootstrap({
    REDIS_URL: redisUrl, REDIS_PREFIX: prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true',
    VOICE_AGENT_BASE_URL: 'wss://buddy.example.test', WEBHOOK_WAIT_MS: '200', ...extra,
  });
  const address = app.getHttpServer().address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const post = async (path: string, body: string, headers: Record<string, string> = {}): Promise<Answer> => {
    const response = await fetch(base + path, { method: 'POST', headers, body });
    return { status: response.status, contentType: response.headers.get('content-type') ?? '', text: await response.text() };
  };
  const form = (path: string, params: Record<string, string>, headers: Record<string, string> = {}) =>
    post(path, new URLSearchParams(params).toString(), { 'content-type': 'application/x-www-form-urlencoded', ...headers });
  const json = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    post(path, JSON.stringify(body), { 'content-type': 'application/json', ...headers });
  return { app, base, post, form, json };
}
type Webhooks = Awaited<ReturnType<typeof startWebhooks>>;
type Provider = 'twilio' | 'plivo' | 'exotel';

const WS = 'wss://buddy.example.test/ws/pod';
const twiml = (pod: string, sid: string, callback: string) =>
  `<Response><Connect><Stream url="${WS}/${pod}/${sid}" statusCallback="${callback}" statusCallbackMethod="POST"></Stream></Connect></Response>`;
const plivoXml = (pod: string, sid: string, callback: string) =>
  `<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" statusCallbackUrl="${callback}" statusCallbackMethod="POST">${WS}/${pod}/${sid}</Stream></Response>`;

/** The stream-status callback URL an answer document asks for ('' when none). */
function streamStatusUrlOf(text: string): string {
  return /statusCallback(?:Url)?="([^"]+)"/.exec(text)?.[1] ?? '';
}
const TWILIO_FAILURE = /^<Response><Say>[^<]+<\/Say><Hangup\/><\/Response>$/;
const PLIVO_FAILURE = /^<Response><Speak>[^<]+<\/Speak><Hangup\/><\/Response>$/;

/** The wait queue's arrival counter is skipped: a request that waited and timed out leaves nothing else. */
const snapshot = (pool: PoolFixture) => snapshotState(pool, [pool.keys.waitSequence()]);
/** The pool and call state without the memory of answered signed webhooks (SPEC 10.2), which a new request adds to. */
const callState = async (pool: PoolFixture) => Object.fromEntries(Object.entries(await snapshot(pool)).filter(([key]) => !key.startsWith(pool.keys.webhookReplay(''))));

/** The answer webhook for one provider and path, as the provider sends it. */
function answerCall(webhooks: Webhooks, provider: Provider, path: string, callSid: string, merchantId?: string) {
  const query = merchantId === undefined ? '' : `?merchant_id=${merchantId}`;
  if (provider === 'twilio') return webhooks.form(path + query, { CallSid: callSid, AccountSid: 'ACtest', From: '+1234567890', To: '+0987654321' });
  if (provider === 'plivo') return webhooks.form(path + query, { CallUUID: callSid, From: '1234567890', To: '0987654321', Direction: 'outbound' });
  return webhooks.json(path, merchantId === undefined ? { CallSid: callSid } : { CallSid: callSid, merchant_id: merchantId });
}

/**
 * `base`: the scheme and host the stream-status URL must be built on (the
 * signature URL's); by default any. Its allocation_id must be the call's.
 */
async function expectAnswer(provider: Provider, answer: Answer, pod: string, callSid: string, base?: string, pool?: PoolFixture): Promise<void> {
  expect(answer.status).toBe(200);
  const callback = streamStatusUrlOf(answer.text);
  if (provider !== 'exotel') {
    const allocationId = pool ? await pool.redis.hget(pool.keys.call(callSid), 'allocation_id') : '[0-9]+';
    const host = base ? base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') : 'https?://[^/"]+';
    expect(callback).toMatch(new RegExp(`^${host}/api/v1/${provider}/stream-status\\?allocation_id=${allocationId}$`));
  }
  if (provider === 'twilio') expect(answer).toEqual({ status: 200, contentType: 'text/xml; charset=utf-8', text: twiml(pod, callSid, callback) });
  else if (provider === 'plivo') expect(answer).toEqual({ status: 200, contentType: 'text/xml; charset=utf-8', text: plivoXml(pod, callSid, callback) });
  else expect(answer).toEqual({ status: 200, contentType: 'application/json; charset=utf-8', text: JSON.stringify({ url: `${WS}/${pod}/${callSid}` }) });
}

function expectFailure(provider: Provider, answer: Answer, code: string): void {
  if (provider === 'twilio') expect({ status: answer.status, type: answer.contentType, text: answer.text }).toEqual({ status: 200, type: 'text/xml; charset=utf-8', text: expect.stringMatching(TWILIO_FAILURE) });
  else if (provider === 'plivo') expect({ status: answer.status, type: answer.contentType, text: answer.text }).toEqual({ status: 200, type: 'text/xml; charset=utf-8', text: expect.stringMatching(PLIVO_FAILURE) });
  else expect({ status: answer.status, code: (JSON.parse(answer.text) as { code: string }).code }).toEqual({ status: code === 'CALL_ENDED' ? 409 : 503, code });
}

function podOf(answer: Answer): string {
  const match = /\/ws\/pod\/([^/]+)\//.exec(answer.text);
  if (!match) throw new Error(`no pod in ${answer.text}`);
  return match[1];
}

const PROVIDERS: Provider[] = ['twilio', 'plivo', 'exotel'];
const ANSWER_PATHS = (provider: Provider) => [
  `/api/v1/${provider}/allocate`,
  `/api/v1/${provider}/answer`,
  `/api/v1/${provider}/answer/test-template`,
  `/agent/voice/breeze-buddy/${provider}/callback/test-template`,
  `/agent/voice/breeze-buddy/${provider}/callback/`,
];
const FINAL_STATUSES: Record<Provider, string[]> = {
  twilio: ['completed', 'busy', 'failed', 'no-answer', 'canceled'],
  plivo: ['completed', 'hangup', 'busy', 'failed', 'timeout', 'no-answer', 'cancel'],
  exotel: ['completed', 'failed', 'busy', 'no-answer'],
};

function statusCallback(webhooks: Webhooks, provider: Provider, callSid: string, status: string) {
  if (provider === 'twilio') return webhooks.form('/api/v1/twilio/status', { CallSid: callSid, CallStatus: status, CallDuration: '12' });
  if (provider === 'plivo') return webhooks.form('/api/v1/plivo/status', { CallUUID: callSid, CallStatus: status });
  return webhooks.form('/api/v1/exotel/status', { CallSid: callSid, Status: status, DateUpdated: '2026-01-01 10:00:00' });
}

describe('provider webhooks against a real Redis', () => {
  let pool: PoolFixture;
  let webhooks: Webhooks;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    webhooks = await startWebhooks(sharedRedisUrl(), pool.keys.prefix);
  });
  afterEach(async () => {
    await webhooks.app.close();
    await pool.close();
  });

  const invariants = () => pool.scripts.checkInvariants();

  describe('answer webhooks', () => {
    const cases = PROVIDERS.flatMap((provider) => ANSWER_PATHS(provider).map((path) => [provider, path] as const));

    it.each(cases)('%s %s: stream document for the allocated pod, call recorded', async (provider, path) => {
      const callSid = `${provider}-path-001`;
      const answer = await answerCall(webhooks, provider, path, callSid, 'test-merchant');
      const pod = podOf(answer);
      await expectAnswer(provider, answer, pod, callSid, webhooks.base, pool);
      const record = await pool.redis.hgetall(pool.keys.call(callSid));
      expect(record).toMatchObject({ pod_name: pod, source_pool: 'pool:standard', merchant_id: 'test-merchant', provider });
      if (path.includes('test-template')) expect(record.metadata).toBe('{"template":"test-template"}');
      expect(await invariants()).toEqual([]);
    });

    it.each(PROVIDERS)('%s: merchant_id picks the merchant\'s tier; none means the default chain', async (provider) => {
      await pool.redis.hset(pool.keys.merchantConfig(), 'gold-merchant', '{"tier":"gold"}');
      const gold = await answerCall(webhooks, provider, `/agent/voice/breeze-buddy/${provider}/callback/t1`, `${provider}-gold-1`, 'gold-merchant');
      expect(podOf(gold)).toBe('voice-agent-0');
      const none = await answerCall(webhooks, provider, `/api/v1/${provider}/answer`, `${provider}-none-1`);
      expect(await pool.redis.hget(pool.keys.call(`${provider}-none-1`), 'source_pool')).toBe('pool:standard');
      expect(podOf(none)).not.toBe('voice-agent-0');
    });

    it('Exotel takes merchant_id from the query when the body has none', async () => {
      await pool.redis.hset(pool.keys.merchantConfig(), 'gold-merchant', '{"tier":"gold"}');
      const answer = await webhooks.json('/agent/voice/breeze-buddy/exotel/callback/t1?merchant_id=gold-merchant', { CallSid: 'exotel-query-1' });
      expect(podOf(answer)).toBe('voice-agent-0');
    });

    it.each(PROVIDERS)('%s retry: same pod, byte-identical document, one pod consumed', async (provider) => {
      const before = await pool.redis.scard(pool.keys.poolAvailable('standard'));
      const first = await answerCall(webhooks, provider, `/api/v1/${provider}/answer`, `${provider}-retry-1`, 'acme');
      const second = await answerCall(webhooks, provider, `/agent/voice/breeze-buddy/${provider}/callback/other`, `${provider}-retry-1`, 'acme');
      expect(second).toEqual(first);
      expect(await pool.redis.scard(pool.keys.poolAvailable('standard'))).toBe(before - 1);
      expect(await pool.redis.zcard(pool.keys.activeCalls())).toBe(1);
    });

    it.each(PROVIDERS)('%s: twenty concurrent duplicate webhooks take exactly one pod', async (provider) => {
      const answers = await Promise.all(Array.from({ length: 20 }, () => answerCall(webhooks, provider, `/api/v1/${provider}/answer`, `${provider}-race-1`)));
      expect(new Set(answers.map((answer) => answer.text)).size).toBe(1);
      expect(answers[0].status).toBe(200);
      expect(await pool.redis.zcard(pool.keys.activeCalls())).toBe(1);
      expect(await pool.redis.scard(pool.keys.poolAvailable('standard'))).toBe(2);
      expect(await invariants()).toEqual([]);
    });

    it.each(PROVIDERS)('%s with no pod left: waits WEBHOOK_WAIT_MS, then the provider failure document, nothing allocated', async (provider) => {
      // Default chain: standard (3 exclusive pods) then basic (1 pod x 3 calls); gold is never used.
      for (let i = 0; i < 6; i += 1) {
        const filled = await pool.scripts.allocate({ callSid: `fill-${i}`, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
        expect(filled.ok).toBe(true);
      }
      const before = await snapshot(pool);
      const sent = Date.now();
      const answer = await answerCall(webhooks, provider, `/api/v1/${provider}/answer`, `${provider}-nopod-1`);
      expect(Date.now() - sent).toBeGreaterThanOrEqual(150);
      expectFailure(provider, answer, 'NO_POD_AVAILABLE');
      expect(await snapshot(pool)).toEqual(before);
      expect(await invariants()).toEqual([]);
    });

    it.each(PROVIDERS)('%s with the wait queue full (WAIT_QUEUE_MAX): the provider failure document at once, nothing queued, counted', async (provider) => {
      const full = await startWebhooks(sharedRedisUrl(), pool.keys.prefix, { WAIT_QUEUE_MAX: '0', WEBHOOK_WAIT_MS: '10000' });
      try {
        for (let i = 0; i < 6; i += 1) {
          const filled = await pool.scripts.allocate({ callSid: `fill-${i}`, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
          expect(filled.ok).toBe(true);
        }
        const before = await snapshot(pool);
        const answer = await answerCall(full, provider, `/api/v1/${provider}/answer`, `${provider}-full-1`);
        expectFailure(provider, answer, 'QUEUE_FULL');
        expect(await snapshot(pool)).toEqual(before);
        const metrics = await (await fetch(`${full.base}/metrics`)).text();
        expect(metrics).toMatch(new RegExp(`smart_router_webhook_answers_total\\{[^}]*result="queue_full"[^}]*\\} 1`));
      } finally {
        await full.app.close();
      }
    });

    it('escapes the ws_url in XML (VOICE_AGENT_BASE_URL with &)', async () => {
      const escaped = await startWebhooks(sharedRedisUrl(), pool.keys.prefix, { VOICE_AGENT_BASE_URL: 'wss://buddy.example.test/a&b' });
      try {
        const twilio = await answerCall(escaped, 'twilio', '/api/v1/twilio/answer', 'xml-escape-1');
        expect(twilio.text).toContain(`<Response><Connect><Stream url="wss://buddy.example.test/a&amp;b/ws/pod/${podOf(twilio)}/xml-escape-1" statusCallback=`);
        const plivo = await answerCall(escaped, 'plivo', '/api/v1/plivo/answer', 'xml-escape-2');
        expect(plivo.text).toContain(`>wss://buddy.example.test/a&amp;b/ws/pod/${podOf(plivo)}/xml-escape-2</Stream>`);
        const exotel = await answerCall(escaped, 'exotel', '/api/v1/exotel/answer', 'xml-escape-3');
        expect(JSON.parse(exotel.text)).toEqual({ url: expect.stringMatching(/^wss:\/\/buddy\.example\.test\/a&b\/ws\/pod\/voice-agent-\d\/xml-escape-3$/) });
      } finally {
        await escaped.app.close();
      }
    });

    it('bad requests (fixtures/<provider>/not-ok): their 4xx JSON error, nothing written', async () => {
      const root = join(__dirname, 'fixtures');
      const before = await snapshot(pool);
      let count = 0;
      for (const provider of PROVIDERS) {
        for (const file of readdirSync(join(root, provider, 'not-ok')).sort()) {
          const [expectLine, requestLine, ...rest] = readFileSync(join(root, provider, 'not-ok', file), 'utf8').split('\n');
          const [, status, code] = /^# expect: (\d+) ([A-Z_]+)$/.exec(expectLine) ?? [];
          const [method, path] = requestLine.split(' ');
          const blank = rest.indexOf('');
          const headers = Object.fromEntries(rest.slice(0, blank).map((line) => [line.split(':')[0].trim(), line.slice(line.indexOf(':') + 1).trim()]));
          const body = rest.slice(blank + 1).join('\n').replace(/\n$/, '');
          const response = await fetch(webhooks.base + path, { method, headers, body });
          const answer = (await response.json()) as { error: string; code: string };
          expect({ file: `${provider}/${file}`, status: response.status, code: answer.code, error: typeof answer.error }).toEqual({ file: `${provider}/${file}`, status: Number(status), code, error: 'string' });
          count += 1;
        }
      }
      expect(count).toBeGreaterThanOrEqual(15);
      const oversized = await webhooks.form('/api/v1/twilio/answer', { CallSid: 'big-1', Padding: 'x'.repeat(17 * 1024) });
      expect({ status: oversized.status, body: JSON.parse(oversized.text) }).toEqual({ status: 413, body: { error: 'request body too large', code: 'PAYLOAD_TOO_LARGE' } });
      expect(await snapshot(pool)).toEqual(before);
    });

    it('unknown providers and the hangup URL of providers without one are 404', async () => {
      expect((await webhooks.form('/api/v1/vonage/answer', { CallSid: 'x-1' })).status).toBe(404);
      expect((await webhooks.form('/agent/voice/breeze-buddy/vonage/callback/t', { CallSid: 'x-1' })).status).toBe(404);
      expect(JSON.parse((await webhooks.form('/api/v1/twilio/hangup', { CallSid: 'x-1' })).text)).toEqual({ error: 'route not found', code: 'NOT_FOUND' });
      expect(await pool.redis.zcard(pool.keys.activeCalls())).toBe(0);
    });
  });

  describe('status callbacks', () => {
    const cases = PROVIDERS.flatMap((provider) => FINAL_STATUSES[provider].map((status) => [provider, status] as const));

    it.each(cases)('%s %s releases the call (reason provider_<status>) and the pod goes back', async (provider, status) => {
      const callSid = `${provider}-${status}-1`;
      const pod = podOf(await answerCall(webhooks, provider, `/api/v1/${provider}/answer`, callSid));
      const answer = await statusCallback(webhooks, provider, callSid, status);
      expect({ status: answer.status, body: JSON.parse(answer.text) }).toEqual({
        status: 200, body: { success: true, call_sid: callSid, status, released: true, pod_name: pod },
      });
      expect(await pool.redis.exists(pool.keys.call(callSid))).toBe(0);
      expect(await pool.redis.sismember(pool.keys.poolAvailable('standard'), pod)).toBe(1);
      const events = await pool.redis.xrange(pool.keys.callStream(), '-', '+');
      const last = events[events.length - 1][1];
      expect(last[last.indexOf('reason') + 1]).toBe(`provider_${status}`);
      expect(await invariants()).toEqual([]);
    });

    it('Plivo hangup URL releases whatever CallStatus says', async () => {
      const pod = podOf(await answerCall(webhooks, 'plivo', '/api/v1/plivo/answer', 'plivo-hangup-1'));
      const answer = await webhooks.form('/api/v1/plivo/hangup', { CallUUID: 'plivo-hangup-1', HangupCause: 'NORMAL_CLEARING', Duration: '30' });
      expect(JSON.parse(answer.text)).toEqual({ success: true, call_sid: 'plivo-hangup-1', status: 'hangup', released: true, pod_name: pod });
      expect(await pool.redis.exists(pool.keys.call('plivo-hangup-1'))).toBe(0);
    });

    it.each([
      ['twilio', 'ringing'], ['twilio', 'in-progress'], ['twilio', 'queued'], ['plivo', 'in-progress'], ['plivo', 'ringing'], ['exotel', 'in-progress'],
    ] as const)('%s non-final %s: 200 and nothing changes', async (provider, status) => {
      await answerCall(webhooks, provider, `/api/v1/${provider}/answer`, `${provider}-live-1`);
      const before = await snapshot(pool);
      const answer = await statusCallback(webhooks, provider, `${provider}-live-1`, status);
      expect({ status: answer.status, body: JSON.parse(answer.text) }).toEqual({ status: 200, body: { success: true, call_sid: `${provider}-live-1`, status, released: false } });
      expect(await snapshot(pool)).toEqual(before);
    });

    it.each(PROVIDERS)('%s: duplicate callbacks, unknown calls and calls the agent already released are harmless 200s', async (provider) => {
      await answerCall(webhooks, provider, `/api/v1/${provider}/answer`, `${provider}-dup-1`);
      expect(JSON.parse((await statusCallback(webhooks, provider, `${provider}-dup-1`, 'completed')).text).released).toBe(true);
      const duplicate = await statusCallback(webhooks, provider, `${provider}-dup-1`, 'completed');
      expect({ status: duplicate.status, released: JSON.parse(duplicate.text).released }).toEqual({ status: 200, released: false });
      const unknown = await statusCallback(webhooks, provider, `${provider}-never-seen`, 'completed');
      expect({ status: unknown.status, released: JSON.parse(unknown.text).released }).toEqual({ status: 200, released: false });
      await answerCall(webhooks, provider, `/api/v1/${provider}/answer`, `${provider}-agent-1`);
      expect((await pool.scripts.release(`${provider}-agent-1`, 'ws_closed')).ok).toBe(true);
      const late = await statusCallback(webhooks, provider, `${provider}-agent-1`, 'completed');
      expect({ status: late.status, released: JSON.parse(late.text).released }).toEqual({ status: 200, released: false });
      expect(await pool.redis.zcard(pool.keys.activeCalls())).toBe(0);
      expect(await invariants()).toEqual([]);
    });

    it.each(PROVIDERS)('%s: after the status callback (or a voice-agent release) a replayed answer allocates nothing', async (provider) => {
      const path = `/agent/voice/breeze-buddy/${provider}/callback/t1`;
      const first = await answerCall(webhooks, provider, path, `${provider}-ended-1`);
      await statusCallback(webhooks, provider, `${provider}-ended-1`, 'completed');
      await answerCall(webhooks, provider, path, `${provider}-ended-2`);
      expect((await pool.scripts.release(`${provider}-ended-2`, 'agent')).ok).toBe(true);
      const before = await snapshot(pool);
      for (const callSid of [`${provider}-ended-1`, `${provider}-ended-2`]) {
        const replay = await answerCall(webhooks, provider, path, callSid);
        expectFailure(provider, replay, 'CALL_ENDED');
        expect(replay.text).not.toBe(first.text);
      }
      expect(await snapshot(pool)).toEqual(before);
      expect(await pool.redis.exists(pool.keys.call(`${provider}-ended-1`))).toBe(0);
    });
  });

  it('serves health, readiness, metrics and its OpenAPI document', async () => {
    expect(await (await fetch(`${webhooks.base}/health`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${webhooks.base}/ready`);
    expect({ status: ready.status, body: await ready.json() }).toEqual({ status: 200, body: { status: 'up' } });
    await answerCall(webhooks, 'twilio', '/api/v1/twilio/answer', 'metrics-1');
    const metrics = await (await fetch(`${webhooks.base}/metrics`)).text();
    expect(metrics).toContain('smart_router_webhook_answers_total');
    const openapi = (await (await fetch(`${webhooks.base}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining([
      '/api/v1/twilio/answer', '/api/v1/plivo/allocate', '/agent/voice/breeze-buddy/exotel/callback/{template}',
      '/api/v1/twilio/status', '/api/v1/plivo/status', '/api/v1/exotel/status', '/api/v1/plivo/hangup', '/health', '/ready', '/metrics',
    ]));
  });
});

describe('provider webhook authentication', () => {
  const PUBLIC = 'https://router.example.test';
  const AUTH = {
    TWILIO_AUTH_TOKENS: 'twilio-old,twilio-new',
    PLIVO_AUTH_TOKENS: 'plivo-old,plivo-new',
    EXOTEL_CREDENTIALS: 'exo-key:exo-secret,exo-key2:exo:pw',
  };
  let pool: PoolFixture;
  let webhooks: Webhooks;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    webhooks = await startWebhooks(sharedRedisUrl(), pool.keys.prefix, { ...AUTH, PUBLIC_BASE_URL: PUBLIC });
  });
  afterEach(async () => {
    await webhooks.app.close();
    await pool.close();
  });

  const twilioParams = (callSid: string) => ({ CallSid: callSid, AccountSid: 'ACtest', From: '+1234567890', To: '+0987654321', CallStatus: 'in-progress' });
  /** Twilio signs the URL it called plus the sorted form params. */
  const twilio = (path: string, params: Record<string, string>, options: { token?: string; signedUrl?: string; signature?: string | null } = {}) => {
    const signature = options.signature !== undefined ? options.signature : twilioSignature(options.token ?? 'twilio-new', options.signedUrl ?? PUBLIC + path, paramMap(params));
    return webhooks.form(path, params, signature === null ? {} : { 'x-twilio-signature': signature });
  };
  const plivo = (path: string, params: Record<string, string>, options: { tokens?: string[]; nonce?: string | null; signedNonce?: string; signature?: string | null } = {}) => {
    const nonce = options.nonce === undefined ? `nonce-${path.length}-${params.CallUUID}` : options.nonce;
    const signature = options.signature !== undefined
      ? options.signature
      : (options.tokens ?? ['plivo-new']).map((token) => plivoV3Signature(token, 'POST', PUBLIC + path, options.signedNonce ?? nonce ?? '', paramMap(params))).join(',');
    const headers: Record<string, string> = {};
    if (signature !== null) headers['x-plivo-signature-v3'] = signature;
    if (nonce !== null) headers['x-plivo-signature-v3-nonce'] = nonce;
    return webhooks.form(path, params, headers);
  };
  const basic = (userPass: string) => ({ authorization: `Basic ${Buffer.from(userPass).toString('base64')}` });
  const errorOf = (answer: Answer) => ({ status: answer.status, code: (JSON.parse(answer.text) as { code: string }).code });

  it('Twilio: valid signatures with either configured token (rotation) allocate', async () => {
    const path = '/agent/voice/breeze-buddy/twilio/callback/t1?merchant_id=acme';
    const current = await twilio(path, twilioParams('tw-sig-1'));
    await expectAnswer('twilio', current, podOf(current), 'tw-sig-1');
    const rotated = await twilio('/api/v1/twilio/answer', twilioParams('tw-sig-2'), { token: 'twilio-old' });
    await expectAnswer('twilio', rotated, podOf(rotated), 'tw-sig-2');
    expect(await pool.redis.hget(pool.keys.call('tw-sig-1'), 'merchant_id')).toBe('acme');
  });

  it('Twilio: missing, wrong, unknown-token, tampered-URL and tampered-body requests get 403 and write nothing', async () => {
    const before = await snapshot(pool);
    const path = '/api/v1/twilio/answer?merchant_id=acme';
    expect(errorOf(await twilio(path, twilioParams('tw-bad-1'), { signature: null }))).toEqual({ status: 403, code: 'SIGNATURE_MISSING' });
    expect(errorOf(await twilio(path, twilioParams('tw-bad-2'), { signature: 'WRONG_SIGNATURE' }))).toEqual({ status: 403, code: 'SIGNATURE_INVALID' });
    expect(errorOf(await twilio(path, twilioParams('tw-bad-3'), { token: 'not-configured' }))).toEqual({ status: 403, code: 'SIGNATURE_INVALID' });
    // Signed for one merchant, sent for another: the query is part of the signed URL.
    expect(errorOf(await twilio('/api/v1/twilio/answer?merchant_id=gold-merchant', twilioParams('tw-bad-4'), { signedUrl: PUBLIC + path }))).toEqual({ status: 403, code: 'SIGNATURE_INVALID' });
    const signed = twilioSignature('twilio-new', PUBLIC + path, paramMap(twilioParams('tw-bad-5')));
    expect(errorOf(await twilio(path, twilioParams('tw-forged-5'), { signature: signed }))).toEqual({ status: 403, code: 'SIGNATURE_INVALID' });
    expect(errorOf(await twilio('/api/v1/twilio/status', { CallSid: 'tw-bad-6', CallStatus: 'completed' }, { signature: null }))).toEqual({ status: 403, code: 'SIGNATURE_MISSING' });
    expect(await snapshot(pool)).toEqual(before);
  });

  it('Twilio: an unsigned status callback releases nothing; a signed one releases; the replayed signed answer then allocates nothing', async () => {
    const path = '/agent/voice/breeze-buddy/twilio/callback/t1?merchant_id=acme';
    const answer = await twilio(path, twilioParams('tw-replay-1'));
    const pod = podOf(answer);
    const forged = await twilio('/api/v1/twilio/status', { CallSid: 'tw-replay-1', CallStatus: 'completed' }, { signature: 'WRONG_SIGNATURE' });
    expect(errorOf(forged)).toEqual({ status: 403, code: 'SIGNATURE_INVALID' });
    expect(await pool.redis.hget(pool.keys.call('tw-replay-1'), 'pod_name')).toBe(pod);
    const status = await twilio('/api/v1/twilio/status', { CallSid: 'tw-replay-1', CallStatus: 'completed', CallDuration: '42' });
    expect(JSON.parse(status.text)).toMatchObject({ released: true, pod_name: pod });
    const before = await callState(pool);
    // The very request again (same signature): answered as the first was (SPEC 10.2), allocating nothing.
    expect(await twilio(path, twilioParams('tw-replay-1'))).toEqual(answer);
    // Another signed answer for the ended call (other parameters): refused by the tombstone, as before.
    expectFailure('twilio', await twilio(path, { ...twilioParams('tw-replay-1'), CallStatus: 'ringing' }), 'CALL_ENDED');
    expect(await callState(pool)).toEqual(before);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('signatures on without PUBLIC_BASE_URL: refuses to start naming PUBLIC_BASE_URL (the signed URL must not come from request headers)', async () => {
    await expect(startWebhooks(sharedRedisUrl(), pool.keys.prefix, AUTH)).rejects.toThrow(/^invalid configuration: PUBLIC_BASE_URL is required when provider signatures are checked/);
    await expect(startWebhooks(sharedRedisUrl(), pool.keys.prefix, { TWILIO_AUTH_TOKENS: 'twilio-new', ALLOW_UNAUTHENTICATED: 'true' })).rejects.toThrow(/PUBLIC_BASE_URL/);
  });

  it('open mode without PUBLIC_BASE_URL: callback URLs follow X-Forwarded-Proto/-Host only from TRUSTED_PROXIES, else Host', async () => {
    const forwardedHeaders = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example.test' };
    const trusting = await startWebhooks(sharedRedisUrl(), pool.keys.prefix, { TRUSTED_PROXIES: '127.0.0.0/8,::1/128' });
    const elsewhere = await startWebhooks(sharedRedisUrl(), pool.keys.prefix, { TRUSTED_PROXIES: '10.0.0.0/8' });
    const nobody = await startWebhooks(sharedRedisUrl(), pool.keys.prefix);
    try {
      const path = '/api/v1/twilio/answer?merchant_id=acme';
      const viaGateway = await trusting.form(path, twilioParams('tw-fwd-1'), forwardedHeaders);
      await expectAnswer('twilio', viaGateway, podOf(viaGateway), 'tw-fwd-1', 'https://public.example.test');
      // The same headers from an address that is not a trusted proxy choose nothing.
      for (const [index, direct] of [elsewhere, nobody].entries()) {
        const answer = await direct.form(path, twilioParams(`tw-fwd-${index + 2}`), forwardedHeaders);
        await expectAnswer('twilio', answer, podOf(answer), `tw-fwd-${index + 2}`, `http://${new URL(direct.base).host}`);
      }
    } finally {
      await Promise.all([trusting, elsewhere, nobody].map((instance) => instance.app.close()));
    }
  });

  it('Plivo: V3 signatures (current token, rotated token, several in one header) allocate', async () => {
    const path = '/agent/voice/breeze-buddy/plivo/callback/t1?merchant_id=acme';
    const params = (callSid: string) => ({ CallUUID: callSid, From: '1234567890', To: '0987654321', Direction: 'outbound', CallStatus: 'in-progress' });
    const current = await plivo(path, params('pl-sig-1'));
    await expectAnswer('plivo', current, podOf(current), 'pl-sig-1');
    const rotated = await plivo('/api/v1/plivo/answer', params('pl-sig-2'), { tokens: ['plivo-old'] });
    await expectAnswer('plivo', rotated, podOf(rotated), 'pl-sig-2');
    const several = await plivo('/api/v1/plivo/allocate', params('pl-sig-3'), { tokens: ['someone-else', 'plivo-new'] });
    await expectAnswer('plivo', several, podOf(several), 'pl-sig-3');
  });

  it('Plivo: missing signature or nonce, wrong nonce, unknown token and tampered body get 403 and write nothing', async () => {
    const before = await snapshot(pool);
    const path = '/api/v1/plivo/answer?merchant_id=acme';
    expect(errorOf(await plivo(path, { CallUUID: 'pl-bad-1' }, { signature: null }))).toEqual({ status: 403, code: 'SIGNATURE_MISSING' });
    expect(errorOf(await plivo(path, { CallUUID: 'pl-bad-2' }, { nonce: null, signedNonce: 'n' }))).toEqual({ status: 403, code: 'SIGNATURE_MISSING' });
    expect(errorOf(await plivo(path, { CallUUID: 'pl-bad-3' }, { nonce: 'sent-nonce', signedNonce: 'other-nonce' }))).toEqual({ status: 403, code: 'SIGNATURE_INVALID' });
    expect(errorOf(await plivo(path, { CallUUID: 'pl-bad-4' }, { tokens: ['not-configured'] }))).toEqual({ status: 403, code: 'SIGNATURE_INVALID' });
    const signed = plivoV3Signature('plivo-new', 'POST', PUBLIC + path, 'n5', paramMap({ CallUUID: 'pl-bad-5' }));
    expect(errorOf(await plivo(path, { CallUUID: 'pl-forged-5' }, { nonce: 'n5', signature: signed }))).toEqual({ status: 403, code: 'SIGNATURE_INVALID' });
    expect(errorOf(await plivo('/api/v1/plivo/hangup', { CallUUID: 'pl-bad-6' }, { signature: 'bogus' }))).toEqual({ status: 403, code: 'SIGNATURE_INVALID' });
    expect(await snapshot(pool)).toEqual(before);
  });

  it('Plivo: a signed hangup releases; the replayed signed answer then allocates nothing', async () => {
    const path = '/api/v1/plivo/answer?merchant_id=acme';
    const pod = podOf(await plivo(path, { CallUUID: 'pl-replay-1', CallStatus: 'in-progress' }));
    const hangup = await plivo('/api/v1/plivo/hangup', { CallUUID: 'pl-replay-1', CallStatus: 'completed', HangupCause: 'NORMAL_CLEARING' });
    expect(JSON.parse(hangup.text)).toMatchObject({ released: true, pod_name: pod, status: 'completed' });
    const before = await callState(pool);
    // Another nonce (a new request for the ended call): refused by the tombstone. The first request's own
    // nonce again is answered as the first was (SPEC 10.2; apps/webhooks/src/answer-replays.spec.ts).
    expectFailure('plivo', await plivo(path, { CallUUID: 'pl-replay-1', CallStatus: 'in-progress' }, { nonce: 'nonce-after-hangup' }), 'CALL_ENDED');
    expect(await callState(pool)).toEqual(before);
  });

  it('Exotel: basic credentials required; missing or wrong get 401 and write nothing; the replay after the status callback is refused', async () => {
    const before = await snapshot(pool);
    expect(errorOf(await webhooks.json('/api/v1/exotel/answer', { CallSid: 'ex-bad-1' }))).toEqual({ status: 401, code: 'CREDENTIALS_MISSING' });
    expect(errorOf(await webhooks.json('/api/v1/exotel/answer', { CallSid: 'ex-bad-2' }, basic('exo-key:wrong')))).toEqual({ status: 401, code: 'CREDENTIALS_INVALID' });
    expect(errorOf(await webhooks.json('/api/v1/exotel/answer', { CallSid: 'ex-bad-3' }, basic('exo-key2:exo-secret')))).toEqual({ status: 401, code: 'CREDENTIALS_INVALID' });
    expect(errorOf(await webhooks.form('/api/v1/exotel/status', { CallSid: 'ex-bad-4', Status: 'completed' }))).toEqual({ status: 401, code: 'CREDENTIALS_MISSING' });
    expect(await snapshot(pool)).toEqual(before);

    const answer = await webhooks.json('/agent/voice/breeze-buddy/exotel/callback/t1', { CallSid: 'ex-ok-1', merchant_id: 'acme' }, basic('exo-key:exo-secret'));
    await expectAnswer('exotel', answer, podOf(answer), 'ex-ok-1');
    const rotated = await webhooks.json('/api/v1/exotel/answer', { CallSid: 'ex-ok-2' }, basic('exo-key2:exo:pw'));
    await expectAnswer('exotel', rotated, podOf(rotated), 'ex-ok-2');
    const status = await webhooks.form('/api/v1/exotel/status', { CallSid: 'ex-ok-1', Status: 'completed' }, basic('exo-key:exo-secret'));
    expect(JSON.parse(status.text)).toMatchObject({ released: true, pod_name: podOf(answer) });
    const afterRelease = await snapshot(pool);
    const replay = await webhooks.json('/agent/voice/breeze-buddy/exotel/callback/t1', { CallSid: 'ex-ok-1', merchant_id: 'acme' }, basic('exo-key:exo-secret'));
    expectFailure('exotel', replay, 'CALL_ENDED');
    expect(await snapshot(pool)).toEqual(afterRelease);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('a bad EXOTEL_CREDENTIALS entry stops the app naming the variable, not the secret', async () => {
    await expect(startWebhooks(sharedRedisUrl(), pool.keys.prefix, { EXOTEL_CREDENTIALS: 'ok:1,secret-without-colon' }))
      .rejects.toThrow('invalid configuration: EXOTEL_CREDENTIALS entry 2 must be user:password with both parts non-empty');
    await expect(startWebhooks(sharedRedisUrl(), pool.keys.prefix, { PUBLIC_BASE_URL: 'https://router.example.test/?x=1' }))
      .rejects.toThrow('invalid configuration: PUBLIC_BASE_URL must not have a query or fragment');
  });

  /**
   * SPEC 9.2: the stream status callbacks the answer documents ask for, in
   * the providers' own format (fixtures/<provider>/stream-status, one per
   * documented event), signed, at the exact URL the answer document named.
   */
  describe('stream status callbacks', () => {
    const streamFixtures = (provider: 'twilio' | 'plivo') => readdirSync(join(__dirname, 'fixtures', provider, 'stream-status')).sort().map((file) => {
      const [expectLine, requestLine, ...rest] = readFileSync(join(__dirname, 'fixtures', provider, 'stream-status', file), 'utf8').split('\n');
      const expected = /^# expect: (.+)$/.exec(expectLine)![1];
      const params = Object.fromEntries(new URLSearchParams(rest.slice(rest.indexOf('') + 1).join('\n').trim()));
      return { file, expected, path: requestLine.split(' ')[1], params, callSid: params.CallSid ?? params.CallUUID };
    });
    /** Answers the call (signed) and returns the stream-status path + query its document asked for. */
    const answerFor = async (provider: 'twilio' | 'plivo', callSid: string) => {
      const answer = provider === 'twilio'
        ? await twilio('/api/v1/twilio/answer', twilioParams(callSid))
        : await plivo('/api/v1/plivo/answer', { CallUUID: callSid, From: '14155550100', To: '14155550199', Direction: 'inbound' });
      const url = streamStatusUrlOf(answer.text).replace(/&amp;/g, '&');
      expect(url.startsWith(`${PUBLIC}/api/v1/${provider}/stream-status?allocation_id=`)).toBe(true);
      return url.slice(PUBLIC.length);
    };
    const post = (provider: 'twilio' | 'plivo', path: string, params: Record<string, string>, options: { forged?: boolean } = {}) =>
      provider === 'twilio'
        ? twilio(path, params, options.forged ? { token: 'not-the-token' } : {})
        : plivo(path, params, options.forged ? { tokens: ['not-the-token'] } : {});
    const callEvents = async () => (await pool.redis.xrange(pool.keys.callStream(), '-', '+')).map(([, fields]) => {
      const record: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
      return record;
    });

    it.each(['twilio', 'plivo'] as const)('%s: every documented event, in the official format, does what it means', async (provider) => {
      const fixtures = streamFixtures(provider);
      expect(fixtures.length).toBeGreaterThanOrEqual(provider === 'twilio' ? 4 : 7);
      for (const fixture of fixtures) {
        const path = await answerFor(provider, fixture.callSid);
        expect(fixture.path.replace('{allocation_id}', '')).toBe(path.replace(/[0-9]+$/, ''));
        const pod = await pool.redis.hget(pool.keys.call(fixture.callSid), 'pod_name');
        const answer = await post(provider, path, fixture.params);
        expect({ file: fixture.file, status: answer.status }).toEqual({ file: fixture.file, status: 200 });
        const body = JSON.parse(answer.text) as Record<string, unknown>;
        const record = await pool.redis.hgetall(pool.keys.call(fixture.callSid));
        if (fixture.expected === 'connected') {
          expect(body).toMatchObject({ connected: true, released: false, pod_name: pod });
          expect(record).toMatchObject({ state: 'connected', connected_at: expect.stringMatching(/^[0-9]+$/) });
        } else if (fixture.expected.startsWith('released')) {
          expect(body).toMatchObject({ connected: false, released: true, pod_name: pod });
          expect(record).toEqual({});
          const reason = fixture.expected.split(' ')[1];
          expect((await callEvents()).filter((event) => event.call_sid === fixture.callSid && event.type === 'call.released')).toEqual([expect.objectContaining({ reason })]);
        } else {
          expect({ file: fixture.file, body }).toEqual({ file: fixture.file, body: { success: true, call_sid: fixture.callSid, event: 'ignored', connected: false, released: false } });
          expect(record).toMatchObject({ state: 'pending' });
        }
        // A duplicate (providers retry) changes nothing and is still a 200.
        const before = await snapshot(pool);
        const duplicate = await post(provider, path, fixture.params);
        expect({ file: fixture.file, status: duplicate.status, connected: JSON.parse(duplicate.text).connected, released: JSON.parse(duplicate.text).released })
          .toEqual({ file: fixture.file, status: 200, connected: false, released: false });
        expect(await snapshot(pool)).toEqual(before);
      }
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });

    it.each(['twilio', 'plivo'] as const)('%s: a signed stream-stopped releases exactly once; a forged one changes nothing', async (provider) => {
      const fixture = streamFixtures(provider).find((candidate) => candidate.expected === 'released stream_stopped')!;
      const path = await answerFor(provider, fixture.callSid);
      const before = await snapshot(pool);
      const forged = await post(provider, path, fixture.params, { forged: true });
      expect(forged.status).toBe(403);
      expect(await snapshot(pool)).toEqual(before);
      const results = await Promise.all([1, 2, 3].map(() => post(provider, path, fixture.params)));
      expect(results.map((result) => result.status)).toEqual([200, 200, 200]);
      expect(results.filter((result) => JSON.parse(result.text).released === true)).toHaveLength(1);
      expect((await callEvents()).filter((event) => event.call_sid === fixture.callSid && event.type === 'call.released')).toHaveLength(1);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    });

    it('a late stream-stopped of an earlier allocation of the same call_sid gets 409 STALE_ALLOCATION and ends nothing', async () => {
      const fixture = streamFixtures('twilio').find((candidate) => candidate.expected === 'released stream_stopped')!;
      const oldPath = await answerFor('twilio', fixture.callSid);
      // The call ends and the agent reuses the call_sid through the JSON API (no tombstone there).
      await pool.scripts.release(fixture.callSid, 'hangup');
      await pool.redis.del(pool.keys.tombstone(fixture.callSid));
      const again = await pool.scripts.allocate({ callSid: fixture.callSid, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false });
      expect(again.ok && `?allocation_id=${again.allocation.allocationId}`).not.toBe(oldPath.slice(oldPath.indexOf('?')));
      const before = await snapshot(pool);
      const late = await post('twilio', oldPath, fixture.params);
      expect({ status: late.status, code: JSON.parse(late.text).code }).toEqual({ status: 409, code: 'STALE_ALLOCATION' });
      expect(await snapshot(pool)).toEqual(before);
    });

    it('unknown calls are a harmless 200; Exotel has no stream-status route', async () => {
      const fixture = streamFixtures('plivo').find((candidate) => candidate.expected === 'released stream_stopped')!;
      const before = await snapshot(pool);
      const unknown = await post('plivo', '/api/v1/plivo/stream-status', { ...fixture.params, CallUUID: 'never-allocated-1' });
      expect({ status: unknown.status, released: JSON.parse(unknown.text).released }).toEqual({ status: 200, released: false });
      const exotel = await webhooks.form('/api/v1/exotel/stream-status', { CallSid: 'ex-1' }, basic('exo-key:exo-secret'));
      expect(exotel.status).toBe(404);
      expect(await snapshot(pool)).toEqual(before);
    });
  });
});

describe('provider webhooks when Redis fails', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(() => server.dispose());

  it('hung or down Redis: every provider gets its failure document quickly; status callbacks 503; recovers', async () => {
    const prefix = uniquePrefix('whdown');
    let pool = await createPoolFixture({ url: server.url, prefix });
    const webhooks = await startWebhooks(server.url, prefix);
    try {
      expect((await answerCall(webhooks, 'twilio', '/api/v1/twilio/answer', 'before-1')).status).toBe(200);

      server.pause();
      for (const provider of PROVIDERS) {
        const started = Date.now();
        const answer = await answerCall(webhooks, provider, `/api/v1/${provider}/answer`, `${provider}-hung-1`);
        expectFailure(provider, answer, 'REDIS_UNAVAILABLE');
        expect(Date.now() - started).toBeLessThan(2500);
      }
      const status = await statusCallback(webhooks, 'twilio', 'before-1', 'completed');
      expect({ status: status.status, code: JSON.parse(status.text).code }).toEqual({ status: 503, code: 'REDIS_UNAVAILABLE' });
      server.resume();

      await pool.close();
      await server.stop();
      for (const provider of PROVIDERS) {
        expectFailure(provider, await answerCall(webhooks, provider, `/agent/voice/breeze-buddy/${provider}/callback/t`, `${provider}-down-1`), 'REDIS_UNAVAILABLE');
      }
      const notReady = await fetch(`${webhooks.base}/ready`);
      expect({ status: notReady.status, body: await notReady.json() }).toEqual({ status: 503, body: { status: 'down' } });

      await server.restart();
      pool = await createPoolFixture({ url: server.url, prefix });
      const recovered = await waitFor(async () => {
        const answer = await answerCall(webhooks, 'twilio', '/api/v1/twilio/answer', 'after-1');
        return answer.text.includes('<Connect>') ? answer : null;
      }, { what: 'a Twilio answer after Redis came back' });
      await expectAnswer('twilio', recovered, podOf(recovered), 'after-1');
    } finally {
      server.resume();
      await webhooks.app.close();
      await pool.close().catch(() => undefined);
    }
  });
});
