import { ClientRequest, get as httpGet } from 'node:http';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, createPoolFixture, sharedRedisUrl, waitFor } from '@smart-router/testing';
import { bootstrap } from './main';

async function startAdmin(pool: PoolFixture, extra: Record<string, string> = {}) {
  const app: NestFastifyApplication = await bootstrap({
    REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true', ...extra,
  });
  const address = app.getHttpServer().address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return { app, base };
}

async function getJson(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/**
 * Reads server-sent events from a live stream. node:http with its own socket
 * (no pooled keep-alive connection, which would outlive the test and hold the
 * server's close).
 */
class SseReader {
  readonly events: { id: string; data: Record<string, unknown> }[] = [];
  private request: ClientRequest | null = null;
  private buffer = '';
  status = 0;
  contentType = '';

  static open(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
    const reader = new SseReader();
    return new Promise((resolve, reject) => {
      reader.request = httpGet(url, { headers, agent: false }, (response) => {
        reader.status = response.statusCode ?? 0;
        reader.contentType = String(response.headers['content-type'] ?? '');
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => reader.take(chunk));
        response.on('error', () => undefined);
        resolve(reader);
      });
      reader.request.on('error', reject);
    });
  }

  private take(chunk: string) {
    this.buffer += chunk;
    let end;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const id = /^id: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (id && data) this.events.push({ id, data: JSON.parse(data) as Record<string, unknown> });
    }
  }

  close() {
    this.request?.destroy();
  }
}

