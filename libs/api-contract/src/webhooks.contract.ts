import { Type } from '@sinclair/typebox';
import { callIdField } from './identifiers';
import { ErrorBody, RouteContract, errorResponse } from './route-contract';

// Provider posts are parsed and signature-checked by the webhooks app itself
// (the signature covers the raw body, so nothing may run before it): these
// contracts document them; the app validates in its provider adapters.

/** SPEC 10.2: a signed copy of an answer webhook still being answered, while too many copies already wait for it. */
const replayPending = errorResponse('a copy of a signed webhook still being answered while too many copies wait for it (Retry-After: 1): retry', 'REPLAY_PENDING');

export const StatusAnswer = Type.Object({
  success: Type.Literal(true),
  call_sid: Type.String(),
  status: Type.String(),
  released: Type.Boolean({ description: 'this callback released the call (false for a non-final status or an unknown or already released call)' }),
  pod_name: Type.Optional(Type.String()),
}, { additionalProperties: true });

const merchantQuery = Type.Object({ merchant_id: Type.Optional(Type.String({ maxLength: 128, pattern: '^[A-Za-z0-9._:-]*$' })) });
const form = ['application/x-www-form-urlencoded'];

interface ProviderContract {
  scheme: string;
  idField: string;
  statusField: string;
  statusValues: string;
  bodyContentTypes: string[];
  answer: RouteContract['responses'];
  authFailure: number;
  /** Media-stream status callbacks (SPEC 9.2): the event field and what its values do; Exotel has none. */
  streamStatus?: { eventField: string; events: string };
}

export const StreamStatusAnswer = Type.Object({
  success: Type.Literal(true),
  call_sid: Type.String(),
  event: Type.String({ description: 'the provider event acted on (stream-started, StartStream, ...), or `ignored` for any other event' }),
  connected: Type.Boolean(),
  released: Type.Boolean(),
  pod_name: Type.Optional(Type.String()),
}, { additionalProperties: true });

const PROVIDERS: Record<string, ProviderContract> = {
  twilio: {
    scheme: 'twilioSignature', idField: 'CallSid', statusField: 'CallStatus', statusValues: 'completed, busy, failed, no-answer, canceled release the call', bodyContentTypes: form,
    answer: { 200: { description: 'TwiML: Connect/Stream to the pod; on failure (no pod, Redis down, call already ended) Say + Hangup, still 200', contentType: 'text/xml', example: '<Response><Connect><Stream url="wss://host/ws/pod/voice-agent-1/CA123" statusCallback="https://host/api/v1/twilio/stream-status?allocation_id=42" statusCallbackMethod="POST"></Stream></Connect></Response>' }, 503: replayPending },
    authFailure: 403,
    streamStatus: { eventField: 'StreamEvent', events: 'stream-started connects the call; stream-stopped, stream-error release it' },
  },
  plivo: {
    scheme: 'plivoSignature', idField: 'CallUUID', statusField: 'CallStatus', statusValues: 'completed, hangup, busy, failed, timeout, no-answer, cancel release the call', bodyContentTypes: form,
    answer: { 200: { description: 'Plivo XML: bidirectional Stream to the pod; on failure Speak + Hangup, still 200', contentType: 'text/xml', example: '<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" statusCallbackUrl="https://host/api/v1/plivo/stream-status?allocation_id=42" statusCallbackMethod="POST">wss://host/ws/pod/voice-agent-1/UUID</Stream></Response>' }, 503: replayPending },
    authFailure: 403,
    streamStatus: { eventField: 'Event', events: 'StartStream or started connects the call; StopStream/stopped, DroppedStream/failed release it; others change nothing' },
  },
  exotel: {
    scheme: 'exotelBasic', idField: 'CallSid', statusField: 'Status', statusValues: 'completed, failed, busy, no-answer release the call', bodyContentTypes: ['application/json', ...form],
    answer: {
      200: { description: 'the pod WebSocket URL', schema: Type.Object({ url: Type.String() }) },
      // Exotel's failure answer is the JSON error itself.
      409: errorResponse('call already ended', 'CALL_ENDED'),
      500: errorResponse('merchant configuration is invalid', 'MERCHANT_CONFIG_INVALID'),
      503: errorResponse('no pod, wait queue full, or Redis unavailable', 'NO_POD_AVAILABLE', 'QUEUE_FULL', 'REDIS_UNAVAILABLE', 'STATE_REBUILDING'),
    },
    authFailure: 401,
  },
};

const common = (provider: ProviderContract) => ({
  400: errorResponse('missing or invalid call id or body', 'CALL_SID_REQUIRED', 'INVALID_CALL_SID', 'INVALID_MERCHANT_ID', 'INVALID_BODY'),
  [provider.authFailure]: { description: provider.authFailure === 401 ? 'missing or wrong Basic credentials' : 'missing or invalid signature (code: SIGNATURE_MISSING, SIGNATURE_INVALID)', schema: ErrorBody },
  413: errorResponse('body over 16 KiB', 'PAYLOAD_TOO_LARGE'),
  415: errorResponse('unsupported content type', 'UNSUPPORTED_MEDIA_TYPE'),
});

