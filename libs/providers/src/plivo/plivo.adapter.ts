import { ApiError } from '@smart-router/http';
import {
  AnswerFields, DEFAULT_FAILURE_MESSAGE, ProviderAdapter, ProviderDocument, RehomeOptions, StatusFields, StreamEventKind, StreamStatusFields,
  eventValue, optionalMerchantId, requireCallId, statusValue,
} from '../provider-adapter';
import { WebhookRequest, callerOf, formField, headerOf, queryField } from '../webhook-request';
import { escapeXml } from '../xml';
import { PLIVO_NONCE_HEADER, PlivoSignature } from './plivo-signature';

const PLIVO_XML = 'text/xml; charset=utf-8';

/**
 * Plivo `CallStatus` values after which the call is over
 * (plivo.com/docs/voice/xml/request: completed; outbound also busy, failed,
 * timeout, no-answer; `cancel` for a cancelled outbound call; `hangup` as
 * some hangup callbacks spell it).
 */
export const PLIVO_FINAL_STATUSES: readonly string[] = ['completed', 'hangup', 'busy', 'failed', 'timeout', 'no-answer', 'cancel'];

/**
 * `Event` of a `<Stream statusCallbackUrl>` post. Plivo documents two
 * spellings: the XML reference's StartStream/StopStream/DroppedStream and the
 * voice-agents guide's started/stopped/failed; both are accepted (SPEC 9.2).
 * DegradedStream (a buffer warning) and anything else change nothing.
 */
export const PLIVO_STREAM_EVENTS: Readonly<Record<string, StreamEventKind>> = {
  startstream: 'started',
  started: 'started',
  stopstream: 'stopped',
  stopped: 'stopped',
  droppedstream: 'failed',
  failed: 'failed',
};

/**
 * Plivo: form-encoded webhooks (`CallUUID` in the body, `merchant_id` in the
 * query), Plivo XML back. The WebSocket URL is the `<Stream>` element's text.
 */
export class PlivoAdapter implements ProviderAdapter {
  readonly name = 'plivo' as const;

  constructor(private readonly signature: PlivoSignature, private readonly failureMessage = DEFAULT_FAILURE_MESSAGE) {}

  get authenticates(): boolean {
    return this.signature.enabled;
  }

  authenticate(request: WebhookRequest): void {
    this.signature.verify(request);
  }

  /** The V3 nonce (SPEC 10.2): the signature covers it, so a replay cannot change it. */
  replayIdentities(request: WebhookRequest): string[] {
    const nonce = headerOf(request, PLIVO_NONCE_HEADER);
    return nonce === undefined ? [] : [`nonce:${nonce}`];
  }

  parseAnswer(request: WebhookRequest): AnswerFields {
    return {
      callSid: requireCallId(formField(request, 'CallUUID'), 'CallUUID'),
      merchantId: optionalMerchantId(queryField(request, 'merchant_id')),
      caller: callerOf(formField(request, 'From')),
    };
  }

  /**
   * With re-homing (SPEC 11), the `<Redirect>` after the `keepCallAlive` stream is where Plivo goes
   * when the stream ends; a re-homed call names its previous pod in the stream's `extraHeaders`.
   */
  answerDocument(wsUrl: string, streamStatusUrl?: string, rehome?: RehomeOptions): ProviderDocument {
    const callback = streamStatusUrl === undefined ? '' : ` statusCallbackUrl="${escapeXml(streamStatusUrl)}" statusCallbackMethod="POST"`;
    const headers = rehome?.rehomeFrom ? ` extraHeaders="${escapeXml(`rehome_from=${rehome.rehomeFrom}`)}"` : '';
    const redirect = rehome === undefined ? '' : `<Redirect method="POST">${escapeXml(rehome.streamEndedUrl)}</Redirect>`;
    return {
      status: 200,
      contentType: PLIVO_XML,
      body: `<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000"${callback}${headers}>${escapeXml(wsUrl)}</Stream>${redirect}</Response>`,
    };
  }

  hangupDocument(): ProviderDocument {
    return { status: 200, contentType: PLIVO_XML, body: '<Response><Hangup/></Response>' };
  }

  /**
   * A 200 document the caller hears. An error status would make Plivo retry
   * the answer URL (up to 3 times) and then try the fallback URL, keeping
   * the caller waiting for the same outcome.
   */
  failureDocument(_error: ApiError): ProviderDocument {
    return { status: 200, contentType: PLIVO_XML, body: `<Response><Speak>${escapeXml(this.failureMessage)}</Speak><Hangup/></Response>` };
  }

  parseStatus(request: WebhookRequest): StatusFields {
    const status = statusValue(formField(request, 'CallStatus'));
    return { callSid: requireCallId(formField(request, 'CallUUID'), 'CallUUID'), status, final: PLIVO_FINAL_STATUSES.includes(status) };
  }

  /** Plivo calls the hangup URL once, when the call has ended, whatever `CallStatus` says. */
  parseHangup(request: WebhookRequest): StatusFields {
    const status = statusValue(formField(request, 'CallStatus')) || 'hangup';
    return { callSid: requireCallId(formField(request, 'CallUUID'), 'CallUUID'), status, final: true };
  }

  /** Form fields `Event`, `CallUUID`, `StreamID` (also spelled `StreamId`), `Timestamp`, ... */
  parseStreamStatus(request: WebhookRequest): StreamStatusFields {
    const event = eventValue(formField(request, 'Event'));
    const streamId = formField(request, 'StreamID') ?? formField(request, 'StreamId') ?? '';
    return {
      callSid: requireCallId(formField(request, 'CallUUID'), 'CallUUID'),
      event,
      kind: PLIVO_STREAM_EVENTS[event.toLowerCase()] ?? 'other',
      streamId: streamId.slice(0, 64),
    };
  }
}
