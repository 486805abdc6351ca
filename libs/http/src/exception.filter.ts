import { ArgumentsHost, Catch, ExceptionFilter, HttpException, LoggerService } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './api-error';
import { schemaErrorAnswer } from './schema-errors';

const FASTIFY_ERRORS: Record<string, { status: number; code: string; message: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'PAYLOAD_TOO_LARGE', message: 'request body too large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: 'unsupported content type' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'INVALID_BODY', message: 'invalid request body' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'INVALID_BODY', message: 'invalid request body' },
};

function codeForStatus(status: number): string {
  switch (status) {
    case 400: return 'INVALID_REQUEST';
    case 401: return 'UNAUTHORIZED';
    case 403: return 'FORBIDDEN';
    case 404: return 'NOT_FOUND';
    case 405: return 'METHOD_NOT_ALLOWED';
    case 413: return 'PAYLOAD_TOO_LARGE';
    case 415: return 'UNSUPPORTED_MEDIA_TYPE';
    case 503: return 'SERVICE_UNAVAILABLE';
    default: return status >= 500 ? 'INTERNAL' : 'REQUEST_FAILED';
  }
}

export interface ErrorCounter {
  (status: number, code: string): void;
}

/**
 * The one place errors become HTTP answers. Expected 4xx: one warn line, no
 * stack. Anything unexpected: 500 with no detail in the body, full detail in
 * the log.
 */
@Catch()
export class JsonExceptionFilter implements ExceptionFilter {
  constructor(private readonly logger: LoggerService, private readonly count: ErrorCounter = () => undefined) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const reply = http.getResponse<FastifyReply>();
    const request = http.getRequest<FastifyRequest>();
    const { status, code, message } = this.describe(exception, request);
    const where = `${request.method} ${request.url.split('?')[0]}`;
    if (status >= 500 && code !== 'REDIS_UNAVAILABLE' && code !== 'STATE_REBUILDING' && code !== 'NO_POD_AVAILABLE') {
      this.logger.error(`${where} failed: ${(exception as Error)?.message ?? String(exception)}`, (exception as Error)?.stack);
    } else {
      this.logger.warn(`${where} -> ${status} ${code}: ${message}`);
    }
    this.count(status, code);
    void reply.status(status).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify({ error: message, code }));
  }

  private describe(exception: unknown, request: FastifyRequest): { status: number; code: string; message: string } {
    if (exception instanceof ApiError) return { status: exception.status, code: exception.code, message: exception.message };
    const validation = (exception as { validation?: Parameters<typeof schemaErrorAnswer>[0]; validationContext?: 'body' | 'params' | 'querystring' | 'headers' });
    if (Array.isArray(validation.validation)) {
      const where = validation.validationContext;
      const input = where === 'body' ? request.body : where === 'params' ? request.params : where === 'querystring' ? request.query : undefined;
      const schema = (request.routeOptions?.schema as Record<string, unknown> | undefined)?.[where ?? 'body'];
      return schemaErrorAnswer(validation.validation, where, schema as never, input);
    }
    const fastifyCode = (exception as { code?: string })?.code;
    if (fastifyCode && FASTIFY_ERRORS[fastifyCode]) return FASTIFY_ERRORS[fastifyCode];
    if ((exception as Error)?.name === 'SyntaxError' || (exception as { type?: string })?.type === 'entity.parse.failed') {
      return { status: 400, code: 'INVALID_BODY', message: 'invalid request body' };
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      // Our own validation throws ApiError; a bare 400 is the framework refusing the body.
      if (status === 400) return { status, code: 'INVALID_BODY', message: 'invalid request body' };
      if (status === 413) return { status, code: 'PAYLOAD_TOO_LARGE', message: 'request body too large' };
      const body = exception.getResponse();
      const text = typeof body === 'string' ? body : (body as { message?: unknown }).message;
      const message = status >= 500 ? 'internal error' : Array.isArray(text) ? text.join('; ') : String(text ?? exception.message);
      return { status, code: codeForStatus(status), message: status === 404 && /^Cannot /.test(message) ? 'route not found' : message };
    }
    const statusCode = (exception as { statusCode?: number })?.statusCode;
    if (statusCode === 400) return { status: 400, code: 'INVALID_BODY', message: 'invalid request body' };
    if (typeof statusCode === 'number' && statusCode > 400 && statusCode < 500) {
      return { status: statusCode, code: codeForStatus(statusCode), message: 'invalid request' };
    }
    return { status: 500, code: 'INTERNAL', message: 'internal error' };
  }
}
