import { Static, Type } from '@sinclair/typebox';
import { callIdField, OptionalMerchantId, optionalText } from './identifiers';
import { RouteContract, errorResponse, field } from './route-contract';

/** SPEC 9.1: the longest an allocation may wait for a pod. */
export const MAX_WAIT_MS = 10000;

/** SPEC 9.2 fencing token: act only on this allocation of the call_sid (a JSON integer or its decimal string). */
export const AllocationIdField = field(Type.Union([Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), Type.String({ pattern: '^[0-9]{1,15}$' }), Type.Null()], {
  description: "act only on this allocation of the call_sid; another one gets 409 STALE_ALLOCATION",
}), { invalid: { code: 'INVALID_FIELD', message: 'allocation_id must be a positive integer' } });

const CallState = Type.Union([Type.Literal('pending'), Type.Literal('connected'), Type.Null()]);

/** Largest `metadata`, as JSON text (checked after validation: a size of JSON text is not a schema keyword). */
export const MAX_METADATA_BYTES = 4096;

export const AllocateRequest = Type.Object({
  call_sid: callIdField(),
  merchant_id: Type.Optional(OptionalMerchantId),
  reseller_id: Type.Optional({ ...OptionalMerchantId, description: 'alias of merchant_id (the Python client sends it)' }),
  provider: Type.Optional(optionalText('provider', 64, 'telephony provider, recorded on the call')),
  metadata: Type.Optional(Type.Unknown({ description: `any JSON, recorded on the call (at most ${MAX_METADATA_BYTES} bytes as JSON)` })),
  caller: Type.Optional(optionalText('caller', 256, 'who is calling (e.g. the From number): a sticky_by_caller rollout gives the same caller the same agent version (SPEC 12)')),
  wait_ms: Type.Optional(field(Type.Integer({ minimum: 0, maximum: MAX_WAIT_MS, description: 'wait up to this long for a pod when none is free (SPEC 9.1); 0 or absent = answer 503 at once' }), {
    invalid: { code: 'INVALID_FIELD', message: `wait_ms must be an integer from 0 to ${MAX_WAIT_MS}` },
  })),
});
export type AllocateRequest = Static<typeof AllocateRequest>;

export const AllocateResponse = Type.Object({
  success: Type.Literal(true),
  pod_name: Type.String(),
  ws_url: Type.String({ description: '{VOICE_AGENT_BASE_URL}/ws/pod/{pod_name}/{call_sid}; with MEDIA_URL_SECRET signed: .../{call_sid}/{allocation_id}/{expiry}/{signature} (SPEC 10.1), the same for a repeated allocate' }),
  source_pool: Type.String({ examples: ['pool:standard'] }),
  was_existing: Type.Boolean({ description: 'true when this call_sid already had a pod (idempotent retry)' }),
  allocation_id: Type.Union([Type.Integer(), Type.Null()], { description: 'fencing token, strictly increasing; the same for a repeated allocate' }),
  state: CallState,
  agent_version: Type.String({ description: "the serving pod's agent version (its VERSION_LABEL; '' = no label, SPEC 12)" }),
}, { additionalProperties: true });
export type AllocateResponse = Static<typeof AllocateResponse>;

export const ReleaseRequest = Type.Object({
  call_sid: callIdField(),
  reason: Type.Optional(optionalText('reason', 256, 'why the call ended (free text)')),
  allocation_id: Type.Optional(AllocationIdField),
});
export type ReleaseRequest = Static<typeof ReleaseRequest>;

export const ReleaseResponse = Type.Object({
  success: Type.Literal(true),
  pod_name: Type.String(),
  released_to_pool: Type.String(),
  was_draining: Type.Boolean(),
}, { additionalProperties: true });
export type ReleaseResponse = Static<typeof ReleaseResponse>;

export const ConnectedRequest = Type.Object({ call_sid: callIdField(), allocation_id: Type.Optional(AllocationIdField) });
export type ConnectedRequest = Static<typeof ConnectedRequest>;

