import { Controller, Get, Headers, Query, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { isPodName } from '@smart-router/allocation';
import { ApiError, BearerTokens, RedisUnavailableError, requireCallId } from '@smart-router/http';
import { PoolMetrics, guardStore } from '@smart-router/pool-state';
import { EventFilter, EventLogRepository } from './event-log.repository';
import { EventStreamService } from './event-stream.service';
import { PodListRepository } from './pod-list.repository';

/** Events answered per request at most (`limit`). */
export const EVENTS_MAX_LIMIT = 1000;
const EVENT_TYPE = /^[a-z][a-z0-9_.-]{0,63}$/;

export function eventQuery(query: Record<string, unknown>): { filter: EventFilter; limit: number } {
  const filter: EventFilter = {};
  const text = (name: string): string | undefined => {
    const value = query[name];
    if (value === undefined || value === '') return undefined;
    if (typeof value !== 'string') throw ApiError.badRequest(`${name} must be given once`, 'INVALID_QUERY');
    return value;
  };
  const callSid = text('call_sid');
  if (callSid !== undefined) filter.callSid = requireCallId(callSid);
  const pod = text('pod');
  if (pod !== undefined) {
    if (!isPodName(pod)) throw ApiError.badRequest('pod must be a DNS-1123 label', 'INVALID_POD_NAME');
    filter.pod = pod;
  }
  const type = text('type');
  if (type !== undefined) {
    if (!EVENT_TYPE.test(type)) throw ApiError.badRequest('type must be an event type such as call.released or released', 'INVALID_EVENT_TYPE');
    filter.type = type;
  }
  const rawLimit = text('limit');
  const limit = rawLimit === undefined ? 100 : Number(rawLimit);
  if (!/^\d+$/.test(rawLimit ?? '100') || !Number.isInteger(limit) || limit < 1 || limit > EVENTS_MAX_LIMIT) {
    throw ApiError.badRequest(`limit must be an integer 1-${EVENTS_MAX_LIMIT}`, 'INVALID_LIMIT');
  }
  return { filter, limit };
}

/** SREs' read side beyond the seeds (SPEC section 9.4): the event log, its live feed, the pod table, the caller's role. */
@Controller('api/v1/admin')
export class EventLogController {
  constructor(
    private readonly events: EventLogRepository,
    private readonly pods: PodListRepository,
    private readonly streams: EventStreamService,
    private readonly tokens: BearerTokens,
    private readonly metrics: PoolMetrics,
  ) {}

  @Get('events')
  async list(@Query() query: Record<string, unknown>, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    const { filter, limit } = eventQuery(query);
    return { events: await this.guard('events', () => this.events.recent(filter, limit)) };
  }

  @Get('events/stream')
  async stream(@Res() reply: FastifyReply, @Headers('authorization') auth?: string, @Headers('last-event-id') lastEventId?: string) {
    this.tokens.authorize(auth, 'viewer');
    const from = this.streams.parsePosition(lastEventId);
    await this.guard('events', async () => {
      // Errors before the headers are ordinary JSON answers; after them the stream just ends.
      await this.streams.start(reply.raw, from);
      reply.hijack();
    });
  }

  @Get('pods')
  podTable(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.guard('pods', () => this.pods.pods());
  }

  /** Which role the presented token has, so the dashboard shows or hides the drain buttons. */
  @Get('session')
  session(@Headers('authorization') auth?: string) {
    return { role: this.tokens.roleOf(auth), tokens_required: this.tokens.enabled };
  }

  private guard<T>(operation: string, work: () => Promise<T>): Promise<T> {
    return guardStore(this.metrics, operation, work);
  }
}
