import { ApiError } from '@smart-router/http';
import {
  AnswerFields, ProviderAdapter, ProviderDocument, StatusFields,
  optionalMerchantId, requireCallId, statusValue,
} from '../provider-adapter';
import { WebhookRequest, bodyField, callerOf, queryField } from '../webhook-request';
import { ExotelCredentials } from './exotel-credentials';

const JSON_TYPE = 'application/json; charset=utf-8';

/** Exotel status-callback `Status` values (developer.exotel.com call API): all of them end the call. */
export const EXOTEL_FINAL_STATUSES: readonly string[] = ['completed', 'failed', 'busy', 'no-answer'];

/** A JSON object field, or the same name in the query (Exotel applets may pass either). */
function field(request: WebhookRequest, name: string): unknown {
  return bodyField(request, name) ?? queryField(request, name);
}

/**
 * Exotel's Voicebot applet with an https endpoint: the endpoint answers
 * `{"url": "wss://..."}` (JSON or form body, `CallSid` and `merchant_id`;
 * either may also come from the query).
 */
export class ExotelAdapter implements ProviderAdapter {
  readonly name = 'exotel' as const;

  constructor(private readonly credentials: ExotelCredentials) {}

  get authenticates(): boolean {
    return this.credentials.enabled;
  }

  authenticate(request: WebhookRequest): void {
    this.credentials.verify(request);
  }

  parseAnswer(request: WebhookRequest): AnswerFields {
    return {
      callSid: requireCallId(field(request, 'CallSid'), 'CallSid'), merchantId: optionalMerchantId(field(request, 'merchant_id')),
      caller: callerOf(field(request, 'From') ?? field(request, 'from')),
    };
  }

  answerDocument(wsUrl: string): ProviderDocument {
    return { status: 200, contentType: JSON_TYPE, body: JSON.stringify({ url: wsUrl }) };
  }

  /**
   * Exotel has no document for "hang up with a message": a JSON body without
   * a URL is not a valid answer either. The applet's equivalent of failure is
   * a non-2xx answer, so the error goes back as the API would send it (503
   * for no pod or Redis down, 409 for a call that already ended), and the
   * call flow moves on to its failure branch.
   */
  failureDocument(error: ApiError): ProviderDocument {
    return { status: error.status, contentType: JSON_TYPE, body: JSON.stringify({ error: error.message, code: error.code }) };
  }

  parseStatus(request: WebhookRequest): StatusFields {
    const status = statusValue(field(request, 'Status'));
    return { callSid: requireCallId(field(request, 'CallSid'), 'CallSid'), status, final: EXOTEL_FINAL_STATUSES.includes(status) };
  }
}
