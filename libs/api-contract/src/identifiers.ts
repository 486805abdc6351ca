import { Type } from '@sinclair/typebox';
import { field } from './route-contract';

// The identifier rules of SPEC section 3 as JSON schema (the RegExp twins are in
// @smart-router/allocation, used where no schema runs, e.g. inside provider payloads).
const ID_CHARS = '^[A-Za-z0-9._:-]*$';

/** A required call id; `name` is the field as the caller sends it. */
export function callIdField(name = 'call_sid') {
  return field(Type.String({ minLength: 1, maxLength: 128, pattern: ID_CHARS, description: '1-128 characters of A-Za-z0-9._:-' }), {
    missing: { code: 'CALL_SID_REQUIRED', message: `${name} is required` },
    invalid: { code: 'INVALID_CALL_SID', message: `${name} must be 1-128 characters of A-Za-z0-9._:-` },
  });
}

const merchantInvalid = { code: 'INVALID_MERCHANT_ID', message: 'merchant_id must be 1-128 characters of A-Za-z0-9._:-' };

/** merchant_id where absent, null or empty means "no merchant". */
export const OptionalMerchantId = field(Type.Union([Type.String({ maxLength: 128, pattern: ID_CHARS }), Type.Null()], { description: 'merchant id; empty or absent = no merchant config' }), { invalid: merchantInvalid });

/** merchant_id where it must be present (admin paths). */
export const MerchantId = field(Type.String({ minLength: 1, maxLength: 128, pattern: ID_CHARS }), { invalid: merchantInvalid });

/** Optional short text recorded as given (null = absent). */
export function optionalText(name: string, max: number, description: string) {
  return field(Type.Union([Type.String({ maxLength: max }), Type.Null()], { description }), {
    invalid: { code: 'INVALID_FIELD', message: `${name} must be a string of at most ${max} characters` },
  });
}
