import { Counter, Histogram } from '@opentelemetry/api';
import { Telemetry } from '@smart-router/telemetry';

/** Instruments shared by every app that allocates or releases calls. */
export class PoolMetrics {
  readonly allocations: Counter;
  readonly allocationSeconds: Histogram;
  readonly releases: Counter;
  readonly redisErrors: Counter;
  readonly httpErrors: Counter;
  readonly notReplicated: Counter;
  readonly waitSeconds: Histogram;

  constructor(telemetry: Telemetry) {
    const meter = telemetry.meter();
    this.allocations = meter.createCounter('smart_router_allocations_total', { description: 'Allocation attempts by source pool and result' });
    this.allocationSeconds = meter.createHistogram('smart_router_allocation_duration_seconds', {
      description: 'Allocation latency including the Lua round trip',
      unit: 's',
      advice: { explicitBucketBoundaries: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] },
    });
    this.releases = meter.createCounter('smart_router_releases_total', { description: 'Release attempts by result' });
    this.redisErrors = meter.createCounter('smart_router_redis_errors_total', { description: 'Redis commands that failed (each failed a request closed)' });
    this.notReplicated = notReplicatedCounter(telemetry);
    this.waitSeconds = meter.createHistogram('smart_router_wait_seconds', {
      description: 'Time allocations spent waiting for a pod, by result (allocated, timed_out)',
      unit: 's',
      advice: { explicitBucketBoundaries: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10] },
    });
    this.httpErrors = meter.createCounter('smart_router_http_errors_total', { description: 'HTTP error answers by status and code' });
  }
}

/** Writes fewer replicas acknowledged than REDIS_REPLICA_ACKS asks, by script (request path and reconciler). */
export function notReplicatedCounter(telemetry: Telemetry): Counter {
  return telemetry.meter().createCounter('smart_router_not_replicated_total', { description: 'State-changing scripts that too few replicas acknowledged in time' });
}
