import { randomUUID } from 'node:crypto';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { ScriptCode } from '@smart-router/allocation';
import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState } from '@smart-router/testing';
import { paramMap, plivoV3Signature, twilioSignature } from '@smart-router/providers';
import { LivenessScripts } from '@smart-router/redis-scripts';
import { bootstrap } from './main';

/**
 * SPEC 11 "Recovery (re-home)" through the webhooks app, signed as the
 * providers sign: the answer documents ask for the stream-ended URL, a stopped
 * stream releases the call (SPEC 9.2) leaving a re-home ticket (issue 20), and
 * the stream-ended request re-homes a call its agent did not release, whether
 * it comes before or after the stream-status callback (or hangs up one its
 * agent released).
 */

const PUBLIC = 'https://router.example.test';
const WS = 'wss://buddy.example.test/ws/pod';
type Provider = 'twilio' | 'plivo';
const TWILIO_FAILURE = /^<Response><Say>[^<]+<\/Say><Hangup\/><\/Response>$/;
const PLIVO_FAILURE = /^<Response><Speak>[^<]+<\/Speak><Hangup\/><\/Response>$/;
interface Answer {
  status: number;
  text: string;
}

describe('stream-ended (SPEC 11 re-home)', () => {
  let pool: PoolFixture;
  let app: NestFastifyApplication | undefined;
  let base = '';

  const start = async (extra: Record<string, string>) => {
    app = await bootstrap({
      REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error',
      VOICE_AGENT_BASE_URL: 'wss://buddy.example.test', WEBHOOK_WAIT_MS: '0', PUBLIC_BASE_URL: PUBLIC,
      TWILIO_AUTH_TOKENS: 'twilio-token', PLIVO_AUTH_TOKENS: 'plivo-token', PROVIDERS: 'twilio,plivo', ...extra,
    });
    const address = app.getHttpServer().address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  };
  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    await pool.close();
  });

  /** A provider's signed form post to `path` (path + query, as the document named it). */
  const post = async (provider: Provider, path: string, params: Record<string, string>, forged = false): Promise<Answer> => {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    if (provider === 'twilio') {
      headers['x-twilio-signature'] = twilioSignature(forged ? 'not-the-token' : 'twilio-token', PUBLIC + path, paramMap(params));
    } else {
      const nonce = randomUUID();
      headers['x-plivo-signature-v3'] = plivoV3Signature(forged ? 'not-the-token' : 'plivo-token', 'POST', PUBLIC + path, nonce, paramMap(params));
      headers['x-plivo-signature-v3-nonce'] = nonce;
    }
    const response = await fetch(base + path, { method: 'POST', headers, body: new URLSearchParams(params).toString() });
    return { status: response.status, text: await response.text() };
  };
  const idField = (provider: Provider) => (provider === 'twilio' ? 'CallSid' : 'CallUUID');
  const answer = (provider: Provider, sid: string) => post(provider, `/api/v1/${provider}/answer`, { [idField(provider)]: sid, From: '14155550100' });
  /** The stream-ended path + query a document names (Twilio's action, Plivo's Redirect). */
  const streamEndedOf = (provider: Provider, text: string): string => {
    const url = provider === 'twilio' ? /<Connect action="([^"]+)"/.exec(text)?.[1] : /<Redirect method="POST">([^<]+)<\/Redirect>/.exec(text)?.[1];
    if (!url) throw new Error(`no stream-ended URL in ${text}`);
    expect(url.startsWith(`${PUBLIC}/api/v1/${provider}/stream-ended?allocation_id=`)).toBe(true);
    return url.slice(PUBLIC.length);
  };
  const podOf = (text: string) => /\/ws\/pod\/([^/]+)\//.exec(text)?.[1] ?? '';
  /** The provider's stream-stopped callback for allocation `id`. */
  const stop = (provider: Provider, sid: string, id: string) => provider === 'twilio'
    ? post('twilio', `/api/v1/twilio/stream-status?allocation_id=${id}`, { CallSid: sid, StreamSid: 'MZ1', StreamEvent: 'stream-stopped' })
    : post('plivo', `/api/v1/plivo/stream-status?allocation_id=${id}`, { CallUUID: sid, StreamID: 's1', Event: 'StopStream' });
  const record = (sid: string) => pool.redis.hgetall(pool.keys.call(sid));

  it.each(['twilio', 'plivo'] as const)('%s: a live call whose stream ended moves to a new pod naming the old one; the old agent is fenced; REHOME_MAX then the failure document', async (provider) => {
    await start({ REHOME_ENABLED: 'true', REHOME_MAX: '2' });
    const sid = `${provider}-rehome-1`;
    const first = await answer(provider, sid);
    const firstId = (await record(sid)).allocation_id;
    const firstPod = podOf(first.text);
    if (provider === 'twilio') {
      expect(first.text).toBe(`<Response><Connect action="${PUBLIC}/api/v1/twilio/stream-ended?allocation_id=${firstId}" method="POST"><Stream url="${WS}/${firstPod}/${sid}" statusCallback="${PUBLIC}/api/v1/twilio/stream-status?allocation_id=${firstId}" statusCallbackMethod="POST"></Stream></Connect></Response>`);
    } else {
      expect(first.text).toBe(`<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" statusCallbackUrl="${PUBLIC}/api/v1/plivo/stream-status?allocation_id=${firstId}" statusCallbackMethod="POST">${WS}/${firstPod}/${sid}</Stream><Redirect method="POST">${PUBLIC}/api/v1/plivo/stream-ended?allocation_id=${firstId}</Redirect></Response>`);
    }

    // The stream stops (the agent died): the stream-status callback releases the call (SPEC 9.2), its pod
    // is free again, and the release leaves a re-home ticket for the stream-ended request (issue 20).
    const stopped = await stop(provider, sid, firstId);
    expect({ status: stopped.status, released: JSON.parse(stopped.text).released }).toEqual({ status: 200, released: true });
    expect(await record(sid)).toEqual({});
    expect(await pool.redis.sismember(pool.keys.podCalls(firstPod), sid)).toBe(0);
    expect(await pool.redis.hget(pool.keys.rehomeTicket(sid), 'allocation_id')).toBe(firstId);
    expect(await pool.redis.ttl(pool.keys.rehomeTicket(sid))).toBeGreaterThan(0);
    expect(await pool.redis.exists(pool.keys.tombstone(sid))).toBe(1);

    const ended = streamEndedOf(provider, first.text);
    const second = await post(provider, ended, { [idField(provider)]: sid });
    expect(second.status).toBe(200);
    const secondPod = podOf(second.text);
    const secondId = (await record(sid)).allocation_id;
    expect(secondPod).not.toBe(firstPod);
    expect(Number(secondId)).toBeGreaterThan(Number(firstId));
    if (provider === 'twilio') expect(second.text).toContain(`<Stream url="${WS}/${secondPod}/${sid}"`);
    expect(second.text).toContain(provider === 'twilio' ? `<Parameter name="rehome_from" value="${firstPod}"/>` : `extraHeaders="rehome_from=${firstPod}"`);
    expect(streamEndedOf(provider, second.text)).toBe(`/api/v1/${provider}/stream-ended?allocation_id=${secondId}`);
    // The ticket is consumed, the release's tombstone did not block it, the event names both pods and the cause.
    expect(await pool.redis.exists(pool.keys.rehomeTicket(sid))).toBe(0);
    const rehomed = (await pool.redis.xrange(pool.keys.callStream(), '-', '+')).map(([, fields]) => fields).filter((fields) => fields[1] === 'call.rehomed');
    expect(rehomed).toHaveLength(1);
    expect(rehomed[0]).toEqual(expect.arrayContaining(['from_pod', firstPod, 'pod', secondPod, 'cause', 'stream_ended']));
    expect(await pool.scripts.checkInvariants()).toEqual([]);

    // The provider retrying the same request gets the same bytes and changes nothing.
    const before = await snapshotState(pool);
    expect(await post(provider, ended, { [idField(provider)]: sid })).toEqual(second);
    expect(await snapshotState(pool)).toEqual(before);
    // The thawed old agent: its release and connected are stale, nothing changes.
    expect(await pool.scripts.release(sid, 'agent', 'call.released', Date.now(), undefined, { allocationId: Number(firstId) })).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
    expect(await pool.scripts.connect(sid, 'api', Number(firstId))).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
    expect(await snapshotState(pool)).toEqual(before);

    const third = await post(provider, streamEndedOf(provider, second.text), { [idField(provider)]: sid });
    expect(third.text).toContain(`rehome_from`);
    const fourth = await post(provider, streamEndedOf(provider, third.text), { [idField(provider)]: sid });
    expect(fourth.text).toMatch(provider === 'twilio' ? TWILIO_FAILURE : PLIVO_FAILURE);
    expect(await record(sid)).toEqual({});
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it.each(['twilio', 'plivo'] as const)('%s: the stream-ended request before the stream-stopped callback re-homes once; the late callback is stale', async (provider) => {
    await start({ REHOME_ENABLED: 'true' });
    const sid = `${provider}-order-1`;
    const first = await answer(provider, sid);
    const firstId = (await record(sid)).allocation_id;
    const second = await post(provider, streamEndedOf(provider, first.text), { [idField(provider)]: sid });
    const secondId = (await record(sid)).allocation_id;
    expect(podOf(second.text)).not.toBe(podOf(first.text));
    const before = await snapshotState(pool);
    // The old stream's stopped callback names the old allocation: 409, the re-homed call and its pod untouched, no ticket.
    expect((await stop(provider, sid, firstId)).status).toBe(409);
    expect(await snapshotState(pool)).toEqual(before);
    expect(await pool.redis.exists(pool.keys.rehomeTicket(sid))).toBe(0);
    expect((await record(sid)).allocation_id).toBe(secondId);
    const allocated = (await pool.redis.xrange(pool.keys.callStream(), '-', '+')).filter(([, fields]) => fields[1] === 'call.allocated' && fields[3] === sid);
    expect(allocated).toHaveLength(2);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it.each(['twilio', 'plivo'] as const)('%s: a call its agent released before the stream ended hangs up, and its stream-stopped callback leaves no ticket', async (provider) => {
    await start({ REHOME_ENABLED: 'true' });
    const sid = `${provider}-released-1`;
    const first = await answer(provider, sid);
    const firstId = (await record(sid)).allocation_id;
    expect((await pool.scripts.release(sid, 'agent')).ok).toBe(true);
    expect(JSON.parse((await stop(provider, sid, firstId)).text).released).toBe(false);
    expect(await pool.redis.exists(pool.keys.rehomeTicket(sid))).toBe(0);
    const before = await snapshotState(pool);
    expect(await post(provider, streamEndedOf(provider, first.text), { [idField(provider)]: sid })).toEqual({ status: 200, text: '<Response><Hangup/></Response>' });
    expect(await snapshotState(pool)).toEqual(before);
  });

  it('the final status callback (the caller hung up) or the agent\'s release after the stream-stopped callback ends the ticket; another pod\'s release does not', async () => {
    await start({ REHOME_ENABLED: 'true' });
    const first = await answer('twilio', 'tw-hungup-1');
    const firstId = (await record('tw-hungup-1')).allocation_id;
    const pod = podOf(first.text);
    await stop('twilio', 'tw-hungup-1', firstId);
    expect(await pool.scripts.release('tw-hungup-1', 'agent', 'call.released', Date.now(), undefined, { scope: { podName: pod === 'voice-agent-1' ? 'voice-agent-2' : 'voice-agent-1' } })).toEqual({ ok: false, code: ScriptCode.NotFound });
    expect(await pool.redis.exists(pool.keys.rehomeTicket('tw-hungup-1'))).toBe(1);
    expect((await post('twilio', '/api/v1/twilio/status', { CallSid: 'tw-hungup-1', CallStatus: 'completed' })).status).toBe(200);
    expect(await pool.redis.exists(pool.keys.rehomeTicket('tw-hungup-1'))).toBe(0);
    expect(await post('twilio', streamEndedOf('twilio', first.text), { CallSid: 'tw-hungup-1' })).toEqual({ status: 200, text: '<Response><Hangup/></Response>' });

    const second = await answer('plivo', 'pl-agent-1');
    const secondId = (await record('pl-agent-1')).allocation_id;
    await stop('plivo', 'pl-agent-1', secondId);
    expect(await pool.scripts.release('pl-agent-1', 'agent', 'call.released', Date.now(), undefined, { allocationId: Number(secondId), scope: { podName: podOf(second.text) } })).toEqual({ ok: false, code: ScriptCode.NotFound });
    expect(await pool.redis.exists(pool.keys.rehomeTicket('pl-agent-1'))).toBe(0);
    expect(await post('plivo', streamEndedOf('plivo', second.text), { CallUUID: 'pl-agent-1' })).toEqual({ status: 200, text: '<Response><Hangup/></Response>' });
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('a forged stream-ended request for an allocation with no call and no ticket changes nothing; a ticket names only its own allocation', async () => {
    await start({ REHOME_ENABLED: 'true' });
    const first = await answer('twilio', 'tw-forge-1');
    const firstId = (await record('tw-forge-1')).allocation_id;
    expect((await stop('twilio', 'tw-forge-1', firstId)).status).toBe(200);
    const before = await snapshotState(pool);
    // Another call_sid with no call and no ticket, then this call's ticket under another allocation_id.
    expect(await post('twilio', `/api/v1/twilio/stream-ended?allocation_id=${firstId}`, { CallSid: 'tw-never-1' })).toEqual({ status: 200, text: '<Response><Hangup/></Response>' });
    expect(await post('twilio', `/api/v1/twilio/stream-ended?allocation_id=${Number(firstId) + 1000}`, { CallSid: 'tw-forge-1' })).toEqual({ status: 200, text: '<Response><Hangup/></Response>' });
    expect(await snapshotState(pool)).toEqual(before);
    // The genuine request still re-homes it.
    expect(podOf((await post('twilio', streamEndedOf('twilio', first.text), { CallSid: 'tw-forge-1' })).text)).not.toBe('');
  });

  it('bad requests are refused and change nothing: forged signature 403, no or bad allocation_id 400, Exotel 404; a stale one gets the failure document', async () => {
    await start({ REHOME_ENABLED: 'true' });
    const first = await answer('twilio', 'tw-bad-1');
    const ended = streamEndedOf('twilio', first.text);
    const before = await snapshotState(pool);
    const refused = async (answerPromise: Promise<Answer>) => {
      const { status, text } = await answerPromise;
      return { status, code: (JSON.parse(text) as { code: string }).code };
    };
    expect(await refused(post('twilio', ended, { CallSid: 'tw-bad-1' }, true))).toEqual({ status: 403, code: 'SIGNATURE_INVALID' });
    expect(await refused(post('twilio', '/api/v1/twilio/stream-ended', { CallSid: 'tw-bad-1' }))).toEqual({ status: 400, code: 'INVALID_FIELD' });
    expect(await refused(post('twilio', '/api/v1/twilio/stream-ended?allocation_id=x1', { CallSid: 'tw-bad-1' }))).toEqual({ status: 400, code: 'INVALID_FIELD' });
    expect((await refused(post('twilio', ended, {}))).status).toBe(400);
    // Stale (neither the current allocation nor the one re-homed from): a 200 failure document, not a 409 the
    // provider would turn into "application error"; the live call's record, pod and allocation are untouched.
    expect(await post('twilio', '/api/v1/twilio/stream-ended?allocation_id=999999', { CallSid: 'tw-bad-1' })).toEqual({ status: 200, text: expect.stringMatching(TWILIO_FAILURE) });
    expect(await post('plivo', '/api/v1/plivo/stream-ended?allocation_id=999999', { CallUUID: 'tw-bad-1' })).toEqual({ status: 200, text: expect.stringMatching(PLIVO_FAILURE) });
    expect((await fetch(`${base}/api/v1/exotel/stream-ended?allocation_id=1`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"CallSid":"tw-bad-1"}' })).status).toBe(404);
    expect(await snapshotState(pool)).toEqual(before);
  });

  it.each(['twilio', 'plivo'] as const)('%s: a stalled call redirected by the liveness job: the old agent\'s release is 409 before and after the stream-stopped callback, and the stream-ended request still re-homes it (issue 20)', async (provider) => {
    await start({ REHOME_ENABLED: 'true' });
    const liveness = new LivenessScripts(pool.redis, pool.keys, 10000);
    const sid = `${provider}-stalled-1`;
    const first = await answer(provider, sid);
    const firstId = (await record(sid)).allocation_id;
    const firstPod = podOf(first.text);
    await pool.scripts.connect(sid, provider, Number(firstId));
    // The agent's media stopped 3 s ago (Redis clock): the stall step keeps it for a redirect.
    await liveness.recordHeartbeat(firstPod, [{ callSid: sid, allocationId: Number(firstId), mediaIn: 10, mediaOut: 10 }]);
    const [seconds] = await pool.redis.time();
    const past = Number(seconds) * 1000 - 3000;
    await pool.redis.hset(pool.keys.call(sid), 'media_in_at', past, 'connected_at', past);
    await pool.redis.zadd(pool.keys.callMedia(), past, sid);
    expect((await liveness.endStalledCalls(2000, undefined, ['twilio', 'plivo'])).callsToRehome).toEqual([{ callSid: sid, provider, allocationId: firstId }]);

    // The thawed agent releases its call (its pod, its allocation) before the redirected stream stops: 409, nothing changes.
    const agentRelease = () => pool.scripts.release(sid, 'agent', 'call.released', Date.now(), undefined, { allocationId: Number(firstId), scope: { podName: firstPod } });
    let before = await snapshotState(pool);
    expect(await agentRelease()).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
    expect(await snapshotState(pool)).toEqual(before);
    // The stream-stopped callback releases it into its ticket; the agent's release after it is still 409.
    expect(JSON.parse((await stop(provider, sid, firstId)).text).released).toBe(true);
    before = await snapshotState(pool);
    expect(await agentRelease()).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
    expect(await snapshotState(pool)).toEqual(before);
    expect(await pool.redis.exists(pool.keys.rehomeTicket(sid))).toBe(1);

    const second = await post(provider, streamEndedOf(provider, first.text), { [idField(provider)]: sid });
    expect(second.status).toBe(200);
    expect(podOf(second.text)).not.toBe('');
    expect(podOf(second.text)).not.toBe(firstPod);
    expect(second.text).toContain('rehome_from');
    expect(await agentRelease()).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it.each(['twilio', 'plivo'] as const)('%s: a stream-ended request whose CallStatus is final hangs up: the call and its ticket end, no pod is allocated (issue 20)', async (provider) => {
    await start({ REHOME_ENABLED: 'true' });
    const sid = `${provider}-final-1`;
    const first = await answer(provider, sid);
    const firstId = (await record(sid)).allocation_id;
    expect(JSON.parse((await stop(provider, sid, firstId)).text).released).toBe(true);
    expect(await pool.redis.exists(pool.keys.rehomeTicket(sid))).toBe(1);
    const allocated = async () => (await pool.redis.xrange(pool.keys.callStream(), '-', '+')).filter(([, fields]) => fields[1] === 'call.allocated' && fields[3] === sid).length;
    expect(await allocated()).toBe(1);
    expect(await post(provider, streamEndedOf(provider, first.text), { [idField(provider)]: sid, CallStatus: 'completed' }))
      .toEqual({ status: 200, text: '<Response><Hangup/></Response>' });
    expect(await pool.redis.exists(pool.keys.rehomeTicket(sid))).toBe(0);
    expect(await record(sid)).toEqual({});
    expect(await allocated()).toBe(1);

    // A live call (no stream-stopped callback yet): released with the provider's status, not re-homed.
    const live = `${provider}-final-2`;
    const liveAnswer = await answer(provider, live);
    expect(await post(provider, streamEndedOf(provider, liveAnswer.text), { [idField(provider)]: live, CallStatus: 'busy' }))
      .toEqual({ status: 200, text: '<Response><Hangup/></Response>' });
    expect(await record(live)).toEqual({});
    const released = (await pool.redis.xrange(pool.keys.callStream(), '-', '+')).map(([, fields]) => fields).filter((fields) => fields[1] === 'call.released' && fields[3] === live);
    expect(released).toEqual([expect.arrayContaining(['reason', 'provider_busy'])]);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it.each(['twilio', 'plivo'] as const)('%s: a Redis failure answers the failure document at 200 (counted), changes nothing, and the retry re-homes', async (provider) => {
    await start({ REHOME_ENABLED: 'true' });
    const sid = `${provider}-redis-1`;
    const first = await answer(provider, sid);
    const ended = streamEndedOf(provider, first.text);
    const saved = await record(sid);
    // Not a hash: every script reading the call fails in Redis (WRONGTYPE), as an unreachable Redis would.
    await pool.redis.del(pool.keys.call(sid));
    await pool.redis.set(pool.keys.call(sid), 'not a call');
    const before = await snapshotState(pool);
    const failed = await post(provider, ended, { [idField(provider)]: sid });
    expect(failed).toEqual({ status: 200, text: expect.stringMatching(provider === 'twilio' ? TWILIO_FAILURE : PLIVO_FAILURE) });
    // The final-status branch releases through the same store: also the failure document, never a 503.
    expect(await post(provider, ended, { [idField(provider)]: sid, CallStatus: 'completed' })).toEqual(failed);
    expect(await snapshotState(pool)).toEqual(before);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`^smart_router_rehomes_total\\{[^}]*provider="${provider}"[^}]*result="redis_error"[^}]*\\} 2$`, 'm'));
    expect(metrics).toMatch(/^smart_router_redis_errors_total\{[^}]*operation="rehome"[^}]*\} [1-9]/m);
    expect(metrics).toMatch(/^smart_router_redis_errors_total\{[^}]*operation="release"[^}]*\} [1-9]/m);
    // Redis answers again: the provider's next request re-homes the call.
    await pool.redis.del(pool.keys.call(sid));
    await pool.redis.hset(pool.keys.call(sid), saved);
    const second = await post(provider, ended, { [idField(provider)]: sid });
    expect(second.text).toContain('rehome_from');
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('re-homing off (the default): answer documents carry no stream-ended URL, and a stream-ended request ends the call', async () => {
    await start({});
    const first = await answer('twilio', 'tw-off-1');
    expect(first.text).toMatch(/^<Response><Connect><Stream /);
    const id = (await record('tw-off-1')).allocation_id;
    expect(await post('twilio', `/api/v1/twilio/stream-ended?allocation_id=${id}`, { CallSid: 'tw-off-1' })).toEqual({ status: 200, text: '<Response><Hangup/></Response>' });
    expect(await record('tw-off-1')).toEqual({});
  });

  it('a bad REHOME_MAX or REHOME_ENABLED stops the app naming the variable', async () => {
    await expect(start({ REHOME_MAX: '-1' })).rejects.toThrow(/REHOME_MAX must be >= 0/);
    await expect(start({ REHOME_ENABLED: 'maybe' })).rejects.toThrow(/REHOME_ENABLED must be true or false/);
  });
});
