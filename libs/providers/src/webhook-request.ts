import { ApiError } from '@smart-router/http';

/** Request parameters by name; a repeated name keeps every value, in order. */
export type ParamMap = ReadonlyMap<string, readonly string[]>;

export type WebhookBody =
  | { kind: 'form'; params: ParamMap }
  | { kind: 'json'; value: unknown }
  | { kind: 'none' };

/**
 * A provider webhook as the adapters see it, independent of the HTTP
 * framework. `url` is the URL the provider called (what it signed), and
 * `rawBody` the bytes it sent: signatures are computed over those, never
 * over a re-serialised body.
 */
export interface WebhookRequest {
  method: string;
  url: string;
  /** Header names in lower case. */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  query: ParamMap;
  body: WebhookBody;
  rawBody: Buffer;
}

export interface WebhookRequestInput {
  method: string;
  url: string;
  headers?: Readonly<Record<string, string | string[] | undefined>>;
  rawBody?: Buffer | string;
}

/** Parses `a=1&b=2&a=3` (form or query syntax: `+` is a space). */
export function parseParams(text: string): ParamMap {
  const params = new Map<string, string[]>();
  for (const [name, value] of new URLSearchParams(text)) {
    const values = params.get(name);
    if (values) values.push(value);
    else params.set(name, [value]);
  }
  return params;
}

/** Builds a ParamMap from a plain object (tests, fixtures). */
export function paramMap(record: Record<string, string | readonly string[]>): ParamMap {
  return new Map(Object.entries(record).map(([name, value]) => [name, typeof value === 'string' ? [value] : [...value]]));
}

/** The query string of a URL, without the fragment; '' when there is none. */
export function queryText(url: string): string {
  const withoutFragment = url.split('#', 1)[0];
  const start = withoutFragment.indexOf('?');
  return start === -1 ? '' : withoutFragment.slice(start + 1);
}

function mediaType(headers: WebhookRequestInput['headers']): string {
  const value = headers?.['content-type'];
  const text = Array.isArray(value) ? value[0] : value;
  return (text ?? '').split(';', 1)[0].trim().toLowerCase();
}

/**
 * Normalises a webhook: query and form parameters parsed from the raw text,
 * a JSON body parsed from the raw bytes. Other media types carry no fields.
 */
export function createWebhookRequest(input: WebhookRequestInput): WebhookRequest {
  const rawBody = typeof input.rawBody === 'string' ? Buffer.from(input.rawBody, 'utf8') : (input.rawBody ?? Buffer.alloc(0));
  const headers = Object.fromEntries(Object.entries(input.headers ?? {}).map(([name, value]) => [name.toLowerCase(), value]));
  const type = mediaType(headers);
  let body: WebhookBody = { kind: 'none' };
  if (type === 'application/x-www-form-urlencoded') {
    body = { kind: 'form', params: parseParams(rawBody.toString('utf8')) };
  } else if (type === 'application/json' && rawBody.length > 0) {
    try {
      body = { kind: 'json', value: JSON.parse(rawBody.toString('utf8')) as unknown };
    } catch {
      throw ApiError.badRequest('invalid request body', 'INVALID_BODY');
    }
  }
  return { method: input.method.toUpperCase(), url: input.url, headers, query: parseParams(queryText(input.url)), body, rawBody };
}

/** One header value (the first when repeated); undefined when absent or empty. */
export function headerOf(request: WebhookRequest, name: string): string | undefined {
  const value = request.headers[name.toLowerCase()];
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text === '' ? undefined : text;
}

/** A body field: the first form value, or a JSON object's property (any type). */
export function bodyField(request: WebhookRequest, name: string): unknown {
  const { body } = request;
  if (body.kind === 'form') return body.params.get(name)?.[0];
  if (body.kind === 'json' && body.value !== null && typeof body.value === 'object' && !Array.isArray(body.value)) {
    return (body.value as Record<string, unknown>)[name];
  }
  return undefined;
}

/**
 * A form field only. Twilio and Plivo sign form parameters: a JSON body would
 * not be covered by their signature, so their fields are never read from one.
 */
export function formField(request: WebhookRequest, name: string): string | undefined {
  return request.body.kind === 'form' ? request.body.params.get(name)?.[0] : undefined;
}

/** The longest caller identity kept (a phone number or SIP URI; SPEC 12 only hashes it). */
const MAX_CALLER_LENGTH = 256;

/** The caller for a sticky rollout: any string the provider sent, bounded; '' when absent or not text. */
export function callerOf(value: unknown): string {
  return typeof value === 'string' ? value.slice(0, MAX_CALLER_LENGTH) : '';
}

export function queryField(request: WebhookRequest, name: string): string | undefined {
  return request.query.get(name)?.[0];
}

/** The form parameters a signature covers ({} for a JSON or empty body). */
export function formParams(request: WebhookRequest): ParamMap {
  return request.body.kind === 'form' ? request.body.params : new Map();
}
