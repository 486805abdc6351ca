import { RouteConfig } from '@nestjs/platform-fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { ErrorAnswer, answerForStatus } from './framework-errors';

/** What a route takes when it declares nothing: JSON (with any parameters, e.g. `; charset=utf-8`). */
export const JSON_ONLY: readonly string[] = ['application/json'];

export const UNSUPPORTED_MEDIA_TYPE: ErrorAnswer = answerForStatus(415);

interface MediaTypeConfig {
  bodyContentTypes?: readonly string[];
}

/**
 * Declares, on the route, the request body media types it takes when that is
 * not JSON only (provider form posts). `@Route(contract)` sets it from the
 * contract's `bodyContentTypes`; a controller mounted without a contract uses
 * this directly.
 */
export function AcceptsBody(types: readonly string[]): MethodDecorator {
  return RouteConfig({ bodyContentTypes: types } satisfies MediaTypeConfig);
}

function hasBody(request: IncomingMessage): boolean {
  const length = request.headers['content-length'];
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined;
}

function mediaType(header: string): string {
  return header.split(';', 1)[0].trim().toLowerCase();
}

/**
 * SPEC 10.1: JSON routes take only `application/json`, so no cross-site HTML
 * form (urlencoded, multipart, text/plain: the types a browser sends without a
 * CORS preflight) can drain a pod or allocate. Checked in `onRequest`, before
 * any body parser runs, so a refused request changes nothing. A state-changing
 * method is refused with any other declared type even without a body (a form
 * posting nothing still reaches `POST /api/v1/admin/reconcile`); a GET without
 * a body is not. A request with no Content-Type is left to the body parser
 * (no browser form sends one; a body-less POST such as `curl -X POST` is fine).
 */
export function installMediaTypeCheck(fastify: FastifyInstance, refuse: (reply: FastifyReply, answer: ErrorAnswer) => void): void {
  fastify.addHook('onRequest', (request: FastifyRequest, reply, done) => {
    const header = request.headers['content-type'];
    if (header === undefined || request.is404) return done();
    if ((request.method === 'GET' || request.method === 'HEAD' || request.method === 'OPTIONS') && !hasBody(request.raw)) return done();
    const accepted = (request.routeOptions.config as MediaTypeConfig | undefined)?.bodyContentTypes ?? JSON_ONLY;
    if (accepted.includes(mediaType(header))) return done();
    refuse(reply, UNSUPPORTED_MEDIA_TYPE);
  });
}
