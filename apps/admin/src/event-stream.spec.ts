import { ClientRequest, IncomingMessage, get as httpGet } from 'node:http';
import { Socket, connect } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, RedisServer, createPoolFixture, sharedRedisUrl, waitFor } from '@smart-router/testing';
import { EventStreamService, MAX_STREAMS } from './event-stream.service';
import { bootstrap } from './main';

/**
 * SPEC 10.2 "The live feed respects slow readers": a reader that never reads
 * is dropped and admin's memory stays flat, replay from an old id is capped
 * with a resync event, the stream cap cannot be raced past, and a client
 * reset mid-stream ends only that client.
 */

async function startAdmin(pool: PoolFixture, extra: Record<string, string> = {}) {
  const app: NestFastifyApplication = await bootstrap({
    REDIS_URL: extra.REDIS_URL ?? sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true', ...extra,
  });
  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { app, port, base: `http://127.0.0.1:${port}`, streams: app.get(EventStreamService) };
}
type Admin = Awaited<ReturnType<typeof startAdmin>>;

/** A live-feed reader that keeps every block: event name, id and parsed data. */
class FeedReader {
  readonly blocks: { event: string; id?: string; data: Record<string, unknown> }[] = [];
  status = 0;
  body = '';
  private buffer = '';
  private constructor(private readonly request: ClientRequest) {}

  static open(base: string, headers: Record<string, string> = {}): Promise<FeedReader> {
    return new Promise((resolve, reject) => {
      // Its own socket (agent: false): a pooled keep-alive connection would outlive the test.
      const request = httpGet(`${base}/api/v1/admin/events/stream`, { headers, agent: false }, (response: IncomingMessage) => {
        reader.status = response.statusCode ?? 0;
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => reader.take(chunk));
        response.on('error', () => undefined);
        resolve(reader);
      });
      const reader = new FeedReader(request);
      request.on('error', reject);
    });
  }

  private take(chunk: string) {
    if (this.status !== 200) {
      this.body += chunk;
      return;
    }
    this.buffer += chunk;
    let end;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (data === undefined) continue;
      this.blocks.push({ event: /^event: (.*)$/m.exec(block)?.[1] ?? 'message', id: /^id: (.*)$/m.exec(block)?.[1], data: JSON.parse(data) as Record<string, unknown> });
    }
  }

  close() {
    this.request.destroy();
  }
}

