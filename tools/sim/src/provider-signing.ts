import { randomBytes, randomUUID } from 'node:crypto';
import {
  PLIVO_NONCE_HEADER, PLIVO_SIGNATURE_HEADER, ParamMap, TWILIO_IDEMPOTENCY_HEADER, TWILIO_SIGNATURE_HEADER, plivoV3Signature, twilioSignature,
} from '@smart-router/providers';

/** Form fields as the carrier sends them: one value per name. */
export type FormFields = Record<string, string>;

function paramMap(fields: FormFields): ParamMap {
  return new Map(Object.entries(fields).map(([name, value]) => [name, [value]]));
}

/**
 * The headers Twilio puts on a request to `url` with these form fields: the
 * signature over the exact URL it calls plus the fields sorted by name (the
 * same function libs/providers verifies with, so the carrier and the webhooks
 * app cannot drift apart), and an idempotency token, new for each request
 * (a retry of one webhook would reuse it). No token = unsigned (open mode).
 */
export function twilioRequestHeaders(authToken: string | undefined, url: string, fields: FormFields, idempotencyToken = randomUUID()): Record<string, string> {
  const headers: Record<string, string> = { [TWILIO_IDEMPOTENCY_HEADER]: idempotencyToken };
  if (authToken) headers[TWILIO_SIGNATURE_HEADER] = twilioSignature(authToken, url, paramMap(fields));
  return headers;
}

/** Plivo's V3 headers: a fresh nonce (digits, as Plivo's are) and the signature over method, URL, fields and nonce. */
export function plivoRequestHeaders(authToken: string | undefined, method: string, url: string, fields: FormFields, nonce = plivoNonce()): Record<string, string> {
  if (!authToken) return {};
  return { [PLIVO_SIGNATURE_HEADER]: plivoV3Signature(authToken, method, url, nonce, paramMap(fields)), [PLIVO_NONCE_HEADER]: nonce };
}

export function plivoNonce(): string {
  return BigInt(`0x${randomBytes(8).toString('hex')}`).toString().padStart(20, '0');
}
