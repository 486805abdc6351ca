import { Static, TSchema, Type } from '@sinclair/typebox';
import { MerchantId, callIdField } from './identifiers';
import { RouteContract, errorResponse, field } from './route-contract';

// Response objects stay open (`additionalProperties: true`): a field added by
// the service is serialized and only needs documenting, never silently dropped.
const open = <T extends Record<string, TSchema>>(properties: T, description?: string) => Type.Object(properties, { additionalProperties: true, ...(description ? { description } : {}) });
const nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const podNameErrors = {
  missing: { code: 'POD_NAME_REQUIRED', message: 'pod_name is required' },
  invalid: { code: 'INVALID_POD_NAME', message: 'pod_name must be a DNS-1123 label' },
};
const PodName = field(Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', description: 'DNS-1123 label' }), podNameErrors);

export const TierView = open({
  type: Type.Union([Type.Literal('exclusive'), Type.Literal('shared')]),
  max_concurrent: Type.Optional(Type.Integer()),
  target: Type.Integer(),
  assigned: Type.Array(Type.String()),
  available: Type.Array(Type.String()),
  load: Type.Record(Type.String(), Type.Integer(), { description: 'active calls per assigned pod' }),
});

/** SPEC 11: live, suspect or dead by heartbeats; unknown = the pod's agent never heartbeated (not enrolled). */
const LivenessState = Type.Union([Type.Literal('live'), Type.Literal('suspect'), Type.Literal('dead'), Type.Literal('unknown')], {
  description: 'voice-agent liveness by heartbeats (SPEC 11); unknown = never heartbeated',
});

export const StatusResponse = open({
  status: Type.Literal('up'),
  active_calls: Type.Integer(),
  is_leader: Type.Boolean({ description: 'a pod-watcher holds the Lease' }),
  pools: Type.Record(Type.String(), TierView),
  draining: Type.Array(Type.String()),
  pods: Type.Integer(),
  waiting: Type.Integer({ description: 'allocations waiting for a pod (wait_ms), across every replica' }),
  liveness: Type.Object({
    suspect: Type.Array(Type.String(), { description: 'enrolled pods silent past HEARTBEAT_SUSPECT_MS: no new calls, their calls untouched' }),
    dead: Type.Array(Type.String(), { description: 'pods silent past HEARTBEAT_DEAD_MS: their calls recovered, out of their pools until a clean heartbeat' }),
  }, { description: 'voice-agent liveness (SPEC 11); pods not listed are live or never heartbeated' }),
  subsystems: open({
    redis: Type.Literal('ok'),
    watcher: open({ leader: nullable(Type.String()), term: Type.Optional(Type.Number()), renewed_at: Type.Optional(Type.Number()) }),
    pod_stream: open({ lag: Type.Optional(Type.Integer()), pending: Type.Optional(Type.Integer()), consumers: Type.Optional(Type.Integer()), error: Type.Optional(Type.String()) }),
    last_reconcile: nullable(open({ at: Type.Number(), reason: Type.Optional(Type.String()), pods: Type.Integer(), removed: Type.Integer(), orphaned: Type.Integer(), duration_ms: Type.Number() })),
  }),
});

export const DrainRequest = Type.Object({ pod_name: PodName });
export type DrainRequest = Static<typeof DrainRequest>;
export const DrainResponse = open({ success: Type.Literal(true), pod_name: Type.String(), has_active_call: Type.Boolean(), active_calls: Type.Integer(), message: Type.String() });

export const PodResponse = open({
  pod_name: Type.String(),
  tier: nullable(Type.String()),
  status: Type.String(),
  uid: Type.Optional(Type.String()),
  ready: Type.Boolean(),
  terminating: Type.Boolean(),
  draining: Type.Boolean(),
  liveness: LivenessState,
  last_heartbeat_at: nullable(Type.Number({ description: 'last heartbeat, ms since the Unix epoch (Redis clock); null = never' })),
  last_heartbeat_age_ms: nullable(Type.Number({ description: 'how long ago that was, ms (Redis clock)' })),
  allocated_call_sid: nullable(Type.String()),
  allocated_at: nullable(Type.Number()),
  source_pool: nullable(Type.String()),
  lease: nullable(Type.String()),
  active_calls: Type.Integer(),
  calls: Type.Array(Type.String()),
  metadata: Type.Unknown({ description: 'pod metadata JSON or null' }),
});

export const CallResponse = open({
  call_sid: Type.String(),
  pod_name: Type.String(),
  pod_uid: Type.Optional(Type.String()),
  source_pool: Type.String(),
  tier: Type.Optional(Type.String()),
  merchant_id: Type.Optional(Type.String()),
  provider: nullable(Type.String()),
  allocated_at: Type.Number({ description: 'Unix seconds' }),
  metadata: Type.Unknown({ description: 'metadata sent at allocation, or null' }),
  allocation_id: nullable(Type.Integer({ description: 'fencing token (null for a record written before fencing)' })),
  state: nullable(Type.String({ description: 'pending or connected' })),
  connected_at: nullable(Type.Number({ description: 'ms since the Unix epoch' })),
  connect_deadline: nullable(Type.Number({ description: 'ms since the Unix epoch; a pending call is released after it' })),
});

export const MerchantConfig = open({ tier: Type.String(), pool: Type.Optional(Type.String()), fallback: Type.Optional(Type.Array(Type.String())), max_calls: Type.Optional(Type.Integer({ description: 'most concurrent calls of this merchant (429 MERCHANT_LIMIT beyond)' })), max_waiting: Type.Optional(Type.Integer({ description: 'most requests of this merchant waiting for a pod at once (503 QUEUE_FULL beyond)' })) });
const TierSpec = open({ type: Type.Union([Type.Literal('exclusive'), Type.Literal('shared')]), target: Type.Integer(), max_concurrent: Type.Optional(Type.Integer()), dedicated: Type.Optional(Type.Boolean()) });
export const TiersResponse = open({ tiers: Type.Record(Type.String(), TierSpec), extra_pods_tier: Type.String() });
const FleetView = open({
  replicas: nullable(Type.Integer({ description: 'pods the StatefulSet has now; null until the reconciler has read it' })),
  target: nullable(Type.Integer({ description: 'the size asked for; null until the reconciler has read the StatefulSet' })),
  pending_removal: Type.Array(Type.String(), { description: 'every pod above the target not yet removed, busy or not' }),
});
const AutoscalerView = open({
  enabled: Type.Boolean(), min_replicas: Type.Integer(), max_replicas: Type.Integer(), buffer: Type.Integer(), scale_down_delay_seconds: Type.Integer(),
  current_replicas: nullable(Type.Integer()), desired_replicas: nullable(Type.Integer()),
  free: Type.Integer({ description: 'free exclusive pods in the EXTRA_PODS_TIER now (what the autoscaler keeps at buffer)' }), waiting: Type.Integer({ description: 'requests waiting for a pod now' }),
  last_decision: Type.Optional(Type.Union([open({ at: Type.Number(), from: Type.Integer(), to: Type.Integer(), reason: Type.String() }), Type.Null()])),
});
const RolloutTargetSchema = Type.Object({ version: Type.String({ maxLength: 63, description: "an agent version (the pods' VERSION_LABEL; '' = pods without it)" }), percent: Type.Integer({ minimum: 0, maximum: 100 }) }, { additionalProperties: false });
const RolloutGuardrailSchema = Type.Object({
  max_excess_pp: Type.Number({ minimum: 0, maximum: 100, description: "points by which the canary's connect-failure rate may exceed the stable version's" }),
  min_calls: Type.Integer({ minimum: 1, maximum: 1000000, description: 'canary calls with a known outcome before the guardrail judges' }),
}, { additionalProperties: false });
const RolloutAssignmentSchema = Type.Union([Type.Literal('random'), Type.Literal('sticky_by_caller')]);
const VersionFigures = open({
  percent: nullable(Type.Integer({ description: 'its share in the live revision; null = not a target' })),
  pods: Type.Integer(), free: Type.Integer({ description: 'pods of the version that can take a call now' }),
  live_calls: Type.Integer(), allocations: Type.Integer({ description: 'allocations under rollouts, spills included' }),
  spills: Type.Integer({ description: 'calls this version served because the drawn version had no free pod in the tier' }),
  connect_timeouts: Type.Integer({ description: 'calls allocated under a rollout released because their media never connected' }),
  connected: Type.Integer({ description: 'calls allocated under a rollout whose media reached their agent' }),
  releases: Type.Record(Type.String(), Type.Integer(), { description: 'releases of calls allocated under a rollout, by reason' }),
});
const RolloutView = open({
  revision: nullable(Type.Integer({ description: 'the live revision; null = no rollout (allocation ignores versions)' })),
  previous: nullable(Type.Integer()), at: nullable(Type.Number({ description: 'ms since the Unix epoch' })),
  targets: Type.Array(RolloutTargetSchema), assignment: nullable(RolloutAssignmentSchema), guardrail: nullable(RolloutGuardrailSchema),
  versions: Type.Record(Type.String(), VersionFigures, { description: 'every target version and every version a known pod carries' }),
  guardrail_state: open({
    state: Type.Union([Type.Literal('off'), Type.Literal('held'), Type.Literal('watching'), Type.Literal('tripped')], { description: "off = no guardrail; held = the live revision is the guardrail's rollback (it judges again once an operator sets a new split); tripped = the reconciler rolls back within seconds" }),
    revision: nullable(Type.Integer()), stable: nullable(Type.String()), stable_failure_rate: nullable(Type.Number()), failing: nullable(Type.String()),
    canaries: Type.Array(open({ version: Type.String(), known: Type.Integer({ description: 'calls of the live revision with a known outcome' }), failure_rate: nullable(Type.Number()), excess_pp: nullable(Type.Number()) })),
  }),
});
const Violation = open({ rule: Type.String(), pod: Type.Optional(Type.String()), call_sid: Type.Optional(Type.String()), detail: Type.String() });

const LoggedEvent = open({ id: Type.String({ description: 'stream entry id' }), stream: Type.String({ description: 'calls, pods or fleet' }), type: Type.String(), at: Type.Number({ description: 'ms since the Unix epoch' }) });
const PodRow = open({
  pod_name: Type.String(), tier: nullable(Type.String()), uid: nullable(Type.String()), ready: Type.Boolean(), terminating: Type.Boolean(),
  draining: Type.Boolean({ description: "held out of its pool: an operator's drain or a scale-down draining it for removal" }),
  pending_removal: Type.Boolean({ description: 'drained for removal by a fleet scale-down (SPEC 9.1)' }),
  liveness: LivenessState,
  status: Type.String(), active_calls: Type.Integer(), updated_at: nullable(Type.Number({ description: 'ms since the Unix epoch' })),
});

const unauthorized = errorResponse('missing or invalid bearer token', 'UNAUTHORIZED');
const forbidden = errorResponse('this action needs an operator token', 'FORBIDDEN');
const unavailable = errorResponse('Redis unavailable: retry', 'REDIS_UNAVAILABLE');
const viewerErrors = { 401: unauthorized, 503: unavailable };
const operatorErrors = { 401: unauthorized, 403: forbidden, 503: unavailable };
const merchantParams = Type.Object({ merchant_id: MerchantId });
const invalidMerchantId = errorResponse('invalid merchant id', 'INVALID_MERCHANT_ID');
const drainErrors = { 400: errorResponse('invalid body', 'INVALID_BODY', 'POD_NAME_REQUIRED', 'INVALID_POD_NAME'), 404: errorResponse('unknown pod', 'POD_NOT_FOUND'), ...operatorErrors };

/** SPEC section 3, Admin: GET needs a viewer token, changes an operator token (when tokens are configured). */
export const adminRoutes = {
  status: {
    method: 'GET', path: '/api/v1/status', summary: 'Pools per tier (assigned, available, load), draining pods, active calls, waiting requests, subsystem health', security: 'viewer',
    responses: { 200: { description: 'the live state', schema: StatusResponse }, ...viewerErrors },
  },
  drain: {
    method: 'POST', path: '/api/v1/drain', summary: 'Drain a pod: no new calls; active calls finish', security: 'operator', body: DrainRequest,
    responses: { 200: { description: 'drained', schema: DrainResponse }, ...drainErrors },
  },
  undrain: {
    method: 'POST', path: '/api/v1/undrain', summary: 'Undrain a pod', security: 'operator', body: DrainRequest,
    responses: { 200: { description: 'undrained', schema: DrainResponse }, ...drainErrors },
  },
  pod: {
    method: 'GET', path: '/api/v1/pod/{name}', summary: 'One pod: tier, status, calls, lease, draining, pending_removal (drained for removal by a fleet scale-down)', security: 'viewer',
    params: Type.Object({ name: { ...PodName, 'x-errors': { invalid: { code: 'INVALID_POD_NAME', message: 'pod name must be a DNS-1123 label' } } } }),
    responses: { 200: { description: 'the pod', schema: PodResponse }, 400: errorResponse('invalid pod name', 'INVALID_POD_NAME'), 404: errorResponse('unknown pod', 'POD_NOT_FOUND'), ...viewerErrors },
  },
  calls: {
    method: 'GET', path: '/api/v1/admin/calls', summary: 'Live calls, oldest first', security: 'viewer',
    query: Type.Object({ limit: Type.Optional(field(Type.String({ pattern: '^[0-9]+$', description: 'integer 1-10000, default 1000' }), { invalid: { code: 'INVALID_LIMIT', message: 'limit must be an integer 1-10000' } })) }),
    responses: { 200: { description: 'live calls', schema: open({ count: Type.Integer(), calls: Type.Array(CallResponse) }) }, 400: errorResponse('bad limit', 'INVALID_LIMIT'), ...viewerErrors },
  },
  call: {
    method: 'GET', path: '/api/v1/admin/calls/{call_sid}', summary: 'One live call: pod, tier, allocation_id, state (pending or connected), connected_at, connect_deadline', security: 'viewer',
    params: Type.Object({ call_sid: callIdField() }),
    responses: { 200: { description: 'the call', schema: CallResponse }, 400: errorResponse('invalid call_sid', 'INVALID_CALL_SID'), 404: errorResponse('no such call', 'CALL_NOT_FOUND'), ...viewerErrors },
  },
  merchants: {
    method: 'GET', path: '/api/v1/admin/merchants', summary: 'Every merchant config', security: 'viewer',
    responses: { 200: { description: 'merchant id -> config', schema: open({ merchants: Type.Record(Type.String(), Type.Unknown()) }) }, ...viewerErrors },
  },
  merchant: {
    method: 'GET', path: '/api/v1/admin/merchants/{merchant_id}', summary: 'A merchant config', security: 'viewer', params: merchantParams,
    responses: { 200: { description: 'the config', schema: open({ merchant_id: Type.String(), config: MerchantConfig }) }, 400: invalidMerchantId, 404: errorResponse('no config', 'MERCHANT_NOT_FOUND'), ...viewerErrors },
  },
  putMerchant: {
    method: 'PUT', path: '/api/v1/admin/merchants/{merchant_id}', summary: 'Set a merchant config {tier, pool?, fallback?, max_calls?, max_waiting?}', security: 'operator', params: merchantParams,
    body: Type.Unknown({ description: '{"tier": "gold", "pool"?: "merchant_acme", "fallback"?: ["standard"], "max_calls"?: 10, "max_waiting"?: 50}: validated against the live tiers' }),
    responses: {
      200: { description: 'saved', schema: open({ success: Type.Literal(true), merchant_id: Type.String(), config: MerchantConfig }) },
      400: errorResponse('invalid merchant id or config', 'INVALID_MERCHANT_ID', 'INVALID_MERCHANT_CONFIG', 'INVALID_BODY'),
      ...operatorErrors,
    },
  },
  deleteMerchant: {
    method: 'DELETE', path: '/api/v1/admin/merchants/{merchant_id}', summary: 'Remove a merchant config', security: 'operator', params: merchantParams,
    responses: { 200: { description: 'removed', schema: open({ success: Type.Literal(true), merchant_id: Type.String() }) }, 400: invalidMerchantId, 404: errorResponse('no config', 'MERCHANT_NOT_FOUND'), ...operatorErrors },
  },
  tiers: {
    method: 'GET', path: '/api/v1/admin/tiers', summary: 'The live TIER_CONFIG document', security: 'viewer',
    responses: { 200: { description: 'tiers', schema: TiersResponse }, ...viewerErrors },
  },
  putTiers: {
    method: 'PUT', path: '/api/v1/admin/tiers', summary: 'Replace TIER_CONFIG at run time; idle pods move now, busy pods when free', security: 'operator',
    body: Type.Unknown({ description: '{"tiers": {TIER_CONFIG}, "extra_pods_tier"?: "standard"} or the TIER_CONFIG object itself' }),
    responses: {
      200: { description: 'applied', schema: open({ success: Type.Literal(true), tiers: Type.Record(Type.String(), TierSpec), extra_pods_tier: Type.String(), pods_moved: Type.Integer() }) },
      400: errorResponse('invalid tier config', 'INVALID_TIER_CONFIG', 'INVALID_BODY'),
      ...operatorErrors,
    },
  },
  reconcile: {
    method: 'POST', path: '/api/v1/admin/reconcile', summary: 'Enqueue a full reconcile job now', security: 'operator',
    responses: { 202: { description: 'enqueued', schema: open({ success: Type.Literal(true), job_id: Type.String(), job: Type.String() }) }, ...operatorErrors },
  },
  // Fleet and autoscaler (SPEC 9.1; apps/admin/src/fleet.controller.ts validates these bodies itself).
  fleet: {
    method: 'GET', path: '/api/v1/admin/fleet', summary: 'The voice-agent fleet: replicas, target, pods pending removal', security: 'viewer',
    responses: { 200: { description: 'the fleet', schema: FleetView }, ...viewerErrors },
  },
  scaleFleet: {
    method: 'POST', path: '/api/v1/admin/fleet/scale', security: 'operator',
    summary: 'Set the fleet size {replicas}: pods above it are drained for removal and removed once they hold no call; a larger target cancels the removal of the pods it keeps',
    body: Type.Object({ replicas: Type.Integer({ minimum: 0, maximum: 1000 }) }),
    responses: {
      202: { description: 'planned', schema: open({ replicas: Type.Integer(), target: Type.Integer(), pending_removal: Type.Array(Type.String()), previous_target: Type.Integer(), cancelled: Type.Integer({ description: 'pods whose pending removal this target cancelled' }) }) },
      400: errorResponse('invalid replicas', 'INVALID_REPLICAS', 'INVALID_BODY'),
      ...operatorErrors,
      503: errorResponse('Redis unavailable, or the fleet size not known yet (the reconciler has not read the StatefulSet)', 'REDIS_UNAVAILABLE', 'NOT_REPLICATED', 'FLEET_UNKNOWN'),
    },
  },
  autoscaler: {
    method: 'GET', path: '/api/v1/admin/autoscaler', summary: 'Autoscaler settings and state (desired replicas, free pods, waiting calls, last decision)', security: 'viewer',
    responses: { 200: { description: 'settings and state', schema: AutoscalerView }, ...viewerErrors },
  },
  putAutoscaler: {
    method: 'PUT', path: '/api/v1/admin/autoscaler', summary: 'Change autoscaler settings (any subset of the fields)', security: 'operator',
    body: Type.Object({
      enabled: Type.Optional(Type.Boolean()), min_replicas: Type.Optional(Type.Integer({ minimum: 0 })), max_replicas: Type.Optional(Type.Integer({ minimum: 0 })),
      buffer: Type.Optional(Type.Integer({ minimum: 0 })), scale_down_delay_seconds: Type.Optional(Type.Integer({ minimum: 0 })),
    }, { additionalProperties: false }),
    responses: {
      200: { description: 'saved: the GET document', schema: AutoscalerView },
      400: errorResponse('invalid settings', 'INVALID_AUTOSCALER_CONFIG', 'INVALID_REPLICA_RANGE', 'INVALID_BODY'),
      ...operatorErrors,
      503: errorResponse('Redis unavailable, or the settings kept changing under concurrent updates: retry', 'REDIS_UNAVAILABLE', 'NOT_REPLICATED', 'CONFIG_CHANGING'),
    },
  },
  // Versioned agent fleets (SPEC 12; apps/admin/src/rollout.controller.ts validates the body itself, libs/allocation parseRollout).
  rollout: {
    method: 'GET', path: '/api/v1/admin/rollout', summary: 'The split between agent versions (live revision) and per-version pods, free pods, live calls, allocations, spills, connect timeouts, releases by reason', security: 'viewer',
    responses: { 200: { description: 'the rollout', schema: RolloutView }, ...viewerErrors },
  },
  putRollout: {
    method: 'PUT', path: '/api/v1/admin/rollout', security: 'operator',
    summary: 'Set the split as a new immutable revision (percents are integers summing to 100, 1 to 5 versions, 0 allowed); moves no replicas; allocations use it from the next one',
    body: Type.Object({ targets: Type.Array(RolloutTargetSchema, { minItems: 1, maxItems: 5 }), assignment: Type.Optional(RolloutAssignmentSchema), guardrail: Type.Optional(nullable(RolloutGuardrailSchema)) }, { additionalProperties: false }),
    responses: {
      200: { description: 'stored: the GET document of the new revision', schema: RolloutView },
      400: errorResponse('invalid rollout', 'INVALID_BODY', 'INVALID_TARGETS', 'INVALID_VERSION', 'DUPLICATE_VERSION', 'INVALID_PERCENT', 'PERCENT_SUM', 'INVALID_ASSIGNMENT', 'INVALID_GUARDRAIL'),
      ...operatorErrors,
    },
  },
  promoteRollout: {
    method: 'POST', path: '/api/v1/admin/rollout/promote', security: 'operator',
    summary: 'Send 100 % of new calls to {version} from the next allocation (a new revision, event rollout.promoted; the other targets stay at 0 %); then the reconciler scales its StatefulSet up to cover and the others to 0 call-safely (drain, wait for their calls, then lower replicas)',
    body: Type.Object({ version: Type.String({ maxLength: 63 }) }, { additionalProperties: false }),
    responses: {
      200: { description: 'stored: the GET document of the new revision', schema: RolloutView },
      400: errorResponse('invalid body', 'INVALID_BODY', 'INVALID_VERSION'),
      409: errorResponse('no pod carries the version and no StatefulSet of it is known (nothing changed)', 'UNKNOWN_VERSION'),
      ...operatorErrors,
      503: errorResponse('Redis unavailable, or the rollout kept changing under concurrent updates: retry', 'REDIS_UNAVAILABLE', 'NOT_REPLICATED', 'CONFIG_CHANGING'),
    },
  },
  rollbackRollout: {
    method: 'POST', path: '/api/v1/admin/rollout/rollback', security: 'operator',
    summary: "Return to the previous revision's split from the next allocation (a new revision, event rollout.rolled_back); when that split sends 100 % to one version, replicas move to it call-safely as on promote",
    responses: {
      200: { description: 'stored: the GET document of the new revision', schema: RolloutView },
      409: errorResponse('the live rollout has no previous revision', 'NO_PREVIOUS_REVISION'),
      ...operatorErrors,
    },
  },
  // The SREs' read side (SPEC 9.4; apps/admin/src/event-log.controller.ts validates its query itself).
  events: {
    method: 'GET', path: '/api/v1/admin/events', summary: 'Event log over the streams (calls, pods, fleet), newest first, bounded', security: 'viewer',
    query: Type.Object({
      call_sid: Type.Optional(Type.String({ maxLength: 128 })),
      pod: Type.Optional(Type.String({ maxLength: 63 })),
      type: Type.Optional(Type.String({ maxLength: 64, description: 'an event type with or without its family prefix: call.released or released, pod.drained or drained' })),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    }),
    responses: {
      200: { description: 'events', schema: open({ events: Type.Array(LoggedEvent) }) },
      400: errorResponse('invalid filter or limit', 'INVALID_QUERY', 'INVALID_CALL_SID', 'INVALID_POD_NAME', 'INVALID_EVENT_TYPE', 'INVALID_LIMIT'),
      ...viewerErrors,
    },
  },
  eventStream: {
    method: 'GET', path: '/api/v1/admin/events/stream', summary: 'Live events as server-sent events (one `data:` JSON event per stream entry; its `id:` is the position in every stream, comma-joined); resume with the Last-Event-ID header. A Last-Event-ID more than EVENT_STREAM_REPLAY_MAX entries behind first gets an `event: resync` (data `{"type":"resync","reason":"replay_limit","replay_max","requested","resumed_from"}`) and resumes that many entries back; a client that does not read is dropped', security: 'viewer',
    responses: {
      200: { description: 'text/event-stream', contentType: 'text/event-stream', example: 'id: 1764540000000-0,1764539990000-1,0-0\ndata: {"type":"call.allocated","call_sid":"CA1"}\n\n' },
      400: errorResponse('malformed Last-Event-ID', 'INVALID_LAST_EVENT_ID'),
      ...viewerErrors,
      503: errorResponse('Redis unavailable, or too many live feeds on this admin replica', 'REDIS_UNAVAILABLE', 'TOO_MANY_STREAMS'),
    },
  },
  pods: {
    method: 'GET', path: '/api/v1/admin/pods', summary: 'Every pod (the dashboard table): tier, UID, ready, terminating, draining, live calls, last change', security: 'viewer',
    responses: { 200: { description: 'pods', schema: open({ total: Type.Integer(), pods: Type.Array(PodRow) }) }, ...viewerErrors },
  },
  session: {
    method: 'GET', path: '/api/v1/admin/session', summary: 'The role of the presented token, so the dashboard shows or hides its drain buttons',
    responses: { 200: { description: 'role (operator when no tokens are configured)', schema: open({ role: Type.Union([Type.Literal('viewer'), Type.Literal('operator')]), tokens_required: Type.Boolean() }) }, 401: unauthorized },
  },
  dashboard: {
    method: 'GET', path: '/dashboard', summary: 'Redirects to /dashboard/',
    responses: { 308: { description: 'to /dashboard/' } },
  },
  dashboardAsset: {
    method: 'GET', path: '/dashboard/{asset}', summary: 'The SRE dashboard (index.html at /dashboard/) and its static assets; the page calls this API with the token the user enters',
    responses: { 200: { description: 'HTML, CSS or JavaScript', contentType: 'text/html' }, 404: errorResponse('no such asset', 'NOT_FOUND') },
  },
  invariants: {
    method: 'GET', path: '/api/v1/admin/invariants', summary: 'Check the SPEC section 7 invariants', security: 'viewer',
    responses: { 200: { description: '{ok, violations}', schema: open({ ok: Type.Boolean(), violations: Type.Array(Violation) }) }, ...viewerErrors },
  },
} satisfies Record<string, RouteContract>;
