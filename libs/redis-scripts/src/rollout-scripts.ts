import type Redis from 'ioredis';
import { RedisKeys } from '@smart-router/redis-keys';
import { RolloutRevision, RolloutSpec, ScriptCode } from '@smart-router/allocation';
import { ReplicationLimits, replicatedScript } from './pool-scripts';
import { defineScripts } from './script-loader';

/** The typed entry point to the rollout script (SPEC 12); Redis errors propagate. */
export class RolloutScripts {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly streamMaxLen: number,
    private readonly replication: ReplicationLimits = {},
  ) {
    defineScripts(redis);
  }

  /** Stores `rollout` (validated by parseRollout) as the next revision, with its event. */
  async set(rollout: RolloutSpec, reason: string, event = 'rollout.updated', now = Date.now()): Promise<RolloutRevision> {
    return (await this.write(JSON.stringify(rollout), reason, event, '', false, now)) as RolloutRevision;
  }

  /** Like set, only if `basedOn` is still the live revision (0 = none): ConfigChanged otherwise. */
  async setIfLive(rollout: RolloutSpec, basedOn: number, reason: string, event: string, now = Date.now()): Promise<RolloutRevision | ScriptCode> {
    return this.write(JSON.stringify(rollout), reason, event, String(basedOn), false, now);
  }

  /** Stores the live revision's previous split again as a new revision: NoPreviousRevision when there is none. */
  async rollback(reason: string, now = Date.now()): Promise<RolloutRevision | ScriptCode> {
    return this.write('', reason, 'rollout.rolled_back', '', true, now);
  }

  /**
   * The guardrail's rollback (SPEC 12): the same step as rollback, only if
   * `judged` is still the live revision (ConfigChanged otherwise), with
   * cause=guardrail on its rollout.rolled_back event.
   */
  async guardrailRollback(judged: number, reason: string, now = Date.now()): Promise<RolloutRevision | ScriptCode> {
    return this.write('', reason, 'rollout.rolled_back', String(judged), true, now, 'guardrail');
  }

  /**
   * After a promote or rollback (SPEC 12): when the stored split sends 100 %
   * to one version, asks the reconciler to move replicas to it call-safely
   * (rollout:move, carried out by its fleet step); otherwise withdraws any
   * pending move (a split that keeps several versions moves no replicas).
   * A move whose revision is no longer live is abandoned by the reconciler.
   */
  async requestMove(stored: RolloutRevision, now = Date.now()): Promise<void> {
    const whole = stored.targets.find((target) => target.percent === 100);
    if (whole) await this.redis.set(this.keys.rolloutMove(), JSON.stringify({ version: whole.version, revision: stored.revision, at: now }));
    else await this.redis.del(this.keys.rolloutMove());
  }

  private async write(rollout: string, reason: string, event: string, basedOn: string, rollback: boolean, now: number, cause = ''): Promise<RolloutRevision | ScriptCode> {
    const k = this.keys;
    const reply = await replicatedScript(this.redis, 'setRollout', this.replication)(
      k.rollout(), k.rolloutRevisions(), k.fleetStream(), rollout, now, this.streamMaxLen, reason, event, basedOn, rollback ? '1' : '', cause,
    );
    if (typeof reply === 'number') return reply as ScriptCode;
    return JSON.parse(String((reply as (string | number)[])[3])) as RolloutRevision;
  }
}
