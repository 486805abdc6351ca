import { Controller, Get } from '@nestjs/common';

const errorSchema = {
  type: 'object',
  required: ['error', 'code'],
  properties: { error: { type: 'string' }, code: { type: 'string', pattern: '^[A-Z_]+$' } },
};
const callSid = { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' };
const allocationId = { type: 'integer', minimum: 1, description: 'act only on this allocation of the call_sid; another one gets 409 STALE_ALLOCATION' };
const errors = (codes: number[]) =>
  Object.fromEntries(codes.map((code) => [String(code), { description: String(code), content: { 'application/json': { schema: errorSchema } } }]));

/** The allocation API's contract (SPEC section 3), served at /openapi.json. */
export const ALLOCATION_OPENAPI = {
  openapi: '3.0.3',
  info: { title: 'Smart Router allocation API', version: '1.0.0' },
  components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
  security: [{ bearer: [] }],
  paths: {
    '/api/v1/allocate': {
      post: {
        summary: 'Allocate a pod for a call (idempotent per call_sid)',
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['call_sid'],
                properties: {
                  call_sid: callSid,
                  merchant_id: { type: 'string', pattern: '^[A-Za-z0-9._:-]{0,128}$' },
                  reseller_id: { type: 'string', description: 'alias of merchant_id' },
                  provider: { type: 'string', maxLength: 64 },
                  metadata: { description: 'any JSON, recorded on the call (max 4 KiB)' },
                  wait_ms: { type: 'integer', minimum: 0, maximum: 10000, default: 0, description: 'wait this long for a pod when none is free (0 = 503 at once)' },
                },
              },
            },
          },
        },
        responses: {
          '200': {
            description: 'allocated (or the existing allocation)',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    success: { type: 'boolean' }, pod_name: { type: 'string' }, ws_url: { type: 'string' },
                    source_pool: { type: 'string', example: 'pool:standard' }, was_existing: { type: 'boolean' },
                    allocation_id: { type: 'integer', nullable: true, description: 'fencing token, strictly increasing; the same for a repeated allocate' },
                    state: { type: 'string', enum: ['pending', 'connected'], nullable: true },
                  },
                },
              },
            },
          },
          ...errors([400, 401, 413, 429, 500, 503]),
        },
      },
    },
    '/api/v1/release': {
      post: {
        summary: 'Release a call (404 when unknown or already released: treat as success)',
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { type: 'object', required: ['call_sid'], properties: { call_sid: callSid, reason: { type: 'string', maxLength: 256 }, allocation_id: allocationId } } } },
        },
        responses: {
          '200': {
            description: 'released',
            content: {
              'application/json': {
                schema: { type: 'object', properties: { success: { type: 'boolean' }, pod_name: { type: 'string' }, released_to_pool: { type: 'string' }, was_draining: { type: 'boolean' } } },
              },
            },
          },
          ...errors([400, 401, 404, 409, 413, 503]),
        },
      },
    },
    '/api/v1/connected': {
      post: {
        summary: 'The call\'s media stream reached its voice agent: pending -> connected (kept past CONNECT_TIMEOUT_SECONDS); idempotent',
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { type: 'object', required: ['call_sid'], properties: { call_sid: callSid, allocation_id: allocationId } } } },
        },
        responses: {
          '200': {
            description: 'connected (or already connected)',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    success: { type: 'boolean' }, call_sid: { type: 'string' }, pod_name: { type: 'string' },
                    allocation_id: { type: 'integer', nullable: true }, state: { type: 'string', enum: ['connected'] },
                    connected_at: { type: 'integer', description: 'ms since the Unix epoch' }, was_connected: { type: 'boolean' },
                  },
                },
              },
            },
          },
          ...errors([400, 401, 404, 409, 413, 503]),
        },
      },
    },
    '/health': { get: { summary: 'Liveness', security: [], responses: { '200': { description: 'alive' } } } },
    '/ready': { get: { summary: 'Readiness (Redis script round trip)', security: [], responses: { '200': { description: 'ready' }, '503': { description: 'not ready' } } } },
    '/metrics': { get: { summary: 'Prometheus metrics', security: [], responses: { '200': { description: 'text exposition' } } } },
  },
};

@Controller()
export class OpenApiController {
  @Get('openapi.json')
  document() {
    return ALLOCATION_OPENAPI;
  }
}