/** A client that sends the request and then never reads a byte of the answer. */
function neverReadingClient(port: number, lastEventId: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`GET /api/v1/admin/events/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ${lastEventId}\r\n\r\n`);
      // Paused: nothing is read from the kernel, whose buffers fill, then admin's.
      socket.pause();
      resolve(socket);
    });
    socket.on('error', () => undefined);
    socket.once('error', reject);
  });
}

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
/** Bytes of live heap (after a full collection), so garbage never reads as growth. */
function liveHeap(): number {
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

/** Appends `count` entries of about `bytes` each to a stream (the call stream by default), pipelined. */
async function backlog(pool: PoolFixture, count: number, bytes: number, stream = pool.keys.callStream()): Promise<void> {
  const filler = 'x'.repeat(bytes);
  const batch = Math.max(1, Math.floor(2_000_000 / bytes));
  for (let done = 0; done < count; done += batch) {
    const pipeline = pool.redis.pipeline();
    for (let index = done; index < Math.min(count, done + batch); index += 1) {
      pipeline.xadd(stream, '*', 'type', 'call.allocated', 'call_sid', `bulk-${index}`, 'pod', 'voice-agent-1', 'detail', filler);
    }
    await pipeline.exec();
  }
}

/** The default replay cap's worth of large entries in every stream: 30 MB an unbounded feed would pull into admin. */
async function largeBacklog(pool: PoolFixture, bytes: number): Promise<void> {
  for (const stream of [pool.keys.callStream(), pool.keys.podStream(), pool.keys.fleetStream()]) await backlog(pool, 1000, bytes, stream);
}

async function droppedCount(admin: Admin, reason: string): Promise<number> {
  const text = await (await fetch(`${admin.base}/metrics`)).text();
  return Number(new RegExp(`^smart_router_event_stream_dropped_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

describe('live event feed under abuse (SPEC 10.2)', () => {
  let pool: PoolFixture;
  let current: Admin | undefined;
  /** Starts the admin app for this test; afterEach closes it. */
  const start = async (on: PoolFixture, extra: Record<string, string> = {}) => (current = await startAdmin(on, extra));

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
  });
  afterEach(async () => {
    await current?.app.close();
    current = undefined;
    // The backlogs are large: give the shared server its memory back.
    await pool.redis.del(pool.keys.callStream(), pool.keys.podStream(), pool.keys.fleetStream());
    await pool.close();
  });

  it('drops a reader that never reads (unsent bytes over the budget) and admin memory stays flat', async () => {
    await largeBacklog(pool, 10_000);
    // The smallest budget, Node's own high-water mark: the write that finds the socket full leaves more than
    // that unsent, so the drop comes from the budget at once, not from the stall timer (one minute here).
    const admin = await start(pool, { EVENT_STREAM_BUFFER_BYTES: '16384', EVENT_STREAM_STALL_SECONDS: '60' });
    const baseline = liveHeap();
    const baselineRss = process.memoryUsage().rss;
    let peakHeap = baseline;
    let peakRss = baselineRss;
    // Counters live as long as the process's meter: compare with their value now.
    const droppedBefore = await droppedCount(admin, 'buffer');
    const socket = await neverReadingClient(admin.port, '0-0,0-0,0-0');
    try {
      await waitFor(async () => {
        peakHeap = Math.max(peakHeap, liveHeap());
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        return (await droppedCount(admin, 'buffer')) === droppedBefore + 1 && admin.streams.openStreams === 0;
      }, { timeoutMs: 15000, intervalMs: 20, what: 'the never-reading client to be dropped' });
    } finally {
      socket.destroy();
    }
    const MB = 1024 * 1024;
    // Generous bounds: the kernel's socket buffers and a batch or two, never the 30 MB behind them.
    expect((peakHeap - baseline) / MB).toBeLessThan(16);
    expect((peakRss - baselineRss) / MB).toBeLessThan(64);
    // The slot and the Redis connection are free: another client is served.
    const next = await FeedReader.open(admin.base);
    expect(next.status).toBe(200);
    next.close();
  });

  it('drops a reader whose socket stays full past EVENT_STREAM_STALL_SECONDS, even under the byte budget', async () => {
    await largeBacklog(pool, 5_000);
    // A budget no batch reaches: only the stall limit can drop this reader.
    const admin = await start(pool, { EVENT_STREAM_BUFFER_BYTES: String(64 * 1024 * 1024), EVENT_STREAM_STALL_SECONDS: '1' });
    const [stalledBefore, overBudgetBefore] = [await droppedCount(admin, 'stall'), await droppedCount(admin, 'buffer')];
    const socket = await neverReadingClient(admin.port, '0-0,0-0,0-0');
    try {
      const opened = Date.now();
      await waitFor(async () => (await droppedCount(admin, 'stall')) === stalledBefore + 1 && admin.streams.openStreams === 0, { timeoutMs: 10000, what: 'the stalled client to be dropped' });
      expect(Date.now() - opened).toBeGreaterThanOrEqual(900);
      expect(await droppedCount(admin, 'buffer')).toBe(overBudgetBefore);
    } finally {
      socket.destroy();
    }
  });

  it(`${MAX_STREAMS + 8} concurrent opens: exactly ${MAX_STREAMS} served, the rest 503 TOO_MANY_STREAMS; slots come back on close and on failed opens`, async () => {
    // A private server we may pause: every open then sits in its first Redis read together.
    const server = await RedisServer.start();
    const paused = await createPoolFixture({ url: server.url });
    try {
      const admin = await start(paused, { REDIS_URL: server.url });
      await paused.redis.call('CLIENT', 'PAUSE', '400', 'ALL');
      // Without Last-Event-ID each open reads the streams' heads first: the await a late reservation would race across.
      const readers = await Promise.all(Array.from({ length: MAX_STREAMS + 8 }, () => FeedReader.open(admin.base)));
      try {
        const served = readers.filter((reader) => reader.status === 200);
        const refused = readers.filter((reader) => reader.status !== 200);
        expect(served).toHaveLength(MAX_STREAMS);
        await waitFor(() => refused.every((reader) => reader.body.length > 0), { what: 'the refusals\' bodies' });
        expect(refused.map((reader) => [reader.status, JSON.parse(reader.body).code])).toEqual(Array(8).fill([503, 'TOO_MANY_STREAMS']));
        expect(admin.streams.openStreams).toBe(MAX_STREAMS);
      } finally {
        for (const reader of readers) reader.close();
      }
      await waitFor(() => admin.streams.openStreams === 0, { what: 'every slot back' });

      // Opens that fail on Redis (a 503 before the headers) give their slot back too.
      await paused.redis.set(paused.keys.callStream(), 'not a stream');
      const failed = await Promise.all(Array.from({ length: MAX_STREAMS + 8 }, () => FeedReader.open(admin.base, { 'last-event-id': '0-0,0-0,0-0' })));
      expect(failed.map((reader) => reader.status)).toEqual(Array(MAX_STREAMS + 8).fill(503));
      for (const reader of failed) reader.close();
      expect(admin.streams.openStreams).toBe(0);
      await paused.redis.del(paused.keys.callStream());
      const after = await FeedReader.open(admin.base);
      expect(after.status).toBe(200);
      after.close();
    } finally {
      await current?.app.close();
      current = undefined;
      await paused.close();
      await server.dispose();
    }
  });

  it('a Last-Event-ID more than EVENT_STREAM_REPLAY_MAX entries back gets a resync event, then only the newest entries', async () => {
    // More than one page (200 entries) back: the resume point is found page by page.
    const admin = await start(pool, { EVENT_STREAM_REPLAY_MAX: '250' });
    await backlog(pool, 300, 10);
    const ids = (await pool.redis.xrange(pool.keys.callStream(), '-', '+')).map(([id]) => id);

    const old = await FeedReader.open(admin.base, { 'last-event-id': '0-0,0-0,0-0' });
    await waitFor(() => old.blocks.length >= 251, { what: 'the resync and 250 events' });
    old.close();
    const [resync, ...events] = old.blocks;
    const resumedFrom = `${ids[49]},0-0,0-0`;
    expect(resync).toEqual({
      event: 'resync',
      id: resumedFrom,
      data: { type: 'resync', reason: 'replay_limit', replay_max: 250, requested: '0-0,0-0,0-0', resumed_from: resumedFrom },
    });
    expect(events.map((event) => [event.event, event.data.call_sid])).toEqual(Array.from({ length: 250 }, (_, i) => ['message', `bulk-${50 + i}`]));

    // Resuming from the resync's id, or from any id within the cap, replays exactly what follows it, without a resync.
    for (const [from, expected] of [[resumedFrom, 250], [`${ids[296]},0-0,0-0`, 3]] as const) {
      const recent = await FeedReader.open(admin.base, { 'last-event-id': from });
      await waitFor(() => recent.blocks.length >= expected, { what: `${expected} events` });
      recent.close();
      expect(recent.blocks.map((block) => block.event)).toEqual(Array(expected).fill('message'));
      expect(recent.blocks.map((block) => block.data.call_sid)).toEqual(Array.from({ length: expected }, (_, i) => `bulk-${300 - expected + i}`));
    }
    // An id Redis cannot hold is a 400, not a dropped stream.
    const huge = await FeedReader.open(admin.base, { 'last-event-id': '99999999999999999999-0,0-0,0-0' });
    expect([huge.status]).toEqual([400]);
    huge.close();
  });

  it('a client that resets the connection mid-stream ends only itself: slot and connection freed, the feed still serves', async () => {
    const admin = await start(pool);
    const errors: unknown[] = [];
    const onError = (error: unknown) => errors.push(error);
    process.on('uncaughtException', onError);
    try {
      const socket = connect(admin.port, '127.0.0.1');
      socket.on('error', () => undefined);
      let head = '';
      socket.on('data', (chunk: Buffer) => (head += chunk.toString('utf8')));
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write('GET /api/v1/admin/events/stream HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor(() => head.includes('retry: 1000'), { what: 'the stream to start' });
      expect(admin.streams.openStreams).toBe(1);
      // Events keep coming while the client vanishes with a TCP reset.
      await backlog(pool, 50, 100);
      socket.resetAndDestroy();
      await backlog(pool, 50, 100);
      await waitFor(() => admin.streams.openStreams === 0, { what: 'the reset client to be released' });
      const next = await FeedReader.open(admin.base);
      await backlog(pool, 1, 10);
      await waitFor(() => next.blocks.length === 1, { what: 'a live event on a new stream' });
      next.close();
    } finally {
      process.off('uncaughtException', onError);
    }
    expect(errors).toEqual([]);
  });
});
