import { Counter } from '@opentelemetry/api';
import { Telemetry } from '@smart-router/telemetry';

/**
 * What providers got back. Rejected signatures and bad requests are counted
 * by the HTTP error counter (status and code) like every other 4xx.
 */
export class WebhookMetrics {
  /** result: allocated | existing | the failure code (no_pod_available, redis_unavailable, call_ended, ...). */
  readonly answers: Counter;
  /** result: released | unknown_call | not_final. */
  readonly statusCallbacks: Counter;
  /** SPEC 11 stream-ended requests, result: rehomed | repeated | released | limit | no_pod | stale_allocation | state_rebuilding | disabled | call_ended | redis_error. */
  readonly rehomes: Counter;

  constructor(telemetry: Telemetry) {
    const meter = telemetry.meter();
    this.answers = meter.createCounter('smart_router_webhook_answers_total', { description: 'Provider answer webhooks by provider and result' });
    this.rehomes = meter.createCounter('smart_router_rehomes_total', { description: 'Stream-ended requests (SPEC 11 re-home) by provider and result' });
    this.statusCallbacks = meter.createCounter('smart_router_webhook_status_callbacks_total', { description: 'Provider status callbacks by provider and result' });
  }
}
