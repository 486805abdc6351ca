import { Counter } from '@opentelemetry/api';
import { CallScope } from '@smart-router/allocation';
import { HeartbeatRequest, HeartbeatResponse } from '@smart-router/api-contract';
import { ApiError } from '@smart-router/http';
import { PoolMetrics, guardStore } from '@smart-router/pool-state';
import { LivenessScripts } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';
import { allocationIdOf } from './allocation-id';

/**
 * Voice-agent heartbeats (SPEC 11): one script per heartbeat, on Redis's
 * clock. Who may report for a pod is the caller's scope: a voice agent only
 * for its own pod (403 NOT_YOUR_CALL, as for its calls: SPEC 10.1 names the
 * heartbeat beside release and connected), an unscoped dispatcher token or an
 * open-mode caller for any pod; a merchant-scoped token never (403 FORBIDDEN:
 * a pod serves every merchant, so its liveness is no merchant's to report).
 */
export class HeartbeatService {
  private readonly heartbeats: Counter;

  constructor(private readonly scripts: LivenessScripts, private readonly metrics: PoolMetrics, telemetry: Telemetry) {
    this.heartbeats = telemetry.meter().createCounter('smart_router_heartbeats_total', {
      description: 'Voice-agent heartbeats by result (live, dead: still listing calls it held when declared dead, unknown_pod, refused)',
    });
  }

  async record(body: HeartbeatRequest, scope: CallScope): Promise<HeartbeatResponse> {
    if (scope.merchants) {
      this.count('refused');
      throw ApiError.forbidden('a merchant-scoped token may not report pod liveness');
    }
    if (scope.podName !== undefined && scope.podName !== body.pod_name) {
      this.count('refused');
      throw new ApiError(403, 'NOT_YOUR_CALL', 'a voice agent reports heartbeats for its own pod only');
    }
    const calls = body.calls.map((call) => ({
      callSid: call.call_sid,
      allocationId: allocationIdOf(call.allocation_id) ?? null,
      mediaIn: call.media_in,
      mediaOut: call.media_out,
    }));
    const result = await guardStore(this.metrics, 'heartbeat', () => this.scripts.recordHeartbeat(body.pod_name, calls));
    if (!result.ok) {
      this.count('unknown_pod');
      throw ApiError.notFound('pod not found', 'POD_NOT_FOUND');
    }
    this.count(result.liveness);
    return { success: true, pod_name: body.pod_name, liveness: result.liveness, unknown_calls: result.unknownCalls, at: result.at };
  }

  private count(result: string): void {
    this.heartbeats.add(1, { result });
  }
}
