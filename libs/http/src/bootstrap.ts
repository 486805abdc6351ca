import 'reflect-metadata';
import { DynamicModule, INestApplication, LoggerService, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCounter, JsonExceptionFilter } from './exception.filter';
import { answerClientError, answerForStatus, describeFrameworkError, ErrorAnswer, HOST_REQUIRED, lacksRequiredHost, MAX_PARAM_LENGTH } from './framework-errors';
import { installMediaTypeCheck } from './media-types';
import { installRequestTracing } from './request-tracing';
import { guardServer } from './socket-guard';
import { ERRORS_KEYWORD } from '@smart-router/api-contract';

/** SPEC section 3: request bodies are capped at 16 KiB (413 beyond). */
export const BODY_LIMIT_BYTES = 16 * 1024;

export interface HttpAppOptions {
  module: Type<unknown> | DynamicModule;
  logger: LoggerService;
  host: string;
  port: number;
  /** Keep the raw body (webhook signatures are computed over it). */
  rawBody?: boolean;
  countError?: ErrorCounter;
  /** Spans are exported (OTLP endpoint set): make a SERVER span per request. */
  exportSpans?: boolean;
  /** TRUSTED_PROXIES: only these addresses' X-Forwarded-* are believed; empty or absent = none. */
  trustedProxies?: string[];
}

/** Method and path of every route an app serves (the OpenAPI coverage test compares them with its document). */
export const SERVED_ROUTES = new WeakMap<object, { method: string; path: string }[]>();

/**
 * Creates and starts one Fastify-backed Nest app the same way for every
 * service: JSON errors, 16 KiB bodies, graceful shutdown on SIGTERM.
 * Fastify was chosen over Express by measurement (STACK.md and tools/bench).
 */
export async function startHttpApp(options: HttpAppOptions): Promise<NestFastifyApplication> {
  // return503OnClosing off: a request already on an accepted connection when SIGTERM closes the
  // listener is served, not refused (zero-failure rolling restarts; new connections go elsewhere).
  const countError = options.countError ?? (() => undefined);
  const adapter = new FastifyAdapter({
    bodyLimit: BODY_LIMIT_BYTES,
    // SPEC 10.1 "the edge says who called": X-Forwarded-Proto/-Host/-For set by anyone
    // else are ignored, so a client cannot pick the scheme, host or address we see.
    trustProxy: options.trustedProxies && options.trustedProxies.length > 0 ? options.trustedProxies : false,
    return503OnClosing: false,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Ajv as our schemas need it: no type coercion (a number is not a call_sid), and the
    // `x-errors` extension (a field's 400 code and message) allowed as a keyword.
    ajv: { customOptions: { coerceTypes: false, keywords: [ERRORS_KEYWORD] } },
    // Errors raised before a route runs (bad URL encoding, over-long parameter) and by Node's
    // parser (oversized request line or headers): our JSON, never Fastify's text quoting the URL.
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const answer = describeFrameworkError(error) ?? answerForStatus(400);
      options.logger.warn(`${request.method} ${request.url.slice(0, 200)} -> ${answer.status} ${answer.code}: ${answer.message}`);
      countError(answer.status, answer.code);
      sendAnswer(reply, answer);
    },
    clientErrorHandler: answerClientError,
    http: { requireHostHeader: false },
  });
  // Node's own Host check answers an empty 400; this one answers ours.
  adapter.getInstance().addHook('onRequest', (request, reply, done) => {
    if (!lacksRequiredHost(request.raw)) return done();
    countError(HOST_REQUIRED.status, HOST_REQUIRED.code);
    sendAnswer(reply, HOST_REQUIRED);
  });
  const fastify = adapter.getInstance();
  installMediaTypeCheck(fastify, (reply, answer) => {
    countError(answer.status, answer.code);
    sendAnswer(reply, answer);
  });
  const routes: { method: string; path: string }[] = [];
  fastify.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push({ method, path: route.url });
  });
  installRequestTracing(fastify, options.exportSpans ?? false);
  const app = await NestFactory.create<NestFastifyApplication>(options.module, adapter, {
    logger: options.logger,
    rawBody: options.rawBody ?? false,
    bufferLogs: false,
  });
  app.useGlobalFilters(new JsonExceptionFilter(options.logger, countError));
  SERVED_ROUTES.set(app, routes);
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  installShutdownDeadline(app);
  // Fastify handles its sockets' errors; this also covers those it hands over (an SSE stream, an upgrade) (SPEC 10.2).
  guardServer(app.getHttpServer());
  await app.listen(options.port, options.host);
  return app;
}

function sendAnswer(reply: FastifyReply, answer: ErrorAnswer): void {
  void reply.status(answer.status).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify({ error: answer.message, code: answer.code }));
}

/** SPEC section 2: every app exits within 10 s of SIGTERM, even if a hook hangs. */
let deadlineInstalled = false;
function installShutdownDeadline(_app: INestApplication, deadlineMs = 9000): void {
  if (deadlineInstalled) return;
  deadlineInstalled = true;
  const arm = () => setTimeout(() => process.exit(0), deadlineMs).unref();
  process.once('SIGTERM', arm);
  process.once('SIGINT', arm);
}

/** Runs `main`, exiting 1 with one clear line when start-up fails. */
export function runMain(name: string, main: () => Promise<unknown>): void {
  main().catch((error: unknown) => {
    process.stderr.write(`${name}: failed to start: ${(error as Error)?.message ?? String(error)}\n`);
    process.exit(1);
  });
}
