import { LoggerService } from '@nestjs/common';
import { ApiError, RedisUnavailableError } from '@smart-router/http';
import { CallAllocator, PoolMetrics, storeFailure } from '@smart-router/pool-state';
import { AnswerFields, ProviderAdapter, StatusFields, ProviderDocument, RehomeOptions, WebhookRequest, queryField, streamEndedPath, streamStatusPath } from '@smart-router/providers';
import { ScriptCode } from '@smart-router/allocation';
import { AnswerReplays, ReplayCheck } from './answer-replays';
import { WebhookMetrics } from './webhook-metrics';

export interface StatusAnswer {
  success: true;
  call_sid: string;
  status: string;
  /** True when this callback released the call; false for a non-final status or an unknown/already released call. */
  released: boolean;
  pod_name?: string;
}

export interface StreamStatusAnswer {
  success: true;
  call_sid: string;
  event: string;
  /** True when this callback connected the call (stream started, call was pending). */
  connected: boolean;
  /** True when this callback released the call (stream stopped or failed). */
  released: boolean;
  pod_name?: string;
}

/** SPEC 11 "Recovery": REHOME_ENABLED and REHOME_MAX. */
export interface RehomeSettings {
  enabled: boolean;
  max: number;
}

/**
 * How long a re-home ticket lives (SPEC 11, issue 20): the record of a call
 * released by its stream's stopped/failed callback while re-homing is on, kept
 * for the provider's stream-ended request that follows (Twilio's `<Connect
 * action>`, Plivo's `<Redirect>`, both requested within a second or two of the
 * stream's end, with retries). A minute covers the retries; a ticket nobody
 * asks for expires without changing anything.
 */
export const REHOME_TICKET_TTL_SECONDS = 60;

/** The template name is recorded on the call for operators; it never affects routing. */
const MAX_TEMPLATE_LENGTH = 128;

/**
 * What happens when a provider calls: the same for every provider, which only
 * differ in how they authenticate, where the call id is and what they expect
 * back (the adapters). Authentication and validation come first, so a
 * rejected request never reaches Redis.
 */
export class WebhooksService {
  constructor(
    private readonly allocator: CallAllocator,
    private readonly metrics: WebhookMetrics,
    private readonly logger: LoggerService,
    /** WEBHOOK_WAIT_MS: providers wait well beyond it, so a call waits for a pod rather than hearing "no agent". */
    private readonly waitMs: number,
    /** Replays of signed answer webhooks (SPEC 10.2); null = not remembered. */
    private readonly replays: AnswerReplays | null,
    /** Counts the replay memory's Redis failures with every other one. */
    private readonly pool: PoolMetrics,
    private readonly rehoming: RehomeSettings = { enabled: false, max: 2 },
  ) {}

  /**
   * Allocates (idempotently) and answers with the provider's stream document.
   * Providers retry slow answers; the retry finds the call's record and gets
   * the same pod, hence the same bytes. `refuseTombstoned`: a replayed or late
   * answer for a call that already ended must not take a pod again.
   *
   * Every allocation failure becomes the provider's failure document, not an
   * HTTP error: the request was valid, and the caller should hear a message
   * rather than the provider's generic error.
   */
  async answer(adapter: ProviderAdapter, request: WebhookRequest, template?: string, baseUrl?: string): Promise<ProviderDocument> {
    adapter.authenticate(request);
    const fields = adapter.parseAnswer(request);
    // Replays are refused (SPEC 10.2): only a request whose credentials were
    // checked is remembered, so unsigned traffic can neither fill the memory
    // nor claim a nonce before the provider's own request does.
    const identities = this.replays?.enabled && adapter.authenticates ? adapter.replayIdentities?.(request) ?? [] : [];
    if (!this.replays || identities.length === 0) return this.allocateAndAnswer(adapter, fields, template, baseUrl);
    let seen: ReplayCheck;
    try {
      seen = await this.replays.check(adapter.name, identities);
    } catch (error) {
      // Fail closed: without the memory we cannot tell a replay, so nothing is allocated.
      return this.refuse(adapter, fields.callSid, error instanceof ApiError ? error : storeFailure(error), 'webhook_replay');
    }
    if (seen.kind === 'answered') {
      this.metrics.answers.add(1, { provider: adapter.name, result: 'replayed' });
      return seen.document;
    }
    if (seen.kind === 'busy') {
      // Not a failure document: that would end the call the first copy is still answering. The provider retries.
      this.metrics.answers.add(1, { provider: adapter.name, result: 'replay_pending' });
      return {
        status: 503, contentType: 'application/json; charset=utf-8', headers: { 'retry-after': '1' },
        body: JSON.stringify({ error: 'this webhook is still being answered, retry shortly', code: 'REPLAY_PENDING' }),
      };
    }
    if (seen.kind === 'unresolved') {
      this.metrics.answers.add(1, { provider: adapter.name, result: 'replay_unresolved' });
      return adapter.failureDocument(new ApiError(503, 'REPLAY_UNRESOLVED', 'the first copy of this webhook was never answered'));
    }
    const document = await this.allocateAndAnswer(adapter, fields, template, baseUrl);
    try {
      if (!(await this.replays.record(seen.claim, document))) this.logger.warn(`${adapter.name} answer for ${fields.callSid}: replay record expired before the answer was stored`);
    } catch (error) {
      // The answer stands (a pod may be held for it); its replays find the claim and allocate nothing.
      this.pool.redisError('webhook_replay');
      this.logger.warn(`${adapter.name} answer for ${fields.callSid}: its replay record failed: ${(error as Error)?.message ?? String(error)}`);
    }
    return document;
  }

