import { ApiError } from '@smart-router/http';
import { WebhookRequest } from './webhook-request';

export type ProviderName = 'twilio' | 'plivo' | 'exotel';
export const PROVIDER_NAMES: readonly ProviderName[] = ['twilio', 'plivo', 'exotel'];

/** What the webhook answers: status, media type and the exact bytes. */
export interface ProviderDocument {
  status: number;
  contentType: string;
  body: string;
  /** Extra response headers (e.g. Retry-After on a 503); never recorded for replays. */
  headers?: Record<string, string>;
}

/** An answer webhook, validated: the call to allocate and its merchant ('' = none). */
export interface AnswerFields {
  callSid: string;
  merchantId: string;
  /** Who is calling (the provider's From; '' when absent): a sticky_by_caller rollout keys its split on it (SPEC 12). */
  caller: string;
}

/** A status callback, validated. `final` = the call is over and its pod can go back. */
export interface StatusFields {
  callSid: string;
  /** The provider's status in lower case ('' when the callback carried none). */
  status: string;
  final: boolean;
}

/**
 * What a media-stream status callback means for the call (SPEC 9.2):
 * `started` connects it, `stopped` and `failed` release it, `other` (an event
 * we do not act on, e.g. Plivo's DegradedStream) changes nothing.
 */
export type StreamEventKind = 'started' | 'stopped' | 'failed' | 'other';

/** A media-stream status callback, validated. */
export interface StreamStatusFields {
  callSid: string;
  /** The provider's event name as sent ('' when absent). */
  event: string;
  kind: StreamEventKind;
  /** The provider's stream id ('' when absent); logged, never trusted for routing. */
  streamId: string;
}

/** The stream-status path our answer documents ask for (`/api/v1/{provider}/stream-status`). */
export function streamStatusPath(provider: ProviderName): string {
  return `/api/v1/${provider}/stream-status`;
}

/** Where the provider asks what to do when a media stream ends (SPEC 11 re-home: Twilio's `<Connect action>`, Plivo's `<Redirect>`). */
export function streamEndedPath(provider: ProviderName): string {
  return `/api/v1/${provider}/stream-ended`;
}

/** Re-homing additions to an answer document (SPEC 11 "Recovery"). */
export interface RehomeOptions {
  /** Where the provider goes when the stream ends (absolute, signed by the provider). */
  streamEndedUrl: string;
  /** The pod the call streamed from before this document ('' or absent = a first answer). */
  rehomeFrom?: string;
}

/** A short event name, as sent; anything else reads as no event. */
export function eventValue(value: unknown): string {
  return typeof value === 'string' && /^[A-Za-z_-]{1,32}$/.test(value) ? value : '';
}

/**
 * One telephony provider: how its webhooks authenticate, where the call id
 * and merchant are, and what document it expects back. Adapters are
 * stateless (credentials are fixed at construction); the allocation itself
 * happens elsewhere, identically for every provider.
 */
export interface ProviderAdapter {
  readonly name: ProviderName;
  /** True when credentials are configured, i.e. unauthenticated requests are refused. */
  readonly authenticates: boolean;
  /** Throws a 401/403 ApiError unless the request carries valid credentials (when configured). */
  authenticate(request: WebhookRequest): void;
  /** Throws a 400 ApiError for a missing or invalid call id or merchant_id. */
  parseAnswer(request: WebhookRequest): AnswerFields;
  /**
   * What identifies this very request among every webhook the provider ever
   * sent (SPEC 10.2, replays are refused): at most two `kind:value` strings,
   * none when the provider sends nothing of the kind. Meaningful only once
   * `authenticate` passed with credentials configured; the caller remembers
   * nothing else, so unsigned requests cannot fill the memory.
   */
  replayIdentities?(request: WebhookRequest): string[];
  /**
   * `streamStatusUrl`: where the provider should post the stream's status
   * callbacks (absolute, signed by the provider like any webhook); ignored by
   * providers without stream callbacks (Exotel).
   */
  answerDocument(wsUrl: string, streamStatusUrl?: string, rehome?: RehomeOptions): ProviderDocument;
  /** Only for providers that request a URL when a stream ends (Twilio, Plivo): the document that ends the call. */
  hangupDocument?(): ProviderDocument;
  /** What the provider gets when no pod can take the call (no pod, Redis down, call already ended). */
  failureDocument(error: ApiError): ProviderDocument;
  parseStatus(request: WebhookRequest): StatusFields;
  /** Only for providers with a dedicated hangup URL (Plivo): every post there means the call ended. */
  parseHangup?(request: WebhookRequest): StatusFields;
  /** Only for providers with media-stream status callbacks (Twilio, Plivo). */
  parseStreamStatus?(request: WebhookRequest): StreamStatusFields;
}

/** The caller hears this when the call cannot be connected to a voice agent. */
export const DEFAULT_FAILURE_MESSAGE = 'We are sorry, we cannot take your call right now. Please try again later.';

// The API's own identifier checks, re-exported for the adapters.
export { optionalMerchantId, requireCallId } from '@smart-router/http';

/** A status value in lower case; anything that is not a short word reads as "no status" (non-final). */
export function statusValue(value: unknown): string {
  return typeof value === 'string' && /^[A-Za-z_-]{1,32}$/.test(value) ? value.toLowerCase() : '';
}

export function signatureMissing(header: string): ApiError {
  return new ApiError(403, 'SIGNATURE_MISSING', `missing ${header} header`);
}

export function signatureInvalid(header: string): ApiError {
  return new ApiError(403, 'SIGNATURE_INVALID', `invalid ${header} signature`);
}
