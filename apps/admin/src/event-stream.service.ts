import { Logger, OnModuleDestroy } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import type Redis from 'ioredis';
import type { Counter } from '@opentelemetry/api';
import { ApiError } from '@smart-router/http';
import { Telemetry } from '@smart-router/telemetry';
import type { EventStreamLimits } from './admin.config';
import { EventLogRepository, isStreamId } from './event-log.repository';

/** How long one XREAD blocks; an SSE comment keeps proxies from timing the stream out meanwhile. */
export const STREAM_BLOCK_MS = 10_000;
/** Concurrent live streams per admin process: each holds its own Redis connection. */
export const MAX_STREAMS = 32;
/** The SSE event name of a replay cut short (documented in README "Live events"). */
export const RESYNC_EVENT = 'resync';

/** Why a client was dropped: its unsent bytes passed the budget, or its socket did not drain in time. */
export type DropReason = 'buffer' | 'stall';

/** What the feed counts (SPEC 10.2): dropped slow readers and replays cut short. */
export class EventStreamMetrics {
  private readonly dropped: Counter;
  private readonly resyncs: Counter;

  constructor(telemetry: Telemetry) {
    const meter = telemetry.meter();
    this.dropped = meter.createCounter('smart_router_event_stream_dropped_total', { description: 'Live event feed clients dropped for reading too slowly, by reason (buffer, stall)' });
    this.resyncs = meter.createCounter('smart_router_event_stream_resyncs_total', { description: 'Live event feed resumes cut to EVENT_STREAM_REPLAY_MAX entries (a resync event was sent)' });
  }

  drop(reason: DropReason): void {
    this.dropped.add(1, { reason });
  }

  resync(): void {
    this.resyncs.add(1);
  }
}

/** One live client: its response, its blocking Redis connection, and the way out. */
interface FeedClient {
  readonly response: ServerResponse;
  connection: Redis | null;
  closed: boolean;
  /** Ends a pending wait for `drain` (the client left or was dropped). */
  wake: (() => void) | null;
  close: () => void;
}

/**
 * Server-sent events fed by the Redis streams (GET /api/v1/admin/events/stream).
 * Each client gets a dedicated worker-profile connection, because XREAD BLOCK
 * holds the connection it runs on; closing the client closes it. The event id
 * is the position in every stream ("<calls id>,<pods id>,<fleet id>"), so a reconnect with
 * Last-Event-ID resumes exactly after the last event the client saw.
 *
 * Bounded under abuse (SPEC 10.2): the next XREAD runs only once the socket
 * took the previous batch (`drain`), so a slow reader holds at most one batch
 * in admin, never the streams' backlog; a client whose unsent bytes pass
 * EVENT_STREAM_BUFFER_BYTES, or whose socket does not drain within
 * EVENT_STREAM_STALL_SECONDS, is dropped (destroyed: its Redis connection and
 * slot are freed at once); a Last-Event-ID more than EVENT_STREAM_REPLAY_MAX
 * entries behind resumes that far back with a `resync` event.
 */
export class EventStreamService implements OnModuleDestroy {
  private readonly open = new Set<() => void>();
  private readonly logger = new Logger('EventStream');

  constructor(
    private readonly events: EventLogRepository,
    private readonly connect: () => Redis,
    private readonly limits: EventStreamLimits,
    private readonly metrics: EventStreamMetrics,
  ) {}

  /** Live streams holding a slot (tests, shutdown). */
  get openStreams(): number {
    return this.open.size;
  }

  /** Parses a Last-Event-ID; 400 when it is not one position per stream. */
  parsePosition(lastEventId: string | undefined): string[] | undefined {
    if (lastEventId === undefined || lastEventId === '') return undefined;
    const positions = lastEventId.split(',');
    if (positions.length !== this.events.streams.length || !positions.every(isStreamId)) {
      throw ApiError.badRequest(`Last-Event-ID must be ${this.events.streams.length} stream ids joined by commas`, 'INVALID_LAST_EVENT_ID');
    }
    return positions;
  }

