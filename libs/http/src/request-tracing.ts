import { Context, Span, SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/** Probes, scrapes and the document are never traced. */
const UNTRACED = new Set(['/health', '/ready', '/metrics', '/openapi.json']);

interface TracedRequest extends FastifyRequest {
  traceContext?: Context;
  serverSpan?: Span;
}

/**
 * Request tracing as three Fastify hooks instead of a Nest interceptor (whose
 * rxjs pipeline and AsyncResource binding were a tenth of allocation-api's CPU):
 * `onRequest` continues the caller's `traceparent`, `preHandler` runs the
 * handler inside that context (Fastify calls the handler synchronously from
 * it, so every span and log line below carries the trace), `onResponse` ends
 * the SERVER span with the status.
 *
 * With `exportSpans` false (no OTLP endpoint) no span is created: a request
 * with a `traceparent` still runs in the caller's context, so its log lines
 * carry the caller's trace id, and one without costs nothing. With it, every
 * request is a SERVER span continuing the caller's trace (the SDK's sampler,
 * set by OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, decides what is kept).
 */
export function installRequestTracing(fastify: FastifyInstance, exportSpans: boolean): void {
  fastify.addHook('onRequest', (request: TracedRequest, _reply, done) => {
    const route = request.routeOptions.url ?? '';
    if (UNTRACED.has(route)) return done();
    const hasParent = request.headers.traceparent !== undefined;
    if (!exportSpans && !hasParent) return done();
    const parent = hasParent ? propagation.extract(context.active(), request.headers) : context.active();
    if (!exportSpans) {
      request.traceContext = parent;
      return done();
    }
    const span = trace.getTracer('http').startSpan(`${request.method} ${route}`, {
      kind: SpanKind.SERVER,
      attributes: { 'http.request.method': request.method, 'http.route': route },
    }, parent);
    request.serverSpan = span;
    request.traceContext = trace.setSpan(parent, span);
    done();
  });
  fastify.addHook('preHandler', (request: TracedRequest, _reply, done) => {
    if (request.traceContext) context.with(request.traceContext, done);
    else done();
  });
  fastify.addHook('onResponse', (request: TracedRequest, reply, done) => {
    const span = request.serverSpan;
    if (span) {
      span.setAttribute('http.response.status_code', reply.statusCode);
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
    done();
  });
}