  private async allocateAndAnswer(adapter: ProviderAdapter, fields: AnswerFields, template?: string, baseUrl?: string): Promise<ProviderDocument> {
    try {
      const call = await this.allocator.allocate({
        callSid: fields.callSid,
        merchantId: fields.merchantId,
        provider: adapter.name,
        metadata: template ? JSON.stringify({ template: template.slice(0, MAX_TEMPLATE_LENGTH) }) : '',
        refuseTombstoned: true,
        waitMs: this.waitMs,
        caller: fields.caller,
      });
      this.metrics.answers.add(1, { provider: adapter.name, result: call.wasExisting ? 'existing' : 'allocated' });
      return adapter.answerDocument(call.wsUrl, baseUrl === undefined ? undefined : this.streamStatusUrl(adapter, baseUrl, call.allocationId),
        this.rehomeOptions(adapter, baseUrl, call.allocationId));
    } catch (error) {
      return this.refuse(adapter, fields.callSid, error);
    }
  }

  /** The provider's failure document for `error`, logged and counted (a Redis failure also under `redisOperation`). */
  private refuse(adapter: ProviderAdapter, callSid: string, error: unknown, redisOperation?: string): ProviderDocument {
    const failure = error instanceof ApiError ? error : new ApiError(500, 'INTERNAL', 'internal error');
    if (error instanceof ApiError) {
      this.logger.warn(`${adapter.name} answer for ${callSid}: ${failure.code}, answering the failure document`);
    } else {
      this.logger.error(`${adapter.name} answer for ${callSid} failed: ${(error as Error)?.message ?? String(error)}`, (error as Error)?.stack);
    }
    if (redisOperation && error instanceof RedisUnavailableError) this.pool.redisError(redisOperation);
    this.metrics.answers.add(1, { provider: adapter.name, result: failure.code.toLowerCase() });
    return adapter.failureDocument(failure);
  }

