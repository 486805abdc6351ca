import { Logger, OnModuleDestroy } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import type Redis from 'ioredis';
import { ApiError } from '@smart-router/http';
import { EventLogRepository } from './event-log.repository';

/** How long one XREAD blocks; an SSE comment keeps proxies from timing the stream out meanwhile. */
export const STREAM_BLOCK_MS = 10_000;
/** Concurrent live streams per admin process: each holds its own Redis connection. */
export const MAX_STREAMS = 32;

/**
 * Server-sent events fed by the Redis streams (GET /api/v1/admin/events/stream).
 * Each client gets a dedicated worker-profile connection, because XREAD BLOCK
 * holds the connection it runs on; closing the client closes it. The event id
 * is the position in every stream ("<calls id>,<pods id>,<fleet id>"), so a reconnect with
 * Last-Event-ID resumes exactly after the last event the client saw.
 */
export class EventStreamService implements OnModuleDestroy {
  private readonly open = new Set<() => void>();
  private readonly logger = new Logger('EventStream');

  constructor(private readonly events: EventLogRepository, private readonly connect: () => Redis) {}

  /** Parses a Last-Event-ID; 400 when it is not one position per stream. */
  parsePosition(lastEventId: string | undefined): string[] | undefined {
    if (lastEventId === undefined || lastEventId === '') return undefined;
    const positions = lastEventId.split(',');
    if (positions.length !== this.events.streams.length || !positions.every((id) => /^\d{1,20}-\d{1,20}$/.test(id))) {
      throw ApiError.badRequest(`Last-Event-ID must be ${this.events.streams.length} stream ids joined by commas`, 'INVALID_LAST_EVENT_ID');
    }
    return positions;
  }

  /** Starts streaming to `response`; resolves once the headers are out. Throws 503 (nothing written) when Redis is down or too many streams are open. */
  async start(response: ServerResponse, from: string[] | undefined): Promise<void> {
    if (this.open.size >= MAX_STREAMS) throw ApiError.unavailable(`at most ${MAX_STREAMS} live event streams per admin replica`, 'TOO_MANY_STREAMS');
    // The starting point is read before the headers go out: a Redis outage is a 503, not an empty stream.
    const start = from ?? (await this.events.heads());
    const connection = this.connect();
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      this.open.delete(close);
      connection.disconnect();
      // Destroyed, not ended: a kept-alive idle socket would hold the server's close until the client drops it.
      response.destroy();
    };
    this.open.add(close);
    response.on('close', close);
    // A client that resets mid-stream ends its stream, never the process (SPEC 10.2).
    response.on('error', close);
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      // nginx must pass each event on at once instead of buffering the response.
      'x-accel-buffering': 'no',
    });
    response.write(`retry: 1000\n: positions ${start.join(',')}\n\n`);
    void this.pump(response, connection, start, () => closed).catch((error: unknown) => {
      if (!closed) this.logger.warn(`event stream ended: ${(error as Error).message}`);
      close();
    });
  }

  private async pump(response: ServerResponse, connection: Redis, start: string[], isClosed: () => boolean): Promise<void> {
    let positions = start;
    while (!isClosed()) {
      const read = await this.events.readAfter(connection, positions, STREAM_BLOCK_MS);
      if (isClosed()) return;
      if (read.events.length === 0) {
        response.write(': keep-alive\n\n');
        continue;
      }
      // Each event carries the position after it in every stream, so Last-Event-ID resumes right after it.
      const cursor = [...positions];
      const index = new Map(this.events.streams.map((stream, i) => [stream.name, i]));
      let chunk = '';
      for (const event of read.events) {
        cursor[index.get(event.stream) ?? 0] = event.id;
        chunk += `id: ${cursor.join(',')}\ndata: ${JSON.stringify(event)}\n\n`;
      }
      response.write(chunk);
      positions = read.positions;
    }
  }

  onModuleDestroy(): void {
    // Open streams would hold the HTTP server's close (and the shutdown) until clients leave.
    for (const close of [...this.open]) close();
  }
}