function providerRoutes(name: string, provider: ProviderContract): RouteContract[] {
  const body = Type.Object({ [provider.idField]: callIdField(provider.idField), merchant_id: Type.Optional(Type.String()) }, { additionalProperties: true });
  const statusBody = Type.Object({ [provider.idField]: callIdField(provider.idField), [provider.statusField]: Type.Optional(Type.String({ description: provider.statusValues })) }, { additionalProperties: true });
  const answer = (path: string, withTemplate: boolean): RouteContract => ({
    method: 'POST', path, scheme: provider.scheme, bodyContentTypes: provider.bodyContentTypes, body,
    summary: `${name} answer webhook: allocate a pod for the call (idempotent per call id; refused after the call ended)`,
    query: merchantQuery,
    ...(withTemplate ? { params: Type.Object({ template: Type.String({ description: 'recorded only' }) }) } : {}),
    responses: { ...provider.answer, ...common(provider) },
  });
  const status = (path: string, summary: string): RouteContract => ({
    method: 'POST', path, summary, scheme: provider.scheme, bodyContentTypes: provider.bodyContentTypes, body: statusBody,
    responses: { 200: { description: 'handled (also for a non-final status and an unknown or already released call)', schema: StatusAnswer }, ...common(provider), 503: errorResponse('Redis unavailable: retry', 'REDIS_UNAVAILABLE') },
  });
  return [
    answer(`/api/v1/${name}/allocate`, false),
    answer(`/api/v1/${name}/answer`, false),
    answer(`/api/v1/${name}/answer/{template}`, true),
    answer(`/agent/voice/breeze-buddy/${name}/callback`, false),
    answer(`/agent/voice/breeze-buddy/${name}/callback/{template}`, true),
    status(`/api/v1/${name}/status`, `${name} status callback: a final status releases the call`),
    ...(name === 'plivo' ? [status('/api/v1/plivo/hangup', 'Plivo hangup URL: every post releases the call')] : []),
    ...(provider.streamStatus ? [streamStatus(name, provider, provider.streamStatus), streamEnded(name, provider)] : []),
  ];
}

/** SPEC 11 "Recovery": the action / Redirect URL of a re-homing answer document. */
function streamEnded(name: string, provider: ProviderContract): RouteContract {
  const verb = name === 'twilio' ? '<Connect action>' : '<Redirect>';
  return {
    method: 'POST', path: `/api/v1/${name}/stream-ended`, scheme: provider.scheme, bodyContentTypes: provider.bodyContentTypes,
    summary: `${name} ${verb} of a re-homing answer document (REHOME_ENABLED): a call its agent released hangs up; otherwise it is re-homed to a new pod (at most REHOME_MAX times, then the failure document)`,
    query: Type.Object({ allocation_id: Type.String({ pattern: '^[0-9]{1,15}$', description: 'the allocation whose stream ended' }) }),
    body: Type.Object({ [provider.idField]: callIdField(provider.idField) }, { additionalProperties: true }),
    responses: {
      200: { description: 'the provider document: Hangup (released), a new stream to another pod naming rehome_from, or the failure document (REHOME_MAX reached, no pod, Redis unavailable, or an allocation_id that is neither the call\'s current one nor the one it was re-homed from: never an HTTP error, which the provider would turn into its "application error" to the caller on the line)', contentType: 'text/xml', example: name === 'twilio'
        ? '<Response><Connect action="https://host/api/v1/twilio/stream-ended?allocation_id=43" method="POST"><Stream url="wss://host/ws/pod/voice-agent-3/CA123"><Parameter name="rehome_from" value="voice-agent-1"/></Stream></Connect></Response>'
        : '<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" extraHeaders="rehome_from=voice-agent-1">wss://host/ws/pod/voice-agent-3/UUID</Stream><Redirect method="POST">https://host/api/v1/plivo/stream-ended?allocation_id=43</Redirect></Response>' },
      ...common(provider),
    },
  };
}

function streamStatus(name: string, provider: ProviderContract, stream: { eventField: string; events: string }): RouteContract {
  return {
    method: 'POST', path: `/api/v1/${name}/stream-status`, scheme: provider.scheme, bodyContentTypes: provider.bodyContentTypes,
    summary: `${name} media-stream status callback (asked for by the answer document): started connects, stopped/failed releases the call`,
    query: Type.Object({ allocation_id: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'the allocation the answer document was written for' })) }),
    body: Type.Object({ [provider.idField]: callIdField(provider.idField), [stream.eventField]: Type.Optional(Type.String({ description: stream.events })) }, { additionalProperties: true }),
    responses: {
      200: { description: 'handled (also an unknown event, an unknown or already released call, a duplicate)', schema: StreamStatusAnswer },
      ...common(provider),
      409: errorResponse('allocation_id is not the call\'s current allocation', 'STALE_ALLOCATION'),
      503: errorResponse('Redis unavailable: retry', 'REDIS_UNAVAILABLE'),
    },
  };
}

/** SPEC section 5: the provider webhooks, one set of paths per provider. */
export const webhookRoutes: RouteContract[] = Object.entries(PROVIDERS).flatMap(([name, provider]) => providerRoutes(name, provider));

export const webhookSecuritySchemes = {
  twilioSignature: { type: 'apiKey', in: 'header', name: 'X-Twilio-Signature', description: 'required when TWILIO_AUTH_TOKENS is set' },
  plivoSignature: { type: 'apiKey', in: 'header', name: 'X-Plivo-Signature-V3', description: 'with X-Plivo-Signature-V3-Nonce; required when PLIVO_AUTH_TOKENS is set' },
  exotelBasic: { type: 'http', scheme: 'basic', description: 'required when EXOTEL_CREDENTIALS is set' },
};