export const ConnectedResponse = Type.Object({
  success: Type.Literal(true),
  call_sid: Type.String(),
  pod_name: Type.String(),
  allocation_id: Type.Union([Type.Integer(), Type.Null()]),
  state: Type.Literal('connected'),
  connected_at: Type.Integer({ description: 'ms since the Unix epoch' }),
  was_connected: Type.Boolean({ description: 'already connected (a duplicate report)' }),
}, { additionalProperties: true });
export type ConnectedResponse = Static<typeof ConnectedResponse>;

/** SPEC 11: the counters a voice agent reports per call. */
const MediaCounter = (what: string) => field(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: `${what} so far on the call's media socket (a counter: it only grows)` }), {
  missing: { code: 'INVALID_FIELD', message: 'media_in and media_out are required non-negative integers' },
  invalid: { code: 'INVALID_FIELD', message: 'media_in and media_out must be non-negative integers' },
});

/** Most calls one heartbeat may list: far above any pod's max_concurrent, and the 16 KiB body bounds it anyway. */
export const MAX_HEARTBEAT_CALLS = 200;

export const HeartbeatCall = Type.Object({
  call_sid: callIdField(),
  allocation_id: Type.Optional(AllocationIdField),
  media_in: MediaCounter('frames received'),
  media_out: MediaCounter('frames sent'),
});

export const HeartbeatRequest = Type.Object({
  pod_name: field(Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', description: 'the pod this voice agent runs in (DNS-1123 label)' }), {
    missing: { code: 'POD_NAME_REQUIRED', message: 'pod_name is required' },
    invalid: { code: 'INVALID_POD_NAME', message: 'pod_name must be a DNS-1123 label' },
  }),
  calls: field(Type.Array(HeartbeatCall, { maxItems: MAX_HEARTBEAT_CALLS, description: 'every call the agent is serving now, with its media counters' }), {
    missing: { code: 'INVALID_FIELD', message: 'calls is required (an empty list when idle)' },
    invalid: { code: 'INVALID_FIELD', message: `calls must be a list of at most ${MAX_HEARTBEAT_CALLS} {call_sid, allocation_id, media_in, media_out}` },
  }),
});
export type HeartbeatRequest = Static<typeof HeartbeatRequest>;

export const HeartbeatResponse = Type.Object({
  success: Type.Literal(true),
  pod_name: Type.String(),
  liveness: Type.Union([Type.Literal('live'), Type.Literal('dead')], {
    description: "live; or dead: declared dead while silent, and this heartbeat still lists calls it held then, so it stays out of its pool until a heartbeat lists none of them",
  }),
  unknown_calls: Type.Array(Type.String(), { description: 'listed calls the router does not have on this pod at that allocation (ended, e.g. agent_dead, or moved): hang them up' }),
  at: Type.Integer({ description: 'the heartbeat time, ms since the epoch on the router\'s (Redis) clock' }),
}, { additionalProperties: true });
export type HeartbeatResponse = Static<typeof HeartbeatResponse>;

const badRequest = errorResponse('invalid request', 'INVALID_BODY', 'CALL_SID_REQUIRED', 'INVALID_CALL_SID', 'INVALID_MERCHANT_ID', 'INVALID_FIELD');
const unauthorized = errorResponse('missing or invalid bearer token (a dispatcher token, or a voice agent\'s ServiceAccount token when AGENT_TOKEN_AUDIENCE is set)', 'UNAUTHORIZED');
/** SPEC 10.1: the TokenReview of an agent token could not be made (fail closed). */
const identityUnavailable = 'AUTH_UNAVAILABLE';
const tooLarge = errorResponse('body over 16 KiB', 'PAYLOAD_TOO_LARGE');
const unsupported = errorResponse('body is not JSON', 'UNSUPPORTED_MEDIA_TYPE');

/** SPEC section 3: the JSON API of allocation-api. */
/** The errors of a request about one live call (release, connected). */
const liveCallErrors = {
  400: badRequest,
  401: unauthorized,
  403: errorResponse('a voice agent acting on a call on another pod, or a scoped token on a call of a merchant outside its scope: nothing changed', 'NOT_YOUR_CALL', 'MERCHANT_FORBIDDEN'),
  404: errorResponse('unknown or already released', 'CALL_NOT_FOUND'),
  409: errorResponse('allocation_id is not the call\'s current allocation', 'STALE_ALLOCATION'),
  413: tooLarge,
  415: unsupported,
  503: errorResponse('Redis unavailable, the write not replicated, or the caller\'s token could not be reviewed: retry', 'REDIS_UNAVAILABLE', 'NOT_REPLICATED', identityUnavailable),
};

