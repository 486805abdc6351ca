import type Redis from 'ioredis';
import { RedisKeys } from '@smart-router/redis-keys';

/** One stream entry as the event log shows it: flat fields, plus where it came from. */
export interface LoggedEvent {
  id: string;
  stream: string;
  type: string;
  at: number;
  [field: string]: string | number | null;
}

export interface EventFilter {
  callSid?: string;
  pod?: string;
  /** Matches `call.released` given as `call.released` or `released`. */
  type?: string;
}

/** Entries read per XREVRANGE page while filtering. */
const PAGE = 500;
/** Entries per XREVRANGE page while finding where a capped replay resumes. */
const REPLAY_PAGE = 200;
/** Entries scanned per stream for one filtered query at most: the answer stays bounded. */
export const SCAN_LIMIT = 20_000;
/** Trace context rides on pod events for the pipeline; it is noise in an event log. */
const HIDDEN_FIELDS = new Set(['traceparent', 'tracestate']);

/**
 * Read side of the event streams (stream:calls, stream:pods, stream:fleet). Stream ids are
 * the same Redis server's clock, so ids of different streams order events
 * in time; a position in "all streams" is one id per stream.
 */
export class EventLogRepository {
  readonly streams: { name: string; key: string }[];

  constructor(private readonly redis: Redis, keys: RedisKeys) {
    this.streams = [
      { name: 'calls', key: keys.callStream() },
      { name: 'pods', key: keys.podStream() },
      // Fleet decisions (scale requests, autoscaler steps, removals), SPEC 9.1.
      { name: 'fleet', key: keys.fleetStream() },
    ];
  }

  /** Newest first, at most `limit`, across every stream. */
  async recent(filter: EventFilter, limit: number): Promise<LoggedEvent[]> {
    const perStream = await Promise.all(this.streams.map((stream) => this.scan(stream, filter, limit)));
    return perStream.flat().sort((a, b) => compareIds(b.id, a.id)).slice(0, limit);
  }

  private async scan(stream: { name: string; key: string }, filter: EventFilter, limit: number): Promise<LoggedEvent[]> {
    const found: LoggedEvent[] = [];
    let end = '+';
    for (let scanned = 0; scanned < SCAN_LIMIT && found.length < limit; ) {
      const page = await this.redis.xrevrange(stream.key, end, '-', 'COUNT', PAGE);
      for (const [id, fields] of page) {
        const event = toEvent(stream.name, id, fields);
        if (matches(event, filter)) found.push(event);
        if (found.length === limit) break;
      }
      scanned += page.length;
      if (page.length < PAGE) break;
      end = `(${page[page.length - 1][0]}`;
    }
    return found;
  }

  /** The current end of every stream ('0-0' when empty): where a live feed starts. */
  async heads(): Promise<string[]> {
    return Promise.all(this.streams.map(async (stream) => (await this.redis.xrevrange(stream.key, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0'));
  }

  /**
   * Where a feed resuming after `positions` starts. Each stream resumes at its
   * position, unless more than `max` entries follow it there (an old or
   * hostile Last-Event-ID: up to STREAM_MAXLEN entries per stream); then it
   * resumes `max` entries before that stream's end and `capped` is true, so
   * the client is told it missed events (the feed's `resync`). Walked back from
   * the end in pages on the request connection (a Redis error is a 503): the
   * cost is that of the replay it bounds, and memory one page at a time.
   */
  async boundedResume(positions: string[], max: number): Promise<{ positions: string[]; capped: boolean }> {
    const bounded = await Promise.all(this.streams.map((stream, index) => this.resumePoint(stream.key, positions[index], max)));
    return { positions: bounded, capped: bounded.some((point, index) => point !== positions[index]) };
  }

  /** `position`, or the id of the (max+1)-th newest entry when more than `max` follow `position`. */
  private async resumePoint(key: string, position: string, max: number): Promise<string> {
    if (position === MAX_STREAM_ID) return position; // nothing can follow it (and `(` of it is not an id)
    let end = '+';
    for (let seen = 0; seen <= max; ) {
      const count = Math.min(REPLAY_PAGE, max + 1 - seen);
      const page = await this.redis.xrevrange(key, end, `(${position}`, 'COUNT', count);
      if (page.length < count) return position;
      seen += page.length;
      end = `(${page[page.length - 1][0]}`;
    }
    // Resuming after the (max+1)-th newest entry streams exactly the `max` newest.
    return end.slice(1);
  }

  /**
   * Blocks on `connection` (a dedicated one: XREAD BLOCK holds it) until
   * entries arrive after `positions` or `blockMs` passes. Returns them in
   * stream order with the new positions.
   */
  async readAfter(connection: Redis, positions: string[], blockMs: number): Promise<{ events: LoggedEvent[]; positions: string[] }> {
    const answer = (await connection.xread('COUNT', 200, 'BLOCK', blockMs, 'STREAMS', ...this.streams.map((stream) => stream.key), ...positions)) as
      | [string, [string, string[]][]][]
      | null;
    const next = [...positions];
    const events: LoggedEvent[] = [];
    for (const [key, entries] of answer ?? []) {
      const index = this.streams.findIndex((stream) => stream.key === key);
      for (const [id, fields] of entries) {
        events.push(toEvent(this.streams[index].name, id, fields));
        next[index] = id;
      }
    }
    events.sort((a, b) => compareIds(a.id, b.id));
    return { events, positions: next };
  }
}

function toEvent(stream: string, id: string, fields: string[]): LoggedEvent {
  const event: LoggedEvent = { id, stream, type: '', at: Number(id.split('-')[0]) };
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const [name, value] = [fields[i], fields[i + 1]];
    if (HIDDEN_FIELDS.has(name) || name === 'id' || name === 'stream') continue;
    event[name] = TIME_FIELDS.has(name) ? toTime(value) : value;
  }
  // Pod events name their pod `name`; the log answers `pod` for every event.
  if (event.pod === undefined && typeof event.name === 'string') event.pod = event.name;
  return event;
}

/** Fields holding ms since the Unix epoch: numbers in the log, null when empty (a call never connected). */
const TIME_FIELDS = new Set(['at', 'connected_at']);

function toTime(value: string): number | string | null {
  if (value === '') return null;
  return /^\d+$/.test(value) ? Number(value) : value;
}

function matches(event: LoggedEvent, filter: EventFilter): boolean {
  if (filter.callSid !== undefined && event.call_sid !== filter.callSid) return false;
  if (filter.pod !== undefined && event.pod !== filter.pod) return false;
  // `released` finds call.released, `drained` pod.drained, `scaled` fleet.scaled: the family prefix is optional.
  if (filter.type !== undefined && event.type !== filter.type && event.type.slice(event.type.indexOf('.') + 1) !== filter.type) return false;
  return true;
}

/** The largest stream id Redis accepts. */
export const MAX_STREAM_ID = '18446744073709551615-18446744073709551615';

/** True for an id Redis accepts as a stream id: two unsigned 64-bit numbers. */
export function isStreamId(id: string): boolean {
  const match = /^(\d{1,20})-(\d{1,20})$/.exec(id);
  return match !== null && BigInt(match[1]) <= 18446744073709551615n && BigInt(match[2]) <= 18446744073709551615n;
}

/** Orders stream ids ("ms-seq") numerically. */
export function compareIds(a: string, b: string): number {
  const [aMs, aSeq] = a.split('-').map(Number);
  const [bMs, bSeq] = b.split('-').map(Number);
  return aMs - bMs || aSeq - bSeq;
}