  /** Starts streaming to `response`; resolves once the headers are out. Throws 503 (nothing written) when Redis is down or too many streams are open. */
  async start(response: ServerResponse, from: string[] | undefined): Promise<void> {
    // The slot is taken here, before the first await: concurrent opens are
    // counted one by one, so none can pass the cap while another awaits Redis.
    if (this.open.size >= MAX_STREAMS) throw ApiError.unavailable(`at most ${MAX_STREAMS} live event streams per admin replica`, 'TOO_MANY_STREAMS');
    const client: FeedClient = {
      response,
      connection: null,
      closed: false,
      wake: null,
      close: () => {
        if (client.closed) return;
        client.closed = true;
        this.open.delete(client.close);
        client.connection?.disconnect();
        client.wake?.();
        // Destroyed, not ended: a slow reader would never take the rest, and a
        // kept-alive idle socket would hold the server's close until the client drops it.
        response.destroy();
      },
    };
    this.open.add(client.close);
    // A client leaving while the starting point is read frees its slot at once.
    response.on('close', client.close);

    let start: string[];
    let capped = false;
    try {
      // Read before the headers go out: a Redis outage is a 503, not an empty stream.
      if (from) ({ positions: start, capped } = await this.events.boundedResume(from, this.limits.replayMax));
      else start = await this.events.heads();
    } catch (error) {
      // The 503 goes out on this response: free the slot without destroying it.
      response.off('close', client.close);
      client.closed = true;
      this.open.delete(client.close);
      throw error;
    }
    if (client.closed) return;

    client.connection = this.connect();
    // A write racing a client reset must never become an unhandled 'error'.
    response.on('error', client.close);
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      // nginx must pass each event on at once instead of buffering the response.
      'x-accel-buffering': 'no',
    });
    let head = `retry: 1000\n: positions ${start.join(',')}\n\n`;
    if (capped && from) {
      this.metrics.resync();
      const payload = { type: RESYNC_EVENT, reason: 'replay_limit', replay_max: this.limits.replayMax, requested: from.join(','), resumed_from: start.join(',') };
      head += `event: ${RESYNC_EVENT}\nid: ${start.join(',')}\ndata: ${JSON.stringify(payload)}\n\n`;
    }
    const connection = client.connection;
    void this.send(client, head)
      .then((open) => (open ? this.pump(client, connection, start) : undefined))
      .catch((error: unknown) => {
        if (!client.closed) this.logger.warn(`event stream ended: ${(error as Error).message}`);
      })
      .finally(client.close);
  }

  private async pump(client: FeedClient, connection: Redis, start: string[]): Promise<void> {
    let positions = start;
    const index = new Map(this.events.streams.map((stream, i) => [stream.name, i]));
    while (!client.closed) {
      const read = await this.events.readAfter(connection, positions, STREAM_BLOCK_MS);
      if (client.closed) return;
      if (read.events.length === 0) {
        if (!(await this.send(client, ': keep-alive\n\n'))) return;
        continue;
      }
      // Each event carries the position after it in every stream, so Last-Event-ID resumes right after it.
      const cursor = [...positions];
      let chunk = '';
      for (const event of read.events) {
        cursor[index.get(event.stream) ?? 0] = event.id;
        chunk += `id: ${cursor.join(',')}\ndata: ${JSON.stringify(event)}\n\n`;
      }
      positions = read.positions;
      // Nothing more is read from Redis until the client has taken this.
      if (!(await this.send(client, chunk))) return;
    }
  }

  /**
   * Writes `text`; resolves true once the client can take more, false when it
   * left or was dropped. A full socket is waited for (`drain`), never buffered
   * past: unsent bytes over the budget, or no drain within the stall limit,
   * drop the client.
   */
  private send(client: FeedClient, text: string): Promise<boolean> {
    const { response } = client;
    if (client.closed) return Promise.resolve(false);
    const flushed = response.write(text);
    if (response.writableLength > this.limits.bufferBytes) {
      this.drop(client, 'buffer');
      return Promise.resolve(false);
    }
    if (flushed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (open: boolean) => {
        clearTimeout(timer);
        response.off('drain', onDrain);
        client.wake = null;
        resolve(open && !client.closed);
      };
      const onDrain = () => finish(true);
      const timer = setTimeout(() => {
        finish(false);
        this.drop(client, 'stall');
      }, this.limits.stallMs);
      client.wake = () => finish(false);
      response.on('drain', onDrain);
    });
  }

  private drop(client: FeedClient, reason: DropReason): void {
    if (client.closed) return;
    this.metrics.drop(reason);
    this.logger.warn(`event stream client dropped (${reason === 'buffer' ? `more than ${this.limits.bufferBytes} bytes unsent` : `socket not drained within ${this.limits.stallMs} ms`})`);
    client.close();
  }

  onModuleDestroy(): void {
    // Open streams would hold the HTTP server's close (and the shutdown) until clients leave.
    for (const close of [...this.open]) close();
  }
}
