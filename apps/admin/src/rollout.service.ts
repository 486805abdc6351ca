import type Redis from 'ioredis';
import { ApiError } from '@smart-router/http';
import { PoolMetrics, guardStore } from '@smart-router/pool-state';
import { GuardrailOutcomes, GuardrailVerdict, MAX_ROLLOUT_VERSIONS, RolloutRevision, guardrailFields, judgeGuardrail, RolloutSpec, RolloutTarget, ScriptCode, TierDocument, parseRollout, parseStoredRollout } from '@smart-router/allocation';
import { RedisKeys } from '@smart-router/redis-keys';
import { RolloutScripts } from '@smart-router/redis-scripts';

/** One version's figures (SPEC 12): its pods now and its counters under rollouts. */
export interface VersionFigures {
  percent: number | null;
  pods: number;
  free: number;
  live_calls: number;
  allocations: number;
  spills: number;
  connect_timeouts: number;
  connected: number;
  releases: Record<string, number>;
}

export interface RolloutView {
  revision: number | null;
  previous: number | null;
  at: number | null;
  targets: RolloutTarget[];
  assignment: string | null;
  guardrail: RolloutRevision['guardrail'];
  versions: Record<string, VersionFigures>;
  /** The guardrail's view of the live revision (the reconciler's job acts on the same judgement). */
  guardrail_state: GuardrailVerdict;
}