/** SPEC 10.1: voice agents call release and connected with their pod's projected ServiceAccount token. */
export const AGENT_TOKEN_SCHEME = 'agentToken';
export const allocationSecuritySchemes = {
  [AGENT_TOKEN_SCHEME]: {
    type: 'http',
    scheme: 'bearer',
    description: "a voice agent's projected ServiceAccount token (audience AGENT_TOKEN_AUDIENCE, e.g. smart-router), validated by a Kubernetes TokenReview; it acts only on calls on its own pod",
  },
};

export const allocationRoutes = {
  allocate: {
    method: 'POST',
    path: '/api/v1/allocate',
    summary: 'Allocate a pod for a call (idempotent per call_sid)',
    security: 'operator',
    body: AllocateRequest,
    responses: {
      200: { description: 'allocated (or the existing allocation)', schema: AllocateResponse },
      400: badRequest,
      401: unauthorized,
      403: errorResponse('a voice-agent identity (agents do not allocate), or a scoped token for a merchant outside its scope (an empty merchant_id included)', 'FORBIDDEN', 'MERCHANT_FORBIDDEN'),
      413: tooLarge,
      415: unsupported,
      429: errorResponse('the merchant holds its max_calls', 'MERCHANT_LIMIT'),
      500: errorResponse('merchant configuration is invalid', 'MERCHANT_CONFIG_INVALID', 'INTERNAL'),
      503: errorResponse('no pod (within wait_ms), wait queue full, Redis unavailable, state being rebuilt, or the caller\'s token could not be reviewed: retry', 'NO_POD_AVAILABLE', 'QUEUE_FULL', 'REDIS_UNAVAILABLE', 'NOT_REPLICATED', 'STATE_REBUILDING', identityUnavailable),
    },
  },
  release: {
    method: 'POST',
    path: '/api/v1/release',
    summary: 'Release a call (404 when unknown or already released: treat as success)',
    security: 'operator',
    scheme: AGENT_TOKEN_SCHEME,
    body: ReleaseRequest,
    responses: {
      200: { description: 'released', schema: ReleaseResponse },
      ...liveCallErrors,
    },
  },
  connected: {
    method: 'POST',
    path: '/api/v1/connected',
    summary: "The call's media stream reached its voice agent: pending -> connected (kept past CONNECT_TIMEOUT_SECONDS); idempotent",
    security: 'operator',
    scheme: AGENT_TOKEN_SCHEME,
    body: ConnectedRequest,
    responses: {
      200: { description: 'connected (or already connected)', schema: ConnectedResponse },
      ...liveCallErrors,
    },
  },
  heartbeat: {
    method: 'POST',
    path: '/api/v1/heartbeat',
    summary: 'A voice agent is alive (SPEC 11): every HEARTBEAT_INTERVAL_MS with its calls and media counters; silent pods become suspect, then dead',
    security: 'operator',
    scheme: AGENT_TOKEN_SCHEME,
    body: HeartbeatRequest,
    responses: {
      200: { description: 'recorded', schema: HeartbeatResponse },
      400: errorResponse('invalid request', 'INVALID_BODY', 'POD_NAME_REQUIRED', 'INVALID_POD_NAME', 'CALL_SID_REQUIRED', 'INVALID_CALL_SID', 'INVALID_FIELD'),
      401: unauthorized,
      403: errorResponse("a voice agent reporting for another pod than its own (NOT_YOUR_CALL), or a merchant-scoped dispatcher token (FORBIDDEN: pod liveness is not a merchant's): nothing recorded", 'NOT_YOUR_CALL', 'FORBIDDEN'),
      404: errorResponse('the router does not know this pod (not yet seen, or deleted): nothing recorded, keep sending', 'POD_NOT_FOUND'),
      413: tooLarge,
      415: unsupported,
      503: errorResponse('Redis unavailable, the write not replicated, or the caller\'s token could not be reviewed: retry', 'REDIS_UNAVAILABLE', 'NOT_REPLICATED', identityUnavailable),
    },
  },
} satisfies Record<string, RouteContract>;
