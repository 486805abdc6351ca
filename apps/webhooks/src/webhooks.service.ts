import { LoggerService } from '@nestjs/common';
import { ApiError } from '@smart-router/http';
import { CallAllocator } from '@smart-router/pool-state';
import { ProviderAdapter, ProviderDocument, WebhookRequest } from '@smart-router/providers';
import { WebhookMetrics } from './webhook-metrics';

export interface StatusAnswer {
  success: true;
  call_sid: string;
  status: string;
  /** True when this callback released the call; false for a non-final status or an unknown/already released call. */
  released: boolean;
  pod_name?: string;
}

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
  async answer(adapter: ProviderAdapter, request: WebhookRequest, template?: string): Promise<ProviderDocument> {
    adapter.authenticate(request);
    const fields = adapter.parseAnswer(request);
    try {
      const call = await this.allocator.allocate({
        callSid: fields.callSid,
        merchantId: fields.merchantId,
        provider: adapter.name,
        metadata: template ? JSON.stringify({ template: template.slice(0, MAX_TEMPLATE_LENGTH) }) : '',
        refuseTombstoned: true,
        waitMs: this.waitMs,
      });
      this.metrics.answers.add(1, { provider: adapter.name, result: call.wasExisting ? 'existing' : 'allocated' });
      return adapter.answerDocument(call.wsUrl);
    } catch (error) {
      const failure = error instanceof ApiError ? error : new ApiError(500, 'INTERNAL', 'internal error');
      if (error instanceof ApiError) {
        this.logger.warn(`${adapter.name} answer for ${fields.callSid}: ${failure.code}, answering the failure document`);
      } else {
        this.logger.error(`${adapter.name} answer for ${fields.callSid} failed: ${(error as Error)?.message ?? String(error)}`, (error as Error)?.stack);
      }
      this.metrics.answers.add(1, { provider: adapter.name, result: failure.code.toLowerCase() });
      return adapter.failureDocument(failure);
    }
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
}
