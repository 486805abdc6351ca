import { isCallSid, isMerchantId } from '@smart-router/allocation';
import { ApiError } from './api-error';

// The 400s for identifiers, one wording and one code for every entry point
// (JSON API, provider webhooks, admin paths); the rules live in @smart-router/allocation.

/** A call id field every entry point requires (`field` names it as the caller sent it). */
export function requireCallId(value: unknown, field = 'call_sid'): string {
  if (value === undefined || value === null || value === '') throw ApiError.badRequest(`${field} is required`, 'CALL_SID_REQUIRED');
  if (!isCallSid(value)) throw ApiError.badRequest(`${field} must be 1-128 characters of A-Za-z0-9._:-`, 'INVALID_CALL_SID');
  return value;
}

/** A merchant id that must be present (admin paths). */
export function requireMerchantId(value: unknown): string {
  if (!isMerchantId(value)) throw ApiError.badRequest('merchant_id must be 1-128 characters of A-Za-z0-9._:-', 'INVALID_MERCHANT_ID');
  return value;
}

/** merchant_id as every entry point validates it; absent or empty means "no merchant". */
export function optionalMerchantId(value: unknown): string {
  if (value === undefined || value === null || value === '') return '';
  return requireMerchantId(value);
}
