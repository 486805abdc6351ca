import { context, metrics, propagation, trace, Meter, Span, SpanStatusCode, Tracer, TracerProvider } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { Resource, defaultResource, detectResources, envDetector, hostDetector, processDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

/**
 * OpenTelemetry for one app: traces (exported over OTLP when
 * OTEL_EXPORTER_OTLP_ENDPOINT is set, otherwise only used for trace ids in
 * logs and across the Redis streams) and metrics served as Prometheus text on
 * the app's own `/metrics` route (no second port).
 *
 * Assembled from the SDK's parts as `NodeSDK` did it for us (the W3C trace
 * context and baggage propagators, an AsyncLocalStorage context manager, the
 * env/process/host resource, a MeterProvider for the Prometheus reader, a
 * tracer provider only when there is somewhere to send spans, its sampler from
 * OTEL_TRACES_SAMPLER), without what NodeSDK also loaded and we never used: the
 * exporters of every protocol and an OTLP log exporter (we log JSON lines).
 * The OTLP trace exporter is loaded only with an endpoint. About 10 MB less
 * RSS per app.
 */
export class Telemetry {
  private static current: Telemetry | null = null;
  private readonly exporter = new PrometheusExporter({ preventServerStart: true });
  private readonly serializer = new PrometheusSerializer();
  private readonly meterProvider: MeterProvider;
  private readonly tracerProvider: (TracerProvider & { shutdown(): Promise<void> }) | null = null;

  /** Spans leave the process (an OTLP endpoint is set); without it only trace context travels. */
  readonly exportsSpans: boolean;

  private constructor(readonly serviceName: string, otlpEndpoint: string | undefined) {
    this.exportsSpans = Boolean(otlpEndpoint);
    const contextManager = new AsyncLocalStorageContextManager();
    contextManager.enable();
    context.setGlobalContextManager(contextManager);
    propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
    const resource: Resource = defaultResource()
      .merge(detectResources({ detectors: [envDetector, processDetector, hostDetector] }))
      .merge(resourceFromAttributes({ 'service.name': serviceName }));
    this.meterProvider = new MeterProvider({ resource, readers: [this.exporter] });
    metrics.setGlobalMeterProvider(this.meterProvider);
    if (otlpEndpoint) {
      // Loaded only here: an app without an endpoint never pays for the exporter.
      const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base') as typeof import('@opentelemetry/sdk-trace-base');
      const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
      // The sampler (OTEL_TRACES_SAMPLER, _ARG) and span limits come from the environment, as before.
      const provider = new BasicTracerProvider({
        resource,
        spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${otlpEndpoint.replace(/\/$/, '')}/v1/traces` }))],
      });
      trace.setGlobalTracerProvider(provider);
      this.tracerProvider = provider;
    }
  }

  /** Starts the SDK once per process; later calls return the same instance. */
  static start(serviceName: string, otlpEndpoint?: string): Telemetry {
    Telemetry.current ??= new Telemetry(serviceName, otlpEndpoint);
    return Telemetry.current;
  }

  meter(): Meter {
    return metrics.getMeter(this.serviceName);
  }

  tracer(): Tracer {
    return trace.getTracer(this.serviceName);
  }

  /**
   * Runs `work` in a child span when spans are exported; otherwise runs it as
   * is (a span nobody receives is pure cost on the hot path).
   */
  span<T>(name: string, attributes: Record<string, string | number>, work: () => Promise<T>): Promise<T> {
    return this.exportsSpans ? inSpan(this.tracer(), name, work, attributes) : work();
  }

  async prometheusText(): Promise<string> {
    const { resourceMetrics } = await this.exporter.collect();
    return this.serializer.serialize(resourceMetrics);
  }

  async shutdown(): Promise<void> {
    await Promise.all([this.tracerProvider?.shutdown(), this.meterProvider.shutdown()]).catch(() => undefined);
    Telemetry.current = null;
  }
}

/** Runs `work` in a span that records failures; the span ends either way. */
export async function inSpan<T>(tracer: Tracer, name: string, work: (span: Span) => Promise<T>, attributes: Record<string, string | number> = {}): Promise<T> {
  return tracer.startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await work(span);
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** The active trace id, for log lines. */
export function currentTraceId(): string | undefined {
  const spanContext = trace.getSpan(context.active())?.spanContext();
  return spanContext && spanContext.traceId !== '00000000000000000000000000000000' ? spanContext.traceId : undefined;
}

/** W3C trace context of the active span, to carry inside a stream event. */
export function injectTraceContext(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier;
}

/** Runs `work` as a child of the trace context carried by an event. */
export function withExtractedContext<T>(carrier: Record<string, string>, work: () => T): T {
  return context.with(propagation.extract(context.active(), carrier), work);
}