describe('event log and live events (SPEC 9.4)', () => {
  let pool: PoolFixture;
  let admin: Awaited<ReturnType<typeof startAdmin>>;
  const allocate = (callSid: string) => pool.scripts.allocate({ callSid, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false });

  // A fresh key prefix per test: the event log of one test is exactly what it wrote.
  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    admin = await startAdmin(pool);
  });
  afterEach(() => admin.app.close().finally(() => pool.close()));

  it('answers what happened to a call, newest first, across both streams, with filters', async () => {
    await allocate('ev-1');
    await allocate('ev-2');
    await pool.scripts.connect('ev-2', 'api', undefined, 1234);
    await pool.scripts.release('ev-1', 'hangup');
    // An explicit later id: entries of two streams written in the same millisecond have no defined order.
    await pool.redis.xadd(pool.keys.podStream(), `${Date.now() + 1000}-0`, 'type', 'pod.upsert', 'name', 'voice-agent-0', 'uid', 'u-0', 'ready', '1', 'terminating', '0', 'labels', '{}', 'rv', '7', 'term', '1', 'traceparent', '00-abc');

    const all = await getJson(`${admin.base}/api/v1/admin/events`);
    expect(all.status).toBe(200);
    const events = all.body.events as Record<string, unknown>[];
    expect(events.map((event) => event.type)).toEqual(['pod.upsert', 'call.released', 'call.connected', 'call.allocated', 'call.allocated']);
    expect(events[0]).toMatchObject({ stream: 'pods', pod: 'voice-agent-0', uid: 'u-0' });
    expect(events[0]).not.toHaveProperty('traceparent');
    // Call events carry state and connected_at (SPEC 9.2): a time, or null for a call that never connected.
    expect(events[1]).toMatchObject({ stream: 'calls', call_sid: 'ev-1', reason: 'hangup', state: 'pending', connected_at: null });
    expect(events[2]).toMatchObject({ call_sid: 'ev-2', state: 'connected', connected_at: 1234 });
    for (const event of events) expect(typeof event.at).toBe('number');

    const ofCall = await getJson(`${admin.base}/api/v1/admin/events?call_sid=ev-1`);
    expect((ofCall.body.events as Record<string, unknown>[]).map((event) => event.type)).toEqual(['call.released', 'call.allocated']);
    // `type` with or without the `call.` prefix.
    for (const type of ['released', 'call.released']) {
      const released = await getJson(`${admin.base}/api/v1/admin/events?type=${type}`);
      expect((released.body.events as Record<string, unknown>[]).map((event) => event.call_sid)).toEqual(['ev-1']);
    }
    const ofPod = await getJson(`${admin.base}/api/v1/admin/events?pod=voice-agent-0`);
    expect((ofPod.body.events as Record<string, unknown>[]).map((event) => event.type)).toEqual(['pod.upsert']);
    const limited = await getJson(`${admin.base}/api/v1/admin/events?limit=2`);
    expect((limited.body.events as Record<string, unknown>[]).map((event) => event.type)).toEqual(['pod.upsert', 'call.released']);
  });

  it('an operator drain and undrain are events (once per change); `type` matches without any family prefix', async () => {
    const post = (path: string) => fetch(`${admin.base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pod_name: 'voice-agent-3' }) });
    await allocate('dr-1');
    expect((await post('/api/v1/drain')).status).toBe(200);
    expect((await post('/api/v1/drain')).status).toBe(200); // already drained: no second event
    expect((await post('/api/v1/undrain')).status).toBe(200);
    await pool.redis.xadd(pool.keys.fleetStream(), '*', 'type', 'fleet.scaled', 'from', '5', 'to', '6', 'at', String(Date.now()));

    const ofPod = (await getJson(`${admin.base}/api/v1/admin/events?pod=voice-agent-3`)).body.events as Record<string, unknown>[];
    expect(ofPod.filter((event) => String(event.type).startsWith('pod.')).map((event) => [event.type, event.tier, event.stream])).toEqual([
      ['pod.undrained', 'standard', 'calls'],
      ['pod.drained', 'standard', 'calls'],
    ]);
    for (const [type, expected] of [['drained', 'pod.drained'], ['pod.drained', 'pod.drained'], ['scaled', 'fleet.scaled'], ['undrained', 'pod.undrained']]) {
      const found = (await getJson(`${admin.base}/api/v1/admin/events?type=${type}`)).body.events as Record<string, unknown>[];
      expect({ type, found: found.map((event) => event.type) }).toEqual({ type, found: [expected] });
    }
  });

  it.each([
    ['limit=0', 'INVALID_LIMIT'],
    ['limit=1001', 'INVALID_LIMIT'],
    ['limit=abc', 'INVALID_LIMIT'],
    ['limit=1.5', 'INVALID_LIMIT'],
    ['pod=Bad_Pod', 'INVALID_POD_NAME'],
    ['call_sid=%20bad%20', 'INVALID_CALL_SID'],
    ['type=DROP%20TABLE', 'INVALID_EVENT_TYPE'],
    ['type=a&type=b', 'INVALID_QUERY'],
  ])('refuses %s with 400 %s', async (query, code) => {
    const answer = await getJson(`${admin.base}/api/v1/admin/events?${query}`);
    expect(answer).toEqual({ status: 400, body: { error: expect.any(String), code } });
  });

  it('streams new events live and resumes after Last-Event-ID without loss or repeats', async () => {
    await allocate('before-stream');
    const first = await SseReader.open(`${admin.base}/api/v1/admin/events/stream`);
    expect(first.status).toBe(200);
    expect(first.contentType).toMatch(/^text\/event-stream/);
    await allocate('live-1');
    await waitFor(() => first.events.length >= 1, { timeoutMs: 5000 });
    // Only what happened after the stream opened.
    expect(first.events.map((event) => event.data.call_sid)).toEqual(['live-1']);
    expect(first.events[0].data).toMatchObject({ type: 'call.allocated', stream: 'calls' });
    const resumeFrom = first.events[0].id;
    first.close();

    await pool.scripts.release('live-1', 'hangup');
    await allocate('live-2');
    const second = await SseReader.open(`${admin.base}/api/v1/admin/events/stream`, { 'last-event-id': resumeFrom });
    await waitFor(() => second.events.length >= 2, { timeoutMs: 5000 });
    second.close();
    expect(second.events.map((event) => [event.data.type, event.data.call_sid])).toEqual([
      ['call.released', 'live-1'],
      ['call.allocated', 'live-2'],
    ]);
  });

  it('refuses a malformed Last-Event-ID with 400 and needs a viewer token when tokens are set', async () => {
    const bad = await getJson(`${admin.base}/api/v1/admin/events/stream`, { 'last-event-id': 'nope' });
    expect(bad).toEqual({ status: 400, body: { error: expect.any(String), code: 'INVALID_LAST_EVENT_ID' } });
    await admin.app.close();
    admin = await startAdmin(pool, { ADMIN_VIEWER_TOKENS: 'view-1', ADMIN_OPERATOR_TOKENS: 'op-1' });
    expect((await getJson(`${admin.base}/api/v1/admin/events/stream`)).status).toBe(401);
    expect((await getJson(`${admin.base}/api/v1/admin/events`)).status).toBe(401);
    expect(await getJson(`${admin.base}/api/v1/admin/session`, { authorization: 'Bearer view-1' })).toEqual({ status: 200, body: { role: 'viewer', tokens_required: true } });
    expect(await getJson(`${admin.base}/api/v1/admin/session`, { authorization: 'Bearer op-1' })).toEqual({ status: 200, body: { role: 'operator', tokens_required: true } });
    const stream = await SseReader.open(`${admin.base}/api/v1/admin/events/stream`, { authorization: 'Bearer view-1' });
    expect(stream.status).toBe(200);
    stream.close();
  });

  it('answers 503 (not an empty log) when Redis fails', async () => {
    await pool.redis.set(pool.keys.callStream(), 'not a stream');
    const answer = await getJson(`${admin.base}/api/v1/admin/events`);
    expect(answer).toEqual({ status: 503, body: { error: expect.any(String), code: 'REDIS_UNAVAILABLE' } });
    const stream = await getJson(`${admin.base}/api/v1/admin/events/stream`);
    expect(stream.status).toBe(503);
  });

  it('lists every pod with tier, UID, draining and calls; serves the dashboard assets', async () => {
    await allocate('p-1');
    await fetch(`${admin.base}/api/v1/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pod_name: 'voice-agent-4' }) });
    const pods = await getJson(`${admin.base}/api/v1/admin/pods`);
    expect(pods.status).toBe(200);
    const rows = pods.body.pods as Record<string, unknown>[];
    expect(rows.map((row) => row.pod_name)).toEqual(['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4']);
    expect(rows[4]).toMatchObject({ tier: 'standard', draining: true, pending_removal: false, ready: true, uid: pool.uids.get('voice-agent-4') });
    // A pod drained for removal by a scale-down is draining too, and says why.
    await pool.redis.set(pool.keys.podRemoving('voice-agent-3'), '1');
    const removing = ((await getJson(`${admin.base}/api/v1/admin/pods`)).body.pods as Record<string, unknown>[])[3];
    expect(removing).toMatchObject({ pod_name: 'voice-agent-3', draining: true, pending_removal: true });
    await pool.redis.del(pool.keys.podRemoving('voice-agent-3'));
    expect(rows.reduce((sum, row) => sum + Number(row.active_calls), 0)).toBe(1);

    const page = await fetch(`${admin.base}/dashboard/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toContain('dashboard.js');
    expect(html).not.toMatch(/https?:\/\//); // no CDN: works offline
    const script = await fetch(`${admin.base}/dashboard/dashboard.js`);
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(await script.text()).not.toMatch(/https?:\/\//);
    const redirect = await fetch(`${admin.base}/dashboard`, { redirect: 'manual' });
    expect([redirect.status, redirect.headers.get('location')]).toEqual([308, '/dashboard/']);
    expect((await fetch(`${admin.base}/dashboard/..%2Fmain.js`)).status).toBe(404);
    // A missing asset's 404 does not repeat the name asked for.
    const missing = await fetch(`${admin.base}/dashboard/ECHO-marker.js`);
    expect([missing.status, await missing.json()]).toEqual([404, { error: 'no such dashboard asset', code: 'NOT_FOUND' }]);
  });
});