  /**
   * A status callback releases the call when the status is final. Releases
   * are idempotent: a duplicate callback, or one arriving after the voice
   * agent released the call itself, finds no call and is still a 200, so the
   * provider does not retry it. A Redis failure is an error (503): the
   * provider may retry and the call must not silently stay allocated.
   */
  async status(adapter: ProviderAdapter, request: WebhookRequest, endpoint: 'status' | 'hangup'): Promise<StatusAnswer> {
    const parse = endpoint === 'hangup' ? adapter.parseHangup?.bind(adapter) : adapter.parseStatus.bind(adapter);
    if (!parse) throw ApiError.notFound('route not found');
    adapter.authenticate(request);
    const update = parse(request);
    const answer: StatusAnswer = { success: true, call_sid: update.callSid, status: update.status, released: false };
    if (!update.final) {
      this.metrics.statusCallbacks.add(1, { provider: adapter.name, result: 'not_final' });
      return answer;
    }
    try {
      const released = await this.allocator.release(update.callSid, `provider_${update.status}`);
      this.metrics.statusCallbacks.add(1, { provider: adapter.name, result: 'released' });
      return { ...answer, released: true, pod_name: released.podName };
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== 'CALL_NOT_FOUND') throw error;
      this.metrics.statusCallbacks.add(1, { provider: adapter.name, result: 'unknown_call' });
      return answer;
    }
  }

  /**
   * Where the provider posts the stream's status. The allocation_id in the
   * query is covered by the provider's signature, so a late callback of an
   * earlier allocation of the same call_sid is refused (409) instead of
   * ending the newer one. A repeated answer carries the same id: same bytes.
   */
  private streamStatusUrl(adapter: ProviderAdapter, baseUrl: string, allocationId: number | null): string {
    const query = allocationId === null ? '' : `?allocation_id=${allocationId}`;
    return `${baseUrl}${streamStatusPath(adapter.name)}${query}`;
  }

  /**
   * The stream-ended URL for a re-homing answer (SPEC 11), when re-homing is on
   * and the provider requests one; `rehomeFrom`: the pod a re-homed call left.
   */
  private rehomeOptions(adapter: ProviderAdapter, baseUrl: string | undefined, allocationId: number | null, rehomeFrom?: string): RehomeOptions | undefined {
    if (!this.rehoming.enabled || !adapter.hangupDocument || baseUrl === undefined || allocationId === null) return undefined;
    return { streamEndedUrl: `${baseUrl}${streamEndedPath(adapter.name)}?allocation_id=${allocationId}`, rehomeFrom };
  }

  /**
   * Twilio's `<Connect action>` / Plivo's `<Redirect>` after the stream of
   * allocation_id ended (SPEC 11 "Recovery"). The call released by its agent
   * before (or never allocated) hangs up; otherwise it is re-homed in one
   * script (rehomeCall-6.lua) and the answer streams to the new pod, naming
   * the old one; beyond REHOME_MAX or with no other pod free, the call was
   * released and the caller hears the failure document. A call its
   * stream-status callback already released (SPEC 9.2) is re-homed from the
   * re-home ticket that release left (issue 20), so the order in which the
   * provider sends the two does not matter. With re-homing off, the call ends
   * as a stream-stopped callback would have ended it.
   */
  async streamEnded(adapter: ProviderAdapter, request: WebhookRequest, baseUrl?: string): Promise<ProviderDocument> {
    if (!adapter.hangupDocument) throw ApiError.notFound('route not found');
    adapter.authenticate(request);
    const update = adapter.parseStatus(request);
    const callSid = update.callSid;
    const allocationId = parseAllocationId(queryField(request, 'allocation_id'));
    if (allocationId === undefined) throw ApiError.badRequest('allocation_id is required', 'INVALID_FIELD');
    const count = (result: string) => this.metrics.rehomes.add(1, { provider: adapter.name, result });
    // This route answers Twilio's `<Connect action>` / Plivo's `<Redirect>`: the
    // caller is on the line and the answer is the call's next instruction, so
    // (as in answer()) a failure past the checks above is the failure document
    // at 200, never an HTTP error the provider turns into "application error".
    try {
      return await this.decideStreamEnded(adapter, adapter.hangupDocument.bind(adapter), update, allocationId, count, baseUrl);
    } catch (error) {
      // A refusal of the request itself (4xx, e.g. a call id the allocator refuses) stays an HTTP error.
      if (error instanceof ApiError && error.status < 500) throw error;
      const failure = error instanceof ApiError ? error : new ApiError(500, 'INTERNAL', 'internal error');
      // A release's refusal carries the code, not the class.
      if (error instanceof RedisUnavailableError || failure.code === 'REDIS_UNAVAILABLE') {
        // smart_router_redis_errors_total is counted by the allocator's script call (operation rehome / release).
        count('redis_error');
        this.logger.warn(`${adapter.name} stream-ended for ${callSid}: Redis unavailable, answering the failure document`);
      } else {
        count(failure.code.toLowerCase());
        this.logger.error(`${adapter.name} stream-ended for ${callSid} failed: ${(error as Error)?.message ?? String(error)}`, (error as Error)?.stack);
      }
      return adapter.failureDocument(failure);
    }
  }

  /** streamEnded past authentication and validation; a thrown error becomes the failure document. */
  private async decideStreamEnded(adapter: ProviderAdapter, hangupDocument: () => ProviderDocument, update: StatusFields,
    allocationId: number, count: (result: string) => void, baseUrl?: string): Promise<ProviderDocument> {
    const callSid = update.callSid;
    // The provider says the call itself is over (the caller hung up while the
    // stream ended, issue 20): released as its final status callback would (no
    // pod, no allocation named, so any re-home ticket goes too), never re-homed.
    if (update.final) {
      try {
        await this.allocator.release(callSid, `provider_${update.status}`);
      } catch (error) {
        if (!(error instanceof ApiError) || error.code !== 'CALL_NOT_FOUND') throw error;
      }
      count('call_ended');
      return hangupDocument();
    }
    if (!this.rehoming.enabled) {
      try {
        await this.allocator.release(callSid, 'stream_stopped', allocationId);
      } catch (error) {
        if (!(error instanceof ApiError) || (error.code !== 'CALL_NOT_FOUND' && error.code !== 'STALE_ALLOCATION')) throw error;
      }
      count('disabled');
      return hangupDocument();
    }
    const outcome = await this.allocator.rehome(callSid, allocationId, this.rehoming.max);
    if (outcome.ok) {
      const { rehoming } = outcome;
      count(rehoming.repeated ? 'repeated' : 'rehomed');
      if (!rehoming.repeated) this.logger.log(`${adapter.name} call ${callSid} re-homed from ${rehoming.fromPod} to ${rehoming.podName} (re-home ${rehoming.rehomes})`);
      return adapter.answerDocument(rehoming.wsUrl, baseUrl === undefined ? undefined : this.streamStatusUrl(adapter, baseUrl, rehoming.allocationId),
        this.rehomeOptions(adapter, baseUrl, rehoming.allocationId, rehoming.fromPod));
    }
    switch (outcome.code) {
      case ScriptCode.NotFound:
        count('released');
        return hangupDocument();
      case ScriptCode.StaleAllocation:
        // Not a 409 (Twilio would play "application error"), and nothing in Redis
        // changes. Whatever we answer goes only to whoever asked: a replayed old
        // request gets a document that touches no call (and names no media URL);
        // the provider itself asks only when that <Connect>/<Stream> of this call
        // has ended, so the call is streaming nowhere and waits on this answer
        // alone: it can only be ended, and the failure document ends it politely
        // (as REHOME_LIMIT does) instead of hanging up in silence. Re-homing it
        // instead would let a replay take a pod and open a second stream.
        count('stale_allocation');
        this.logger.warn(`${adapter.name} stream-ended for ${callSid}: allocation_id ${allocationId} is stale, answering the failure document`);
        return adapter.failureDocument(new ApiError(409, 'STALE_ALLOCATION', 'allocation_id is neither the call\'s current allocation nor the one it was re-homed from'));
      case ScriptCode.RehomeLimit:
        count('limit');
        return adapter.failureDocument(new ApiError(503, 'REHOME_LIMIT', 'the call was re-homed REHOME_MAX times'));
      case ScriptCode.RehomeNoPod:
        count('no_pod');
        return adapter.failureDocument(new ApiError(503, 'NO_POD_AVAILABLE', 'no pod available'));
      default:
        count('state_rebuilding');
        return adapter.failureDocument(new ApiError(503, 'STATE_REBUILDING', 'pool state is being rebuilt, retry shortly'));
    }
  }

  /**
   * A media-stream status callback (SPEC 9.2): started connects the call,
   * stopped or failed releases it. Unknown events and calls, duplicates and
   * callbacks arriving after another release are a harmless 200. A stale
   * allocation_id is a 409 that changes nothing; a Redis failure a 503.
   *
   * With re-homing on (issue 20, a decision beyond SPEC 11's "settled
   * details"): the stopped/failed callback still releases the call, as SPEC
   * 9.2 says, and the same script keeps a re-home ticket of it for
   * REHOME_TICKET_TTL_SECONDS, so the stream-ended request that follows still
   * re-homes a call whose agent died. A call its agent released first leaves
   * no ticket: the stream-ended request hangs up.
   */
  async streamStatus(adapter: ProviderAdapter, request: WebhookRequest): Promise<StreamStatusAnswer> {
    if (!adapter.parseStreamStatus) throw ApiError.notFound('route not found');
    adapter.authenticate(request);
    const update = adapter.parseStreamStatus(request);
    const allocationId = parseAllocationId(queryField(request, 'allocation_id'));
    // An event we do not act on is answered as `ignored`, not by its name: the answer never repeats the request.
    const answer: StreamStatusAnswer = { success: true, call_sid: update.callSid, event: update.kind === 'other' ? 'ignored' : update.event, connected: false, released: false };
    const count = (result: string) => this.metrics.statusCallbacks.add(1, { provider: adapter.name, result });
    try {
      if (update.kind === 'started') {
        const connection = await this.allocator.connect(update.callSid, adapter.name, allocationId);
        count(connection.wasConnected ? 'stream_duplicate' : 'stream_connected');
        return { ...answer, connected: !connection.wasConnected, pod_name: connection.podName };
      }
      if (update.kind === 'stopped' || update.kind === 'failed') {
        const reason = update.kind === 'stopped' ? 'stream_stopped' : 'stream_error';
        // Only a provider whose stream end requests the stream-ended URL (Twilio, Plivo) gets a ticket.
        const ticket = this.rehoming.enabled && adapter.hangupDocument ? REHOME_TICKET_TTL_SECONDS : undefined;
        const released = await this.allocator.release(update.callSid, reason, allocationId, ticket);
        count('stream_released');
        return { ...answer, released: true, pod_name: released.podName };
      }
      count('stream_ignored');
      return answer;
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== 'CALL_NOT_FOUND') throw error;
      count('unknown_call');
      return answer;
    }
  }
}

/** Our own query parameter, signed by the provider; anything but a positive integer is a 400. */
function parseAllocationId(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[1-9][0-9]{0,14}$/.test(text)) throw ApiError.badRequest('allocation_id must be a positive integer', 'INVALID_FIELD');
  return Number(text);
}
