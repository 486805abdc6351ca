import { IncomingMessage, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

// The one place where errors raised by the framework or by Node's HTTP parser,
// rather than by our code, get our `{error, code}` answer. They never echo the
// request back (a soak found Fastify's 414 quoting the whole URL).

export interface ErrorAnswer {
  status: number;
  code: string;
  message: string;
}

/**
 * Longest route parameter the router accepts before our validators see it.
 * Fastify's default (100) refused valid 101–128 character ids with its own 414.
 * Node refuses a request line beyond its 16 KiB header limit (431) first, so at
 * this length every parameter reaches the controller and gets our specific 400
 * (`INVALID_CALL_SID`, `INVALID_MERCHANT_ID`, `INVALID_POD_NAME`).
 */
export const MAX_PARAM_LENGTH = 16 * 1024;

export const INVALID_BODY: ErrorAnswer = { status: 400, code: 'INVALID_BODY', message: 'invalid request body' };
const INVALID_REQUEST: ErrorAnswer = { status: 400, code: 'INVALID_REQUEST', message: 'invalid request' };

const FASTIFY_ERRORS: Record<string, ErrorAnswer> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'PAYLOAD_TOO_LARGE', message: 'request body too large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: 'unsupported content type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: INVALID_BODY,
  FST_ERR_CTP_EMPTY_JSON_BODY: INVALID_BODY,
  FST_ERR_CTP_INVALID_JSON_BODY: INVALID_BODY,
  FST_ERR_BAD_URL: { status: 400, code: 'INVALID_PATH', message: 'invalid URL path' },
  FST_ERR_MAX_PARAM_LENGTH: { status: 400, code: 'INVALID_PATH', message: `path parameter longer than ${MAX_PARAM_LENGTH} characters` },
};

const STATUS_ANSWERS: Record<number, ErrorAnswer> = {
  400: INVALID_REQUEST,
  401: { status: 401, code: 'UNAUTHORIZED', message: 'unauthorized' },
  403: { status: 403, code: 'FORBIDDEN', message: 'forbidden' },
  404: { status: 404, code: 'NOT_FOUND', message: 'route not found' },
  405: { status: 405, code: 'METHOD_NOT_ALLOWED', message: 'method not allowed' },
  408: { status: 408, code: 'REQUEST_TIMEOUT', message: 'request timed out' },
  413: { status: 413, code: 'PAYLOAD_TOO_LARGE', message: 'request body too large' },
  414: { status: 414, code: 'URI_TOO_LONG', message: 'request URL too long' },
  415: { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: 'unsupported content type' },
  431: { status: 431, code: 'HEADERS_TOO_LARGE', message: 'request line or headers too large' },
};

/**
 * HTTP/1.1 requires a Host header (RFC 9112 section 3.2). Node refuses a request
 * without one itself, with an empty 400, unless the server is created with
 * `requireHostHeader: false`; our servers do that and answer this instead.
 */
export const HOST_REQUIRED: ErrorAnswer = { status: 400, code: 'INVALID_REQUEST', message: 'Host header required' };

export function lacksRequiredHost(request: IncomingMessage): boolean {
  return request.headers.host === undefined && request.httpVersion === '1.1';
}

/** Our answer for a framework status (no text of the framework's, which may quote the request). */
export function answerForStatus(status: number): ErrorAnswer {
  if (STATUS_ANSWERS[status]) return STATUS_ANSWERS[status];
  if (status >= 500) return { status, code: status === 503 ? 'SERVICE_UNAVAILABLE' : 'INTERNAL', message: status === 503 ? 'service unavailable' : 'internal error' };
  return { status, code: 'INVALID_REQUEST', message: 'invalid request' };
}

/**
 * A Fastify/Nest error that is not ours (no ApiError): body parser, router,
 * content type. `null` when it is not a framework client error (a bug: 500).
 */
export function describeFrameworkError(exception: unknown): ErrorAnswer | null {
  const { code, statusCode, name, type } = (exception ?? {}) as { code?: string; statusCode?: number; name?: string; type?: string };
  if (code && FASTIFY_ERRORS[code]) return FASTIFY_ERRORS[code];
  if (name === 'SyntaxError' || type === 'entity.parse.failed') return INVALID_BODY;
  // Any other 4xx the framework raises on its own: a bare 400 is it refusing the body.
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) return statusCode === 400 ? INVALID_BODY : answerForStatus(statusCode);
  return null;
}

/** Node's parser refusing a request before any router runs (`clientError`). */
export function describeClientError(error: NodeJS.ErrnoException): ErrorAnswer {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return STATUS_ANSWERS[431];
    case 'HPE_URI_TOO_LONG':
      return STATUS_ANSWERS[414];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return STATUS_ANSWERS[408];
    default:
      return { status: 400, code: 'INVALID_REQUEST', message: 'malformed HTTP request' };
  }
}

/**
 * A whole HTTP/1.1 JSON error response for a raw socket (a parser error, a
 * refused WebSocket upgrade), where no response object exists. It closes the
 * connection.
 */
export function rawErrorResponse(answer: ErrorAnswer): string {
  const body = JSON.stringify({ error: answer.message, code: answer.code });
  return (
    `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'Error'}\r\n` +
    `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

/**
 * A `clientError` listener for any Node HTTP server (Fastify's
 * `clientErrorHandler`, the gateway, the simulated servers): Node's default
 * writes a bare status line with no body. This writes a whole JSON response,
 * then closes the connection (the parser state is unusable after the error).
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  // Reset by the peer: nobody is left to read an answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  if (socket.writable) socket.end(rawErrorResponse(describeClientError(error)));
  // A client that never reads must not keep the socket open.
  setTimeout(() => socket.destroy(), 1000).unref();
}
