import { ApiError } from '@smart-router/http';
import {
  AnswerFields, DEFAULT_FAILURE_MESSAGE, ProviderAdapter, ProviderDocument, RehomeOptions, StatusFields, StreamEventKind, StreamStatusFields,
  eventValue, optionalMerchantId, requireCallId, statusValue,
} from '../provider-adapter';
import { WebhookRequest, callerOf, formField, headerOf, queryField } from '../webhook-request';
import { escapeXml } from '../xml';
import { TWILIO_SIGNATURE_HEADER, TwilioSignature } from './twilio-signature';

/** Twilio's id of one webhook, the same on its retries (twilio.com/docs/usage/webhooks/webhooks-connection-overrides). */
export const TWILIO_IDEMPOTENCY_HEADER = 'I-Twilio-Idempotency-Token';

const TWIML = 'text/xml; charset=utf-8';

/** Twilio `CallStatus` values after which the call is over (twilio.com/docs/voice/api/call-resource#call-status-values). */
export const TWILIO_FINAL_STATUSES: readonly string[] = ['completed', 'busy', 'failed', 'no-answer', 'canceled'];

/** `StreamEvent` of a `<Stream statusCallback>` post (twilio.com/docs/voice/twiml/stream, "statusCallback"). */
export const TWILIO_STREAM_EVENTS: Readonly<Record<string, StreamEventKind>> = {
  'stream-started': 'started',
  'stream-stopped': 'stopped',
  'stream-error': 'failed',
};

/**
 * Twilio: form-encoded webhooks (`CallSid` in the body, our `merchant_id` in
 * the query of the configured URL, which the signature covers), TwiML back.
 */
export class TwilioAdapter implements ProviderAdapter {
  readonly name = 'twilio' as const;

  constructor(private readonly signature: TwilioSignature, private readonly failureMessage = DEFAULT_FAILURE_MESSAGE) {}

  get authenticates(): boolean {
    return this.signature.enabled;
  }

  authenticate(request: WebhookRequest): void {
    this.signature.verify(request);
  }

  /**
   * The idempotency token (SPEC 10.2), and the signature itself: the token is
   * a header the signature does not cover, so a replay that drops or changes
   * it still carries the captured signature, which only Twilio can make and
   * which is the same for the same URL and parameters.
   */
  replayIdentities(request: WebhookRequest): string[] {
    const token = headerOf(request, TWILIO_IDEMPOTENCY_HEADER);
    const signature = headerOf(request, TWILIO_SIGNATURE_HEADER);
    return [...(token === undefined ? [] : [`token:${token}`]), ...(signature === undefined ? [] : [`signature:${signature}`])];
  }

  parseAnswer(request: WebhookRequest): AnswerFields {
    return {
      callSid: requireCallId(formField(request, 'CallSid'), 'CallSid'),
      merchantId: optionalMerchantId(queryField(request, 'merchant_id')),
      caller: callerOf(formField(request, 'From')),
    };
  }

  /**
   * `<Connect><Stream>` is the bidirectional stream; Twilio runs no further TwiML until the socket closes.
   * With re-homing (SPEC 11), `<Connect action>` is requested when the stream ends, and a re-homed
   * call tells its new agent where it came from in a `<Parameter>` (the `start` message's customParameters).
   */
  answerDocument(wsUrl: string, streamStatusUrl?: string, rehome?: RehomeOptions): ProviderDocument {
    const callback = streamStatusUrl === undefined ? '' : ` statusCallback="${escapeXml(streamStatusUrl)}" statusCallbackMethod="POST"`;
    const action = rehome === undefined ? '' : ` action="${escapeXml(rehome.streamEndedUrl)}" method="POST"`;
    const parameter = rehome?.rehomeFrom ? `<Parameter name="rehome_from" value="${escapeXml(rehome.rehomeFrom)}"/>` : '';
    return { status: 200, contentType: TWIML, body: `<Response><Connect${action}><Stream url="${escapeXml(wsUrl)}"${callback}>${parameter}</Stream></Connect></Response>` };
  }

  hangupDocument(): ProviderDocument {
    return { status: 200, contentType: TWIML, body: '<Response><Hangup/></Response>' };
  }

  /** Twilio plays only a 2xx answer; any error status makes it play its own "application error". */
  failureDocument(_error: ApiError): ProviderDocument {
    return { status: 200, contentType: TWIML, body: `<Response><Say>${escapeXml(this.failureMessage)}</Say><Hangup/></Response>` };
  }

  parseStatus(request: WebhookRequest): StatusFields {
    const status = statusValue(formField(request, 'CallStatus'));
    return { callSid: requireCallId(formField(request, 'CallSid'), 'CallSid'), status, final: TWILIO_FINAL_STATUSES.includes(status) };
  }

  /** Form fields `AccountSid`, `CallSid`, `StreamSid`, `StreamName`, `StreamEvent`, `StreamError` (on error), `Timestamp`. */
  parseStreamStatus(request: WebhookRequest): StreamStatusFields {
    const event = eventValue(formField(request, 'StreamEvent'));
    return {
      callSid: requireCallId(formField(request, 'CallSid'), 'CallSid'),
      event,
      kind: TWILIO_STREAM_EVENTS[event.toLowerCase()] ?? 'other',
      streamId: (formField(request, 'StreamSid') ?? '').slice(0, 64),
    };
  }
}