/** Compare-and-set rounds before a promote gives up (503 CONFIG_CHANGING), as for the autoscaler settings. */
const PROMOTE_ATTEMPTS = 8;
/** A Kubernetes label value, as parseRollout checks a target's version. */
const VERSION = /^(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/**
 * The split between agent versions as operators see and set it (SPEC 12).
 * A PUT stores a new immutable revision (setRollout, with its event) and moves
 * no replicas; allocations draw from it from the next one on.
 */
export class AdminRolloutService {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly scripts: RolloutScripts,
    private readonly metrics: PoolMetrics,
  ) {}

  private guard<T>(work: () => Promise<T>): Promise<T> {
    return guardStore(this.metrics, 'rollout', work);
  }

  view(): Promise<RolloutView> {
    return this.guard(async () => {
      const [raw, known, tierText] = await Promise.all([
        this.redis.get(this.keys.rollout()),
        this.redis.smembers(this.keys.versions()),
        this.redis.get(this.keys.tierConfig()),
      ]);
      const live = parseStoredRollout(raw);
      const tiers = tierText ? (JSON.parse(tierText) as TierDocument).tiers : {};
      const versions = [...new Set([...(live?.targets.map((target) => target.version) ?? []), ...known])];
      const figures: Record<string, VersionFigures> = {};
      const outcomes: Record<string, GuardrailOutcomes> = {};
      for (const version of versions) {
        const { view, stats } = await this.figures(version, live?.targets.find((target) => target.version === version)?.percent ?? null, tiers);
        figures[version] = view;
        if (live) {
          const [connected, timeouts] = guardrailFields(live.revision);
          outcomes[version] = { connected: Number(stats[connected] ?? 0), connect_timeouts: Number(stats[timeouts] ?? 0) };
        }
      }
      return {
        revision: live?.revision ?? null,
        previous: live?.previous ?? null,
        at: live?.at ?? null,
        targets: live?.targets ?? [],
        assignment: live?.assignment ?? null,
        guardrail: live?.guardrail ?? null,
        versions: figures,
        guardrail_state: judgeGuardrail(live, outcomes),
      };
    });
  }

  /** Pods, free pods and live calls read now (one pipeline per version); counters from rollout:stats. */
  private async figures(version: string, percent: number | null, tiers: TierDocument['tiers']): Promise<{ view: VersionFigures; stats: Record<string, string> }> {
    const k = this.keys;
    const [pods, stats] = await Promise.all([this.redis.smembers(k.versionPods(version)), this.redis.hgetall(k.rolloutStats(version))]);
    const read = this.redis.pipeline();
    for (const name of pods) {
      read.hget(k.pod(name), 'tier');
      read.scard(k.podCalls(name));
    }
    const replies = ((await read.exec()) ?? []).map(([error, value]) => {
      if (error) throw error;
      return value;
    });
    const check = this.redis.pipeline();
    let liveCalls = 0;
    pods.forEach((name, index) => {
      const tier = (replies[index * 2] as string | null) ?? '';
      liveCalls += Number(replies[index * 2 + 1] ?? 0);
      if (tiers[tier]?.type === 'shared') check.zscore(k.poolAvailable(tier), name);
      else check.sismember(k.poolAvailable(tier), name);
    });
    let free = 0;
    const checks = pods.length > 0 ? ((await check.exec()) ?? []) : [];
    checks.forEach(([error, value], index) => {
      if (error) throw error;
      const tier = (replies[index * 2] as string | null) ?? '';
      const spec = tiers[tier];
      if (spec?.type === 'shared') free += value !== null && Number(value) < (spec.max_concurrent ?? 1) ? 1 : 0;
      else free += Number(value) === 1 ? 1 : 0;
    });
    const releases: Record<string, number> = {};
    for (const [field, value] of Object.entries(stats)) {
      if (field.startsWith('released:')) releases[field.slice('released:'.length)] = Number(value);
    }
    const view = {
      percent, pods: pods.length, free, live_calls: liveCalls,
      allocations: Number(stats.allocations ?? 0), spills: Number(stats.spills ?? 0), connect_timeouts: Number(stats.connect_timeouts ?? 0),
      connected: Number(stats.connected ?? 0), releases,
    };
    return { view, stats };
  }

  /**
   * Sends 100 % of new calls to `version` from the next allocation (a new
   * revision, event rollout.promoted); the other targets stay known at 0 %.
   * Built on the live revision with a compare-and-set, so a concurrent PUT is
   * never overwritten unseen. The same script step writes the replica move
   * the reconciler carries out call-safely (rollout:move; apps/reconciler/src/rollout-move.ts).
   */
  promote(body: unknown): Promise<RolloutView> {
    const version = (body as { version?: unknown } | null)?.version;
    if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).some((key) => key !== 'version')) {
      throw ApiError.badRequest('body must be {"version": "..."}', 'INVALID_BODY');
    }
    if (typeof version !== 'string' || !VERSION.test(version)) throw ApiError.badRequest('version must be a Kubernetes label value', 'INVALID_VERSION');
    return this.guard(async () => {
      for (let attempt = 1; attempt <= PROMOTE_ATTEMPTS; attempt += 1) {
        const live = parseStoredRollout(await this.redis.get(this.keys.rollout()));
        const others = (live?.targets ?? []).filter((target) => target.version !== version);
        const spec: RolloutSpec = {
          targets: [{ version, percent: 100 }, ...others.slice(0, MAX_ROLLOUT_VERSIONS - 1).map((target) => ({ version: target.version, percent: 0 }))],
          assignment: live?.assignment ?? 'random',
          guardrail: live?.guardrail ?? null,
        };
        // A version with no pod and no StatefulSet the reconciler learned (rollout:statefulsets) could
        // never get a replica: its move would wait forever with the autoscaler paused. The script checks
        // it in the same step as the write (no pod can go between): 409, nothing changed.
        const stored = await this.scripts.setIfLive(spec, live?.revision ?? 0, 'admin: POST /api/v1/admin/rollout/promote', 'rollout.promoted', Date.now(), version);
        if (stored === ScriptCode.UnknownVersion) {
          throw new ApiError(409, 'UNKNOWN_VERSION', `no pod carries version ${JSON.stringify(version)} and no StatefulSet of it is known: nothing could serve it`);
        }
        if (stored !== ScriptCode.ConfigChanged) return this.view();
      }
      throw ApiError.unavailable('the rollout keeps changing, retry', 'CONFIG_CHANGING');
    });
  }

  /** Returns to the previous revision's split as a new revision (event rollout.rolled_back); 409 when there is none. */
  rollback(): Promise<RolloutView> {
    return this.guard(async () => {
      const stored = await this.scripts.rollback('admin: POST /api/v1/admin/rollout/rollback');
      if (stored === ScriptCode.NoPreviousRevision) throw new ApiError(409, 'NO_PREVIOUS_REVISION', 'the live rollout has no previous revision to return to');
      return this.view();
    });
  }

  /** Every PUT is a new revision, even one equal to the live split (its event records who set it and when). */
  put(body: unknown): Promise<RolloutView> {
    const parsed = parseRollout(body);
    if (!parsed.ok) throw ApiError.badRequest(parsed.message, parsed.code);
    return this.guard(async () => {
      await this.scripts.set(parsed.rollout, 'admin: PUT /api/v1/admin/rollout');
      return this.view();
    });
  }
}
