import Ajv from 'ajv';
import { AllocateRequest, DrainRequest } from '@smart-router/api-contract';
import { schemaErrorAnswer } from './schema-errors';

// Ajv configured as startHttpApp configures Fastify's: the first error only, no coercion.
const ajv = new Ajv({ coerceTypes: false, allErrors: false, keywords: ['x-errors'] });

function answer(schema: object, body: unknown) {
  const validate = ajv.compile(JSON.parse(JSON.stringify(schema)));
  expect(validate(body)).toBe(false);
  return schemaErrorAnswer(validate.errors as never, 'body', JSON.parse(JSON.stringify(schema)), body);
}

describe('schema validation errors keep the hand-written parsers\' codes and messages', () => {
  it.each([
    [{}, 'CALL_SID_REQUIRED', 'call_sid is required'],
    [{ call_sid: '' }, 'CALL_SID_REQUIRED', 'call_sid is required'],
    [{ call_sid: null }, 'CALL_SID_REQUIRED', 'call_sid is required'],
    [{ call_sid: 42 }, 'INVALID_CALL_SID', 'call_sid must be 1-128 characters of A-Za-z0-9._:-'],
    [{ call_sid: 'has space' }, 'INVALID_CALL_SID', 'call_sid must be 1-128 characters of A-Za-z0-9._:-'],
    [{ call_sid: 'x'.repeat(129) }, 'INVALID_CALL_SID', 'call_sid must be 1-128 characters of A-Za-z0-9._:-'],
    [{ call_sid: 'ok', merchant_id: 'bad/merchant' }, 'INVALID_MERCHANT_ID', 'merchant_id must be 1-128 characters of A-Za-z0-9._:-'],
    [{ call_sid: 'ok', provider: 'p'.repeat(65) }, 'INVALID_FIELD', 'provider must be a string of at most 64 characters'],
    [{ call_sid: 'ok', wait_ms: 10001 }, 'INVALID_FIELD', 'wait_ms must be an integer from 0 to 10000'],
    [[1, 2], 'INVALID_BODY', 'invalid request body'],
  ])('allocate %j -> 400 %s', (body, code, message) => {
    expect(answer(AllocateRequest, body)).toEqual({ status: 400, code, message });
  });

  it('drain: pod_name missing or malformed', () => {
    expect(answer(DrainRequest, {})).toEqual({ status: 400, code: 'POD_NAME_REQUIRED', message: 'pod_name is required' });
    expect(answer(DrainRequest, { pod_name: 'Not_A_Label' })).toEqual({ status: 400, code: 'INVALID_POD_NAME', message: 'pod_name must be a DNS-1123 label' });
  });
});
