import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import { Observable } from 'rxjs';

/**
 * One SERVER span per HTTP request, continuing the caller's W3C trace context
 * (`traceparent`), so the Lua-call spans below it and every log line written
 * while handling it share the request's trace id. Probes and scrapes are not
 * traced.
 */
@Injectable()
export class TracingInterceptor implements NestInterceptor {
  private static readonly UNTRACED = new Set(['/health', '/ready', '/metrics']);

  intercept(executionContext: ExecutionContext, next: CallHandler): Observable<unknown> {
    const request = executionContext.switchToHttp().getRequest<{ method: string; url: string; headers: Record<string, unknown>; routeOptions?: { url?: string } }>();
    const route = request.routeOptions?.url ?? request.url.split('?')[0];
    if (TracingInterceptor.UNTRACED.has(route)) return next.handle();
    const parent = propagation.extract(context.active(), request.headers);
    return new Observable((subscriber) => {
      const span = trace.getTracer('http').startSpan(`${request.method} ${route}`, {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': request.method, 'http.route': route },
      }, parent);
      const subscription = context.with(trace.setSpan(parent, span), () =>
        next.handle().subscribe({
          next: (value) => subscriber.next(value),
          error: (error: unknown) => {
            const status = (error as { getStatus?: () => number }).getStatus?.() ?? 500;
            span.setAttribute('http.response.status_code', status);
            if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
            span.end();
            subscriber.error(error);
          },
          complete: () => {
            span.setAttribute('http.response.status_code', executionContext.switchToHttp().getResponse<{ statusCode?: number }>().statusCode ?? 200);
            span.end();
            subscriber.complete();
          },
        }),
      );
      return () => subscription.unsubscribe();
    });
  }
}
