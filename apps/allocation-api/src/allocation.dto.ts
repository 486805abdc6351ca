import { ApiError, optionalMerchantId, requireCallId } from '@smart-router/http';

export interface AllocateBody {
  callSid: string;
  merchantId: string;
  provider: string;
  metadata: string;
  /** SPEC 9.1: wait up to this long (ms) for a pod when none is free; 0 = answer 503 at once. */
  waitMs: number;
}

export const MAX_WAIT_MS = 10000;

export interface ReleaseBody {
  callSid: string;
  reason: string;
  /** Release only this allocation of the call_sid (SPEC 9.2 fencing); undefined = the current one. */
  allocationId?: number;
}

export interface ConnectedBody {
  callSid: string;
  allocationId?: number;
}

const MAX_METADATA_BYTES = 4096;

function asObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw ApiError.badRequest('invalid request body', 'INVALID_BODY');
  return body as Record<string, unknown>;
}

function shortText(body: Record<string, unknown>, field: string, max: number): string {
  const value = body[field];
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string' || value.length > max) throw ApiError.badRequest(`${field} must be a string of at most ${max} characters`, 'INVALID_FIELD');
  return value;
}

/**
 * Validates an allocate body. Unknown fields are ignored; `provider` and
 * `metadata` are recorded on the call; `reseller_id` is accepted as an alias
 * of `merchant_id` (the Python client sends it).
 */
export function parseAllocateBody(raw: unknown): AllocateBody {
  const body = asObject(raw);
  const callSid = requireCallId(body.call_sid);
  const merchant = optionalMerchantId(body.merchant_id ?? body.reseller_id);
  let metadata = '';
  if (body.metadata !== undefined && body.metadata !== null) {
    metadata = JSON.stringify(body.metadata);
    if (Buffer.byteLength(metadata) > MAX_METADATA_BYTES) throw ApiError.badRequest(`metadata must be at most ${MAX_METADATA_BYTES} bytes of JSON`, 'INVALID_FIELD');
  }
  return { callSid, merchantId: merchant, provider: shortText(body, 'provider', 64), metadata, waitMs: waitMs(body.wait_ms) };
}

function waitMs(value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_WAIT_MS) {
    throw ApiError.badRequest(`wait_ms must be an integer from 0 to ${MAX_WAIT_MS}`, 'INVALID_FIELD');
  }
  return value;
}

/** A positive integer (JSON number or its decimal string, as form-minded clients send it); absent = undefined. */
function optionalAllocationId(body: Record<string, unknown>): number | undefined {
  const value = body.allocation_id;
  if (value === undefined || value === null) return undefined;
  const id = typeof value === 'string' && /^[0-9]{1,15}$/.test(value) ? Number(value) : value;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) throw ApiError.badRequest('allocation_id must be a positive integer', 'INVALID_FIELD');
  return id;
}

export function parseReleaseBody(raw: unknown): ReleaseBody {
  const body = asObject(raw);
  return { callSid: requireCallId(body.call_sid), reason: shortText(body, 'reason', 256), allocationId: optionalAllocationId(body) };
}

export function parseConnectedBody(raw: unknown): ConnectedBody {
  const body = asObject(raw);
  return { callSid: requireCallId(body.call_sid), allocationId: optionalAllocationId(body) };
}
