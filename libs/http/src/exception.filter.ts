import { ArgumentsHost, Catch, ExceptionFilter, HttpException, LoggerService } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './api-error';
import { INVALID_BODY, answerForStatus, describeFrameworkError } from './framework-errors';
import { schemaErrorAnswer } from './schema-errors';

export interface ErrorCounter {
  (status: number, code: string): void;
}

/**
 * The one place errors become HTTP answers. Expected 4xx and our own 503s:
 * one warn line, no stack. Anything unexpected: 500 with no detail in the body, full detail in
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
    // A 503 we chose to answer (Redis down, not replicated, rebuilding, fleet not known yet) is expected: one line.
    if (status >= 500 && !(exception instanceof ApiError && status === 503)) {
      this.logger.error(`${where} failed: ${(exception as Error)?.message ?? String(exception)}`, (exception as Error)?.stack);
    } else {
      const detail = exception instanceof ApiError && exception.logDetail ? ` (${exception.logDetail})` : '';
      this.logger.warn(`${where} -> ${status} ${code}: ${message}${detail}`);
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
    const framework = describeFrameworkError(exception);
    if (framework) return framework;
    // Nest's own (not-found route and the like): our code and wording, never its text, which quotes
    // the URL. A bare 400 is the framework refusing the body; our own validation throws ApiError.
    if (exception instanceof HttpException) return exception.getStatus() === 400 ? INVALID_BODY : answerForStatus(exception.getStatus());
    return { status: 500, code: 'INTERNAL', message: 'internal error' };
  }
}
