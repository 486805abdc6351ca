import { createHash } from 'node:crypto';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState, waitFor } from '@smart-router/testing';
import { paramMap, plivoV3Signature, twilioSignature } from '@smart-router/providers';
import { MAX_REPLAY_WAITERS } from './answer-replays';
import { bootstrap } from './main';

/**
 * SPEC 10.2 "Replays are refused": a signed answer webhook whose Plivo nonce
 * or Twilio idempotency token (or signature) was seen within
 * TOMBSTONE_TTL_SECONDS gets the first answer's bytes and allocates nothing,
 * even after the call ended and its tombstone is gone.
 */

const PUBLIC = 'https://router.example.test';
// Every enabled provider has its secret: the app starts without open mode.
const AUTH = { TWILIO_AUTH_TOKENS: 'twilio-token', PLIVO_AUTH_TOKENS: 'plivo-token', EXOTEL_CREDENTIALS: 'exo-key:exo-secret', PUBLIC_BASE_URL: PUBLIC };

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

async function startWebhooks(prefix: string, extra: Record<string, string> = {}) {
  const app: NestFastifyApplication = await bootstrap({
    REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: prefix, HTTP_PORT: '0', LOG_LEVEL: 'error',
    VOICE_AGENT_BASE_URL: 'wss://buddy.example.test', WEBHOOK_WAIT_MS: '200', ...AUTH, ...extra,
  });
  const address = app.getHttpServer().address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const form = async (path: string, params: Record<string, string>, headers: Record<string, string>): Promise<Answer> => {
    const response = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(params).toString() });
    return { status: response.status, contentType: response.headers.get('content-type') ?? '', text: await response.text() };
  };
  return { app, base, form };
}
type Webhooks = Awaited<ReturnType<typeof startWebhooks>>;

const TWILIO_ANSWER = '/agent/voice/breeze-buddy/twilio/callback/t1?merchant_id=acme';
const PLIVO_ANSWER = '/api/v1/plivo/answer?merchant_id=acme';
const twilioParams = (callSid: string) => ({ CallSid: callSid, AccountSid: 'ACtest', From: '+1234567890', To: '+0987654321', CallStatus: 'ringing' });
const plivoParams = (callUuid: string) => ({ CallUUID: callUuid, From: '1234567890', To: '0987654321', Direction: 'inbound', CallStatus: 'ringing' });

/** Headers of a Twilio webhook as Twilio sends it: signature over URL + params, and its idempotency token. */
const twilioHeaders = (path: string, params: Record<string, string>, token?: string): Record<string, string> => ({
  'x-twilio-signature': twilioSignature('twilio-token', PUBLIC + path, paramMap(params)),
  ...(token === undefined ? {} : { 'i-twilio-idempotency-token': token }),
});
/** Headers of a Plivo V3 webhook: the nonce is inside what is signed. */
const plivoHeaders = (path: string, params: Record<string, string>, nonce: string, token = 'plivo-token'): Record<string, string> => ({
  'x-plivo-signature-v3': plivoV3Signature(token, 'POST', PUBLIC + path, nonce, paramMap(params)),
  'x-plivo-signature-v3-nonce': nonce,
});

const podOf = (answer: Answer) => /\/ws\/pod\/([^/]+)\//.exec(answer.text)?.[1];
const FAILURE = /^<Response><(Say|Speak)>[^<]+<\/(Say|Speak)><Hangup\/><\/Response>$/;
/** Allocations ever made: the call stream's call.allocated entries. */
const allocations = async (pool: PoolFixture) => (await pool.redis.xrange(pool.keys.callStream(), '-', '+')).filter(([, fields]) => fields[fields.indexOf('type') + 1] === 'call.allocated').length;

