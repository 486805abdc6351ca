import { ApiError } from '@smart-router/http';

/**
 * allocation_id as a caller sends it (a JSON integer or its decimal string);
 * absent or null = undefined. Anything else but a positive safe integer is
 * 400 INVALID_FIELD. One parser for release, connected and heartbeat.
 */
export function allocationIdOf(value: number | string | null | undefined): number | undefined {
  if (value === undefined || value === null) return undefined;
  const id = Number(value);
  if (!Number.isSafeInteger(id) || id < 1) throw ApiError.badRequest('allocation_id must be a positive integer', 'INVALID_FIELD');
  return id;
}
