import { context, metrics, propagation, trace, Meter, Span, SpanStatusCode, Tracer } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';

/**
 * OpenTelemetry for one app: traces (exported over OTLP when
 * OTEL_EXPORTER_OTLP_ENDPOINT is set, otherwise only used for trace ids in
 * logs and across the Redis streams) and metrics served as Prometheus text on
 * the app's own `/metrics` route (no second port).
 */
export class Telemetry {
  private static current: Telemetry | null = null;
  private readonly exporter = new PrometheusExporter({ preventServerStart: true });
  private readonly serializer = new PrometheusSerializer();
  private readonly sdk: NodeSDK;

  /** Spans leave the process (an OTLP endpoint is set); without it only trace context travels. */
  readonly exportsSpans: boolean;

  private constructor(readonly serviceName: string, otlpEndpoint: string | undefined) {
    this.exportsSpans = Boolean(otlpEndpoint);
    const spanProcessors: SpanProcessor[] = otlpEndpoint
      ? [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${otlpEndpoint.replace(/\/$/, '')}/v1/traces` }))]
      : [];
    this.sdk = new NodeSDK({ serviceName, metricReader: this.exporter, spanProcessors, instrumentations: [] });
    this.sdk.start();
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
    await this.sdk.shutdown().catch(() => undefined);
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