describe('replayed answer webhooks (SPEC 10.2)', () => {
  let pool: PoolFixture;
  let webhooks: Webhooks;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    webhooks = await startWebhooks(pool.keys.prefix);
  });
  afterEach(async () => {
    await webhooks.app.close();
    await pool.close();
  });

  const releaseAndForget = async (callSid: string) => {
    await pool.scripts.release(callSid, 'hangup');
    // As if TOMBSTONE_TTL_SECONDS had passed for the tombstone (the replay record was written earlier, so it lives as long).
    await pool.redis.del(pool.keys.tombstone(callSid));
  };

  it('Twilio: the same idempotency token, or the captured signature with the token dropped or changed, gets the first document; nothing is allocated, even after release and tombstone expiry', async () => {
    const params = twilioParams('CA-replay-1');
    const first = await webhooks.form(TWILIO_ANSWER, params, twilioHeaders(TWILIO_ANSWER, params, 'idem-1'));
    expect(first.text).toContain('<Connect><Stream');
    expect(await allocations(pool)).toBe(1);
    const before = await snapshotState(pool);
    for (const token of ['idem-1', undefined, 'idem-forged']) {
      expect({ token, answer: await webhooks.form(TWILIO_ANSWER, params, twilioHeaders(TWILIO_ANSWER, params, token)) }).toEqual({ token, answer: first });
    }
    expect(await snapshotState(pool)).toEqual(before);

    await releaseAndForget('CA-replay-1');
    const released = await snapshotState(pool);
    expect(await webhooks.form(TWILIO_ANSWER, params, twilioHeaders(TWILIO_ANSWER, params, 'idem-1'))).toEqual(first);
    expect(await webhooks.form(TWILIO_ANSWER, params, twilioHeaders(TWILIO_ANSWER, params))).toEqual(first);
    expect(await snapshotState(pool)).toEqual(released);
    expect(await pool.redis.exists(pool.keys.call('CA-replay-1'))).toBe(0);
    expect(await allocations(pool)).toBe(1);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('Plivo: the same nonce gets the first document and allocates nothing, even after release and tombstone expiry; a new nonce for the call behaves as before', async () => {
    const params = plivoParams('pl-replay-1');
    const first = await webhooks.form(PLIVO_ANSWER, params, plivoHeaders(PLIVO_ANSWER, params, 'nonce-1'));
    const pod = podOf(first);
    expect(pod).toBeDefined();
    const replay = () => webhooks.form(PLIVO_ANSWER, params, plivoHeaders(PLIVO_ANSWER, params, 'nonce-1'));
    expect(await replay()).toEqual(first);
    // A provider retry (new nonce, same CallUUID) is idempotent by call id, as always: the same pod.
    const retry = await webhooks.form(PLIVO_ANSWER, params, plivoHeaders(PLIVO_ANSWER, params, 'nonce-2'));
    expect(podOf(retry)).toBe(pod);

    await pool.scripts.release('pl-replay-1', 'hangup');
    // Within the tombstone a new nonce is refused as before (the call ended)...
    expect((await webhooks.form(PLIVO_ANSWER, params, plivoHeaders(PLIVO_ANSWER, params, 'nonce-3'))).text).toMatch(FAILURE);
    await pool.redis.del(pool.keys.tombstone('pl-replay-1'));
    const forgotten = await snapshotState(pool);
    // ...and the replayed first request still gets its first answer, allocating nothing.
    expect(await replay()).toEqual(first);
    expect(await snapshotState(pool)).toEqual(forgotten);
    expect(await allocations(pool)).toBe(1);
    // A nonce never seen, once the tombstone is gone, is a new request: today's behaviour.
    expect(podOf(await webhooks.form(PLIVO_ANSWER, params, plivoHeaders(PLIVO_ANSWER, params, 'nonce-4')))).toBeDefined();
    expect(await allocations(pool)).toBe(2);
  });

  it('a replay of a refused answer gets the same refusal, even once pods are free', async () => {
    // Fill the default chain (3 standard pods, the basic pod's 3 slots).
    const fillers: string[] = [];
    for (let index = 0; index < 6; index += 1) {
      const filled = await pool.scripts.allocate({ callSid: `filler-${index}`, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
      fillers.push(filled.ok ? filled.allocation.podName : 'none');
    }
    expect(fillers).not.toContain('none');
    const params = plivoParams('pl-refused-1');
    const path = '/api/v1/plivo/answer';
    const refused = await webhooks.form(path, params, plivoHeaders(path, params, 'nonce-refused'));
    expect(refused.text).toMatch(FAILURE);
    await pool.scripts.release('filler-0', 'hangup');
    const before = await snapshotState(pool);
    expect(await webhooks.form(path, params, plivoHeaders(path, params, 'nonce-refused'))).toEqual(refused);
    expect(await snapshotState(pool)).toEqual(before);
    expect(await pool.redis.exists(pool.keys.call('pl-refused-1'))).toBe(0);
    // The provider's own next attempt (its own nonce) takes the freed pod.
    expect(podOf(await webhooks.form(path, params, plivoHeaders(path, params, 'nonce-next')))).toBe(fillers[0]);
  });

  it('concurrent copies of one signed request allocate once and all get the same bytes', async () => {
    const params = twilioParams('CA-burst-1');
    const answers = await Promise.all(Array.from({ length: 8 }, () => webhooks.form(TWILIO_ANSWER, params, twilioHeaders(TWILIO_ANSWER, params, 'idem-burst'))));
    expect(answers[0].text).toContain('<Connect><Stream');
    expect(new Set(answers.map((answer) => JSON.stringify(answer))).size).toBe(1);
    expect(await allocations(pool)).toBe(1);
  });

  it('a nonce under a wrong signature is not remembered: the provider\'s own request with it is answered normally', async () => {
    const params = plivoParams('pl-poison-1');
    const before = await snapshotState(pool);
    const forged = await webhooks.form(PLIVO_ANSWER, params, plivoHeaders(PLIVO_ANSWER, params, 'nonce-p', 'not-the-token'));
    expect(JSON.parse(forged.text)).toEqual({ error: expect.any(String), code: 'SIGNATURE_INVALID' });
    const unsignedTwilio = await webhooks.form(TWILIO_ANSWER, twilioParams('CA-poison-1'), { 'i-twilio-idempotency-token': 'idem-p' });
    expect(JSON.parse(unsignedTwilio.text)).toEqual({ error: expect.any(String), code: 'SIGNATURE_MISSING' });
    expect(await snapshotState(pool)).toEqual(before);
    expect(podOf(await webhooks.form(PLIVO_ANSWER, params, plivoHeaders(PLIVO_ANSWER, params, 'nonce-p')))).toBeDefined();
    const twilio = twilioParams('CA-poison-1');
    expect(podOf(await webhooks.form(TWILIO_ANSWER, twilio, twilioHeaders(TWILIO_ANSWER, twilio, 'idem-p')))).toBeDefined();
  });

  it('without provider credentials (open mode) nothing is remembered', async () => {
    const open = await startWebhooks(pool.keys.prefix, { TWILIO_AUTH_TOKENS: '', PLIVO_AUTH_TOKENS: '', EXOTEL_CREDENTIALS: '', ALLOW_UNAUTHENTICATED: 'true' });
    try {
      const params = plivoParams('pl-open-1');
      expect(podOf(await open.form(PLIVO_ANSWER, params, { 'x-plivo-signature-v3-nonce': 'nonce-open' }))).toBeDefined();
      expect(await pool.redis.keys(`${pool.keys.prefix}webhook:replay:*`)).toEqual([]);
    } finally {
      await open.app.close();
    }
  });

  it('fails closed: a Redis error on the replay memory answers the failure document and allocates nothing (counted)', async () => {
    const params = plivoParams('pl-broken-1');
    const digest = createHash('sha256').update('plivo:nonce:nonce-broken').digest('hex');
    // Not a string: every read of this record fails in Redis.
    await pool.redis.hset(pool.keys.webhookReplay(digest), 'not', 'a record');
    const before = await snapshotState(pool);
    expect((await webhooks.form(PLIVO_ANSWER, params, plivoHeaders(PLIVO_ANSWER, params, 'nonce-broken'))).text).toMatch(FAILURE);
    expect(await snapshotState(pool)).toEqual(before);
    const metrics = await (await fetch(`${webhooks.base}/metrics`)).text();
    expect(metrics).toMatch(/^smart_router_redis_errors_total\{[^}]*operation="webhook_replay"[^}]*\} [1-9]/m);
  });

  it('a copy of a request whose first answer was never recorded (its process died) allocates nothing', async () => {
    const params = plivoParams('pl-orphan-1');
    const digest = createHash('sha256').update('plivo:nonce:nonce-orphan').digest('hex');
    await pool.redis.set(pool.keys.webhookReplay(digest), JSON.stringify({ pending: true, claim: 'dead-process', until: Date.now() - 1 }), 'EX', 60);
    const before = await snapshotState(pool);
    expect((await webhooks.form(PLIVO_ANSWER, params, plivoHeaders(PLIVO_ANSWER, params, 'nonce-orphan'))).text).toMatch(FAILURE);
    expect(await snapshotState(pool)).toEqual(before);
  });

  it('copies waiting for a first answer are bounded: beyond MAX_REPLAY_WAITERS, 503 REPLAY_PENDING with Retry-After at once; the waiters get the first answer', async () => {
    const params = plivoParams('pl-flood-1');
    const digest = createHash('sha256').update('plivo:nonce:nonce-flood').digest('hex');
    const key = pool.keys.webhookReplay(digest);
    // The first copy is still being answered (in another process).
    await pool.redis.set(key, JSON.stringify({ pending: true, claim: 'elsewhere', until: Date.now() + 4000 }), 'EX', 60);
    const headers = plivoHeaders(PLIVO_ANSWER, params, 'nonce-flood');
    const settled: { answer: Answer; retryAfter: string | null }[] = [];
    const copies = Array.from({ length: MAX_REPLAY_WAITERS + 16 }, async () => {
      const response = await fetch(webhooks.base + PLIVO_ANSWER, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(params).toString() });
      const answer = { status: response.status, contentType: response.headers.get('content-type') ?? '', text: await response.text() };
      settled.push({ answer, retryAfter: response.headers.get('retry-after') });
    });
    await waitFor(async () => settled.length >= 16, { what: 'the copies beyond the bound to be answered' });
    expect(settled).toHaveLength(16);
    for (const { answer, retryAfter } of settled) {
      expect(answer.status).toBe(503);
      expect(JSON.parse(answer.text)).toEqual({ error: expect.any(String), code: 'REPLAY_PENDING' });
      expect(retryAfter).toBe('1');
    }
    const first = { status: 200, contentType: 'application/xml', body: '<Response><Stream>first</Stream></Response>' };
    await pool.redis.set(key, JSON.stringify(first), 'KEEPTTL');
    await Promise.all(copies);
    const waited = settled.slice(16);
    expect(waited).toHaveLength(MAX_REPLAY_WAITERS);
    for (const { answer } of waited) expect(answer).toEqual({ status: 200, contentType: expect.stringContaining('application/xml'), text: first.body });
    expect(await allocations(pool)).toBe(0);
    const metrics = await (await fetch(`${webhooks.base}/metrics`)).text();
    expect(metrics).toMatch(/smart_router_webhook_answers_total\{[^}]*result="replay_pending"[^}]*\} 16/);
  });

  it('status callbacks replayed stay harmless: the first releases, its copies change nothing', async () => {
    const params = plivoParams('pl-status-1');
    expect(podOf(await webhooks.form(PLIVO_ANSWER, params, plivoHeaders(PLIVO_ANSWER, params, 'nonce-s1')))).toBeDefined();
    const hangup = { CallUUID: 'pl-status-1', CallStatus: 'completed', HangupCause: 'NORMAL_CLEARING' };
    const headers = plivoHeaders('/api/v1/plivo/hangup', hangup, 'nonce-h1');
    expect(JSON.parse((await webhooks.form('/api/v1/plivo/hangup', hangup, headers)).text)).toMatchObject({ released: true });
    const before = await snapshotState(pool);
    expect(JSON.parse((await webhooks.form('/api/v1/plivo/hangup', hangup, headers)).text)).toMatchObject({ released: false });
    expect(await snapshotState(pool)).toEqual(before);
  });
});
