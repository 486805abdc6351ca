import { Attributes, Counter, Histogram, ObservableCounter } from '@opentelemetry/api';
import { Telemetry } from '@smart-router/telemetry';

/**
 * A monotonic counter kept as plain numbers and read at scrape time: a hot
 * path increment is one Map lookup, where `Counter.add` hashes its attribute
 * object on every call.
 */
class Tally {
  private readonly counts = new Map<string, { attributes: Attributes; value: number }>();

  constructor(instrument: ObservableCounter) {
    instrument.addCallback((result) => {
      for (const { attributes, value } of this.counts.values()) result.observe(value, attributes);
    });
  }

  add(key: string, attributes: () => Attributes): void {
    const entry = this.counts.get(key);
    if (entry) entry.value += 1;
    else this.counts.set(key, { attributes: attributes(), value: 1 });
  }
}

/** Instruments shared by every app that allocates or releases calls. */
export class PoolMetrics {
  readonly allocationSeconds: Histogram;
  readonly redisErrors: Counter;
  readonly notReplicated: Counter;
  readonly waitSeconds: Histogram;
  private readonly allocations: Tally;
  private readonly releases: Tally;
  private readonly httpErrors: Tally;

  constructor(telemetry: Telemetry) {
    const meter = telemetry.meter();
    this.allocations = new Tally(meter.createObservableCounter('smart_router_allocations_total', { description: 'Allocation attempts by source pool and result' }));
    this.allocationSeconds = meter.createHistogram('smart_router_allocation_duration_seconds', {
      description: 'Allocation latency including the Lua round trip',
      unit: 's',
      advice: { explicitBucketBoundaries: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] },
    });
    this.releases = new Tally(meter.createObservableCounter('smart_router_releases_total', { description: 'Release attempts by result' }));
    this.redisErrors = meter.createCounter('smart_router_redis_errors_total', { description: 'Redis commands that failed (each failed a request closed)' });
    this.notReplicated = notReplicatedCounter(telemetry);
    this.waitSeconds = meter.createHistogram('smart_router_wait_seconds', {
      description: 'Time allocations spent waiting for a pod, by result (allocated, timed_out)',
      unit: 's',
      advice: { explicitBucketBoundaries: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10] },
    });
    this.httpErrors = new Tally(meter.createObservableCounter('smart_router_http_errors_total', { description: 'HTTP error answers by status and code' }));
  }

  /** `version`: the serving pod's agent version (SPEC 12), a label only on allocations that found a pod. */
  allocated(pool: string, result: string, version?: string): void {
    if (version === undefined) this.allocations.add(`${pool}\n${result}`, () => ({ pool, result }));
    else this.allocations.add(`${pool}\n${result}\n${version}`, () => ({ pool, result, version }));
  }

  released(result: string): void {
    this.releases.add(result, () => ({ result }));
  }

  redisError(operation: string): void {
    this.redisErrors.add(1, { operation });
  }

  /** Every error answer, whether refused by the handler or by the exception filter. */
  httpError(status: number, code: string): void {
    this.httpErrors.add(`${status}\n${code}`, () => ({ status: String(status), code }));
  }
}

/** Writes fewer replicas acknowledged than REDIS_REPLICA_ACKS asks, by script (request path and reconciler). */
export function notReplicatedCounter(telemetry: Telemetry): Counter {
  return telemetry.meter().createCounter('smart_router_not_replicated_total', { description: 'State-changing scripts that too few replicas acknowledged in time' });
}
