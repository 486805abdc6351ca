import type Redis from 'ioredis';
import { LoggerService } from '@nestjs/common';
import { Counter } from '@opentelemetry/api';
import { GUARDRAIL_REASON_PREFIX, GuardrailOutcomes, GuardrailVerdict, RolloutRevision, guardrailFields, judgeGuardrail, parseStoredRollout } from '@smart-router/allocation';
import { RedisKeys } from '@smart-router/redis-keys';
import { RolloutScripts } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';

export interface GuardrailReport {
  verdict: GuardrailVerdict;
  /** The revision the rollback stored (null = none this run). */
  rolledBackTo: number | null;
}

/** Reads the live revision and, for each of its targets, the outcomes counted under it. */
export async function readGuardrail(redis: Redis, keys: RedisKeys): Promise<{ live: RolloutRevision | null; outcomes: Record<string, GuardrailOutcomes> }> {
  const live = parseStoredRollout(await redis.get(keys.rollout()));
  const outcomes: Record<string, GuardrailOutcomes> = {};
  if (!live) return { live, outcomes };
  const [connected, timeouts] = guardrailFields(live.revision);
  const pipeline = redis.pipeline();
  for (const target of live.targets) pipeline.hmget(keys.rolloutStats(target.version), connected, timeouts);
  const replies = (await pipeline.exec()) ?? [];
  live.targets.forEach((target, index) => {
    const [error, values] = replies[index] ?? [];
    if (error) throw error;
    const [c, t] = (values as (string | null)[]) ?? [];
    outcomes[target.version] = { connected: Number(c ?? 0), connect_timeouts: Number(t ?? 0) };
  });
  return { live, outcomes };
}

/**
 * The rollout guardrail (SPEC 12; a BullMQ scheduler every
 * `JOBS.rolloutGuardrail.everyMs` × JOB_INTERVAL_SCALE, 2 s in production,
 * well inside the 10 s the SPEC allows). It judges the live revision from the
 * counters the connect and connect-timeout release scripts keep per version
 * and revision (judgeGuardrail) and, when a canary trips it, rolls back with
 * the same script as POST …/rollback, compare-and-set on the revision it
 * judged: a split an operator changed meanwhile is never rolled back, and a
 * second replica running the same job (BullMQ is at-least-once) finds the
 * revision changed and does nothing. The rollback revision carries the
 * reason `guardrail: …`, which holds the guardrail until an operator sets a
 * new split (see judgeGuardrail).
 *
 * Metrics, as of the last run of this replica: smart_router_rollout_percent,
 * smart_router_rollout_known_outcomes and
 * smart_router_rollout_connect_failure_ratio by version,
 * smart_router_rollout_guardrail_tripped (1 while the live revision is the
 * guardrail's rollback: the alert), smart_router_rollout_rollbacks_total.
 */
export class GuardrailJob {
  private readonly rollbacks: Counter;
  private last: { live: RolloutRevision | null; outcomes: Record<string, GuardrailOutcomes>; verdict: GuardrailVerdict } | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly scripts: RolloutScripts,
    telemetry: Telemetry,
    private readonly logger: LoggerService,
  ) {
    const meter = telemetry.meter();
    this.rollbacks = meter.createCounter('smart_router_rollout_rollbacks_total', { description: 'Rollouts rolled back by the guardrail (SPEC 12), by failing version' });
    meter.createObservableGauge('smart_router_rollout_percent', { description: 'Percent of new calls each agent version gets in the live rollout revision' })
      .addCallback((result) => {
        for (const target of this.last?.live?.targets ?? []) result.observe(target.percent, { version: target.version });
      });
    meter.createObservableGauge('smart_router_rollout_known_outcomes', { description: 'Calls of the live revision with a known outcome (connected or connect_timeout), by version' })
      .addCallback((result) => {
        for (const [version, outcomes] of Object.entries(this.last?.outcomes ?? {})) result.observe(outcomes.connected + outcomes.connect_timeouts, { version });
      });
    meter.createObservableGauge('smart_router_rollout_connect_failure_ratio', { description: 'connect_timeout releases per known outcome in the live revision, by version' })
      .addCallback((result) => {
        for (const [version, outcomes] of Object.entries(this.last?.outcomes ?? {})) {
          const known = outcomes.connected + outcomes.connect_timeouts;
          if (known > 0) result.observe(outcomes.connect_timeouts / known, { version });
        }
      });
    meter.createObservableGauge('smart_router_rollout_guardrail_tripped', { description: '1 while the live rollout revision is the guardrail\'s own rollback (until an operator sets a new split)' })
      .addCallback((result) => result.observe(this.last?.verdict.state === 'held' ? 1 : 0));
  }

  async run(now = Date.now()): Promise<GuardrailReport> {
    const { live, outcomes } = await readGuardrail(this.redis, this.keys);
    const verdict = judgeGuardrail(live, outcomes);
    this.last = { live, outcomes, verdict };
    if (verdict.state !== 'tripped' || !live || verdict.failing === null) return { verdict, rolledBackTo: null };
    const canary = verdict.canaries.find((entry) => entry.version === verdict.failing);
    const reason = `${GUARDRAIL_REASON_PREFIX} version ${JSON.stringify(verdict.failing)} failed to connect ${pct(canary?.failure_rate)} of ${canary?.known} calls vs ${pct(verdict.stable_failure_rate ?? 0)} for ${JSON.stringify(verdict.stable)} (max excess ${live.guardrail?.max_excess_pp} points) in revision ${live.revision}`;
    const stored = await this.scripts.guardrailRollback(live.revision, reason, now);
    if (typeof stored === 'number') {
      // Changed meanwhile (an operator, another replica) or nothing to return to: the next run judges again.
      this.logger.warn(`guardrail tripped on revision ${live.revision} but did not roll back (code ${stored})`, 'Guardrail');
      return { verdict, rolledBackTo: null };
    }
    this.rollbacks.add(1, { version: verdict.failing });
    this.logger.warn(`rolled back to revision ${stored.revision}: ${reason}`, 'Guardrail');
    const after = await readGuardrail(this.redis, this.keys);
    this.last = { ...after, verdict: judgeGuardrail(after.live, after.outcomes) };
    return { verdict, rolledBackTo: stored.revision };
  }
}

const pct = (ratio: number | null | undefined) => `${Math.round((ratio ?? 0) * 1000) / 10}%`;
