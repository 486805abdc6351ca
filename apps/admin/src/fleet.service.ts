import type Redis from 'ioredis';
import { ApiError } from '@smart-router/http';
import { PoolMetrics, guardStore } from '@smart-router/pool-state';
import { AutoscalerSettings, FleetSettings, MAX_FLEET_REPLICAS, parseStoredAutoscaler, validateAutoscalerUpdate } from '@smart-router/config';
import { RedisKeys } from '@smart-router/redis-keys';
import { FleetScripts } from '@smart-router/redis-scripts';

export interface FleetView {
  replicas: number | null;
  target: number | null;
  pending_removal: string[];
}

/** Compare-and-set rounds before a PUT of the autoscaler settings gives up (503 CONFIG_CHANGING). */
const AUTOSCALER_WRITE_ATTEMPTS = 8;

/**
 * The fleet and its autoscaler as SREs see and steer them (SPEC 9.1). The
 * admin app never talks to Kubernetes: it sets the plan in Redis (planFleet)
 * and the reconciler's fleet-step job carries it out.
 */
export class AdminFleetService {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly fleet: FleetScripts,
    private readonly settings: FleetSettings,
    private readonly metrics: PoolMetrics,
  ) {}

  private guard<T>(work: () => Promise<T>): Promise<T> {
    return guardStore(this.metrics, 'fleet', work);
  }

  /** The StatefulSet size the reconciler last observed and the target it steers to (null before the first fleet step). */
  private async plan(): Promise<{ replicas: number | null; target: number | null }> {
    const [replicas, target] = await this.redis.hmget(this.keys.fleetPlan(), 'replicas', 'target');
    const observed = replicas === null ? null : Number(replicas);
    return { replicas: observed, target: target === null ? observed : Number(target) };
  }

  private async autoscalerSettings(): Promise<AutoscalerSettings> {
    return parseStoredAutoscaler(await this.redis.get(this.keys.autoscalerConfig()), this.settings.autoscaler);
  }

  /** Every pod above the target not yet removed (busy or not), by ordinal. */
  fleetView(): Promise<FleetView> {
    return this.guard(async () => {
      const [{ replicas, target }, pods] = await Promise.all([this.plan(), this.redis.smembers(this.keys.pods())]);
      const prefix = `${this.settings.statefulSet}-`;
      const ordinalOf = (name: string) => (name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)) ? Number(name.slice(prefix.length)) : -1);
      const pending = target === null ? [] : pods.filter((name) => ordinalOf(name) >= target).sort((a, b) => ordinalOf(a) - ordinalOf(b));
      return { replicas, target, pending_removal: pending };
    });
  }

  scale(body: unknown): Promise<FleetView & { previous_target: number; cancelled: number }> {
    const replicas = (body as { replicas?: unknown } | null)?.replicas;
    if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).some((key) => key !== 'replicas')) {
      throw ApiError.badRequest('body must be {"replicas": N}', 'INVALID_REPLICAS');
    }
    if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0 || replicas > MAX_FLEET_REPLICAS) {
      throw ApiError.badRequest(`replicas must be an integer from 0 to ${MAX_FLEET_REPLICAS}`, 'INVALID_REPLICAS');
    }
    return this.guard(async () => {
      const planned = await this.fleet.plan(replicas, 'admin: POST /api/v1/admin/fleet/scale');
      if (!planned) throw ApiError.unavailable('the fleet size is not known yet (the reconciler has not read the StatefulSet)', 'FLEET_UNKNOWN');
      return { ...(await this.fleetView()), previous_target: planned.previousTarget, cancelled: planned.cancelled };
    });
  }

  autoscaler() {
    return this.guard(async () => {
      const [settings, state, { replicas: current, target }] = await Promise.all([
        this.autoscalerSettings(),
        this.redis.hgetall(this.keys.autoscalerState()),
        this.plan(),
      ]);
      const lastDecision = state.last_decision ? (JSON.parse(state.last_decision) as Record<string, unknown>) : null;
      // Free pods and waiting requests are read now (one MULTI, as the autoscaler reads them), so
      // they are shown while the autoscaler is off too, not only after its first decision.
      const demand = await this.fleet.demand(target ?? 0);
      return {
        ...settings,
        current_replicas: current,
        desired_replicas: settings.enabled && state.desired !== undefined ? Number(state.desired) : target,
        free: demand.free,
        waiting: demand.waiting,
        last_decision: lastDecision,
      };
    });
  }

  /** Any subset of the settings; concurrent updates of different fields all land (compare-and-set, retried). */
  putAutoscaler(body: unknown) {
    return this.guard(async () => {
      // Each conflicting round lets at least one writer through, so this many concurrent PUTs all land.
      for (let attempt = 1; attempt <= AUTOSCALER_WRITE_ATTEMPTS; attempt += 1) {
        const stored = await this.redis.get(this.keys.autoscalerConfig());
        const result = validateAutoscalerUpdate(body, parseStoredAutoscaler(stored, this.settings.autoscaler));
        if (!result.ok) throw ApiError.badRequest(result.message, result.code);
        if (await this.fleet.setAutoscalerConfig(JSON.stringify(result.settings), stored ?? '', result.settings.enabled)) return this.autoscaler();
      }
      throw ApiError.unavailable('autoscaler settings keep changing, retry', 'CONFIG_CHANGING');
    });
  }
}
