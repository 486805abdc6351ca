import { Controller, Get } from '@nestjs/common';

const errorSchema = {
  type: 'object',
  required: ['error', 'code'],
  properties: { error: { type: 'string' }, code: { type: 'string', pattern: '^[A-Z_]+$' } },
};
const id = { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' };
const errors = (codes: number[]) =>
  Object.fromEntries(codes.map((code) => [String(code), { description: String(code), content: { 'application/json': { schema: errorSchema } } }]));
const merchantQuery = { name: 'merchant_id', in: 'query', required: false, schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{0,128}$' } };
const form = (required: string, extra: Record<string, unknown> = {}) => ({
  'application/x-www-form-urlencoded': { schema: { type: 'object', required: [required], properties: { [required]: id, ...extra } } },
});
const xml = (example: string) => ({ 'text/xml': { schema: { type: 'string' }, example } });

interface ProviderSpec {
  security: string;
  answerBody: Record<string, unknown>;
  answer: Record<string, unknown>;
  answerErrors: number[];
  statusBody: Record<string, unknown>;
  /** Media-stream status callbacks (SPEC 9.2); Exotel has none. */
  streamStatusBody?: Record<string, unknown>;
}

const PROVIDERS: Record<string, ProviderSpec> = {
  twilio: {
    security: 'twilioSignature',
    answerBody: form('CallSid'),
    answer: {
      '200': {
        description: 'TwiML: Connect/Stream to the pod; on failure (no pod, Redis down, call already ended) Say + Hangup, still 200',
        content: xml('<Response><Connect><Stream url="wss://host/ws/pod/voice-agent-1/CA123" statusCallback="https://host/api/v1/twilio/stream-status?allocation_id=42" statusCallbackMethod="POST"></Stream></Connect></Response>'),
      },
    },
    answerErrors: [400, 403, 413, 415],
    statusBody: form('CallSid', { CallStatus: { type: 'string', description: 'completed, busy, failed, no-answer, canceled release the call' } }),
    streamStatusBody: form('CallSid', {
      StreamEvent: { type: 'string', description: 'stream-started connects the call; stream-stopped, stream-error release it' },
      StreamSid: { type: 'string' }, StreamName: { type: 'string' }, StreamError: { type: 'string' }, AccountSid: { type: 'string' }, Timestamp: { type: 'string' },
    }),
  },
  plivo: {
    security: 'plivoSignature',
    answerBody: form('CallUUID'),
    answer: {
      '200': {
        description: 'Plivo XML: bidirectional Stream to the pod; on failure Speak + Hangup, still 200',
        content: xml('<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" statusCallbackUrl="https://host/api/v1/plivo/stream-status?allocation_id=42" statusCallbackMethod="POST">wss://host/ws/pod/voice-agent-1/UUID</Stream></Response>'),
      },
    },
    answerErrors: [400, 403, 413, 415],
    statusBody: form('CallUUID', { CallStatus: { type: 'string', description: 'completed, hangup, busy, failed, timeout, no-answer, cancel release the call' } }),
    streamStatusBody: form('CallUUID', {
      Event: { type: 'string', description: 'StartStream or started connects the call; StopStream/stopped, DroppedStream/failed release it; others change nothing' },
      StreamID: { type: 'string' }, Timestamp: { type: 'string' },
    }),
  },
  exotel: {
    security: 'exotelBasic',
    answerBody: {
      'application/json': { schema: { type: 'object', required: ['CallSid'], properties: { CallSid: id, merchant_id: merchantQuery.schema } } },
      ...form('CallSid', { merchant_id: merchantQuery.schema }),
    },
    answer: {
      '200': {
        description: 'the pod WebSocket URL',
        content: { 'application/json': { schema: { type: 'object', properties: { url: { type: 'string' } } } } },
      },
    },
    // Exotel's failure answer is the JSON error itself: 503 (no pod, Redis down), 409 (call already ended).
    answerErrors: [400, 401, 409, 413, 415, 500, 503],
    statusBody: {
      'application/json': { schema: { type: 'object', required: ['CallSid'], properties: { CallSid: id, Status: { type: 'string' } } } },
      ...form('CallSid', { Status: { type: 'string', description: 'completed, failed, busy, no-answer release the call' } }),
    },
  },
};

const statusAnswer = {
  description: 'handled (also for a non-final status and an unknown or already released call)',
  content: {
    'application/json': {
      schema: {
        type: 'object',
        properties: { success: { type: 'boolean' }, call_sid: { type: 'string' }, status: { type: 'string' }, released: { type: 'boolean' }, pod_name: { type: 'string' } },
      },
    },
  },
};

function providerPaths(name: string, spec: ProviderSpec): Record<string, unknown> {
  const answer = {
    post: {
      summary: `${name} answer webhook: allocate a pod for the call (idempotent per call id; refused after the call ended)`,
      security: [{ [spec.security]: [] }],
      parameters: [merchantQuery],
      requestBody: { required: true, content: spec.answerBody },
      responses: { ...spec.answer, ...errors(spec.answerErrors) },
    },
  };
  const withTemplate = { post: { ...answer.post, parameters: [merchantQuery, { name: 'template', in: 'path', required: true, schema: { type: 'string' } }] } };
  const status = (summary: string) => ({
    post: {
      summary,
      security: [{ [spec.security]: [] }],
      requestBody: { required: true, content: spec.statusBody },
      responses: { '200': statusAnswer, ...errors([400, name === 'exotel' ? 401 : 403, 413, 415, 503]) },
    },
  });
  return {
    [`/api/v1/${name}/allocate`]: answer,
    [`/api/v1/${name}/answer`]: answer,
    [`/api/v1/${name}/answer/{template}`]: withTemplate,
    [`/agent/voice/breeze-buddy/${name}/callback/{template}`]: withTemplate,
    [`/api/v1/${name}/status`]: status(`${name} status callback: a final status releases the call`),
    ...(name === 'plivo' ? { '/api/v1/plivo/hangup': status('Plivo hangup URL: every post releases the call') } : {}),
    ...(spec.streamStatusBody ? {
      [`/api/v1/${name}/stream-status`]: {
        post: {
          summary: `${name} media-stream status callback (asked for by the answer document): started connects, stopped/failed releases the call`,
          security: [{ [spec.security]: [] }],
          parameters: [{ name: 'allocation_id', in: 'query', required: false, schema: { type: 'integer', minimum: 1 } }],
          requestBody: { required: true, content: spec.streamStatusBody },
          responses: {
            '200': {
              description: 'handled (also an unknown event, an unknown or already released call, a duplicate)',
              content: { 'application/json': { schema: { type: 'object', properties: { success: { type: 'boolean' }, call_sid: { type: 'string' }, event: { type: 'string' }, connected: { type: 'boolean' }, released: { type: 'boolean' }, pod_name: { type: 'string' } } } } },
            },
            ...errors([400, 403, 409, 413, 415, 503]),
          },
        },
      },
    } : {}),
  };
}

/** The webhooks' contract (SPEC section 5), served at /openapi.json. */
export const WEBHOOKS_OPENAPI = {
  openapi: '3.0.3',
  info: { title: 'Smart Router provider webhooks', version: '1.0.0' },
  components: {
    securitySchemes: {
      twilioSignature: { type: 'apiKey', in: 'header', name: 'X-Twilio-Signature', description: 'required when TWILIO_AUTH_TOKENS is set' },
      plivoSignature: { type: 'apiKey', in: 'header', name: 'X-Plivo-Signature-V3', description: 'with X-Plivo-Signature-V3-Nonce; required when PLIVO_AUTH_TOKENS is set' },
      exotelBasic: { type: 'http', scheme: 'basic', description: 'required when EXOTEL_CREDENTIALS is set' },
    },
  },
  paths: {
    ...Object.assign({}, ...Object.entries(PROVIDERS).map(([name, spec]) => providerPaths(name, spec))),
    '/health': { get: { summary: 'Liveness', security: [], responses: { '200': { description: 'alive' } } } },
    '/ready': { get: { summary: 'Readiness (Redis script round trip)', security: [], responses: { '200': { description: 'ready' }, '503': { description: 'not ready' } } } },
    '/metrics': { get: { summary: 'Prometheus metrics', security: [], responses: { '200': { description: 'text exposition' } } } },
  } as Record<string, unknown>,
};

@Controller()
export class OpenApiController {
  @Get('openapi.json')
  document() {
    return WEBHOOKS_OPENAPI;
  }
}
