import { Controller, Get } from '@nestjs/common';
import { CALL_SID_PATTERN, MERCHANT_ID_PATTERN, POD_NAME_PATTERN } from '@smart-router/allocation';

const json = (description: string) => ({ description, content: { 'application/json': { schema: { type: 'object' } } } });
const errors = { '401': json('missing or invalid token'), '403': json('operator token needed'), '503': json('Redis unavailable') };
const get = (summary: string, extra: Record<string, unknown> = {}) => ({ get: { summary, responses: { '200': json('ok'), ...extra, ...errors } } });
/** A path parameter as the route validates it (a longer or malformed one is a 400 INVALID_*). */
const pathParameter = (name: string, pattern: RegExp, maxLength: number) => ({
  name, in: 'path', required: true, schema: { type: 'string', minLength: 1, maxLength, pattern: pattern.source },
});
const podName = [pathParameter('name', POD_NAME_PATTERN, 63)];
const callSid = [pathParameter('call_sid', CALL_SID_PATTERN, 128)];
const merchantId = [pathParameter('merchant_id', MERCHANT_ID_PATTERN, 128)];
const podBody = { required: true, content: { 'application/json': { schema: { type: 'object', required: ['pod_name'], properties: { pod_name: { type: 'string' } } } } } };

/** The admin API's contract (SPEC section 3, Admin), served at /openapi.json. */
export const ADMIN_OPENAPI = {
  openapi: '3.0.3',
  info: { title: 'Smart Router admin API', version: '1.0.0', description: 'GET needs a viewer or operator token; changes need an operator token (when tokens are configured).' },
  components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
  security: [{ bearer: [] }],
  paths: {
    '/api/v1/status': get('Pools per tier (assigned, available, load), draining pods, active calls, waiting requests, subsystem health'),
    '/api/v1/drain': { post: { summary: 'Drain a pod: no new calls; active calls finish', requestBody: podBody, responses: { '200': json('drained'), '404': json('unknown pod'), ...errors } } },
    '/api/v1/undrain': { post: { summary: 'Undrain a pod', requestBody: podBody, responses: { '200': json('undrained'), '404': json('unknown pod'), ...errors } } },
    '/api/v1/pod/{name}': { parameters: podName, ...get('One pod: tier, status, calls, lease, draining, pending_removal (drained for removal by a fleet scale-down)', { '400': json('INVALID_POD_NAME'), '404': json('unknown pod') }) },
    '/api/v1/admin/calls': get('Live calls (limit query, default 1000)'),
    '/api/v1/admin/calls/{call_sid}': { parameters: callSid, ...get('One live call: pod, tier, allocation_id, state (pending or connected), connected_at, connect_deadline', { '400': json('INVALID_CALL_SID'), '404': json('call not found') }) },
    '/api/v1/admin/merchants': get('Every merchant config'),
    '/api/v1/admin/merchants/{merchant_id}': {
      // A merchant_id that is not 1-128 characters of A-Za-z0-9._:- is a 400 INVALID_MERCHANT_ID on every method.
      parameters: merchantId,
      get: { summary: 'A merchant config', responses: { '200': json('ok'), '404': json('no config'), ...errors } },
      put: { summary: 'Set a merchant config {tier, pool?, fallback?, max_calls?}', responses: { '200': json('saved'), '400': json('invalid'), ...errors } },
      delete: { summary: 'Remove a merchant config', responses: { '200': json('removed'), '404': json('no config'), ...errors } },
    },
    '/api/v1/admin/tiers': {
      get: { summary: 'The live TIER_CONFIG document', responses: { '200': json('ok'), ...errors } },
      put: { summary: 'Replace TIER_CONFIG at run time; idle pods move now, busy pods when free', responses: { '200': json('applied'), '400': json('invalid'), ...errors } },
    },
    '/api/v1/admin/reconcile': { post: { summary: 'Enqueue a full reconcile job now', responses: { '202': json('enqueued'), ...errors } } },
    '/api/v1/admin/invariants': get('Check SPEC section 7 invariants: {ok, violations}'),
    '/api/v1/admin/events': {
      get: {
        summary: 'Event log over the streams, newest first: {events: [{id, type, at, ...fields}]}',
        parameters: [
          { name: 'call_sid', in: 'query', schema: { type: 'string' } },
          { name: 'pod', in: 'query', schema: { type: 'string' } },
          { name: 'type', in: 'query', description: 'e.g. call.released or released', schema: { type: 'string' } },
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
        ],
        responses: { '200': json('events'), '400': json('invalid filter or limit'), ...errors },
      },
    },
    '/api/v1/admin/events/stream': {
      get: {
        summary: 'Live events as server-sent events; resume with Last-Event-ID',
        parameters: [{ name: 'Last-Event-ID', in: 'header', schema: { type: 'string' } }],
        responses: { '200': { description: 'text/event-stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, '400': json('malformed Last-Event-ID'), ...errors },
      },
    },
    '/api/v1/admin/pods': get('Every pod: tier, UID, ready, terminating, draining, live calls, last change'),
    '/api/v1/admin/session': get('The role of the presented token: {role, tokens_required}'),
    // Fleet and autoscaler (SPEC 9.1; apps/admin/src/fleet.controller.ts).
    '/api/v1/admin/fleet': get('The voice-agent fleet: {replicas, target, pending_removal: every pod above the target not yet removed, busy or not}'),
    '/api/v1/admin/fleet/scale': {
      post: {
        summary: 'Set the fleet size {replicas}: pods above the new size are drained for removal and removed once they hold no call; more than a pending target cancels the removal of the pods it keeps',
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['replicas'], properties: { replicas: { type: 'integer', minimum: 0, maximum: 1000 } } } } } },
        responses: { '202': json('planned: {replicas, target, pending_removal, previous_target, cancelled}'), '400': json('INVALID_REPLICAS'), ...errors },
      },
    },
    '/api/v1/admin/autoscaler': {
      get: { summary: 'Autoscaler settings {enabled, min_replicas, max_replicas, buffer, scale_down_delay_seconds} and state {current_replicas, desired_replicas, free, waiting, last_decision: {at, from, to, reason}}', responses: { '200': json('ok'), ...errors } },
      put: {
        summary: 'Change autoscaler settings (any subset of the fields)',
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', additionalProperties: false, properties: { enabled: { type: 'boolean' }, min_replicas: { type: 'integer', minimum: 0 }, max_replicas: { type: 'integer', minimum: 0 }, buffer: { type: 'integer', minimum: 0 }, scale_down_delay_seconds: { type: 'integer', minimum: 0 } } } } } },
        responses: { '200': json('saved; the GET document'), '400': json('INVALID_AUTOSCALER_CONFIG or INVALID_REPLICA_RANGE'), ...errors },
      },
    },
  },
};

@Controller()
export class OpenApiController {
  @Get('openapi.json')
  document() {
    return ADMIN_OPENAPI;
  }
}
