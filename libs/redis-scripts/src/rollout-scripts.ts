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

  /**
   * Like set, only if `basedOn` is still the live revision (0 = none): ConfigChanged otherwise. A promote
   * (event rollout.promoted) writes its replica move in the same step; with `promoted`, the step first
   * refuses (UnknownVersion) a version no pod carries and no known StatefulSet serves.
   */
  async setIfLive(rollout: RolloutSpec, basedOn: number, reason: string, event: string, now = Date.now(), promoted?: string): Promise<RolloutRevision | ScriptCode> {
    return this.write(JSON.stringify(rollout), reason, event, String(basedOn), false, now, '', event === 'rollout.promoted', promoted);
  }

  /** Stores the live revision's previous split again as a new revision: NoPreviousRevision when there is none. */
  async rollback(reason: string, now = Date.now()): Promise<RolloutRevision | ScriptCode> {
    return this.write('', reason, 'rollout.rolled_back', '', true, now, '', true);
  }

  /**
   * The guardrail's rollback (SPEC 12): the same step as rollback, only if
   * `judged` is still the live revision (ConfigChanged otherwise), with
   * cause=guardrail on its rollout.rolled_back event.
   */
  async guardrailRollback(judged: number, reason: string, now = Date.now()): Promise<RolloutRevision | ScriptCode> {
    return this.write('', reason, 'rollout.rolled_back', String(judged), true, now, 'guardrail', true);
  }

  /**
   * Merges `fields` into the replica move of `revision` ('update'), deletes
   * it ('done'), or deletes it with a rollout.move_abandoned event
   * ('abandon'): only while rollout:move is still that revision's, so a move
   * a newer promote or rollback wrote is never touched. True when applied.
   */
  async settleMove(revision: number, operation: 'update' | 'done' | 'abandon', fields: { cover?: number; seen_at?: number } = {}, reason = '', now = Date.now()): Promise<boolean> {
    const k = this.keys;
    const reply = await replicatedScript(this.redis, 'settleRolloutMove', this.replication)(
      k.rolloutMove(), k.fleetStream(), revision, operation, fields.cover ?? '', fields.seen_at ?? '', now, this.streamMaxLen, reason,
    );
    return Number(reply) === 1;
  }

  /**
   * `move`: a promote or rollback, whose replica move (rollout:move) the
   * script writes in the same step as the revision (SPEC 12: a plain PUT
   * moves no replicas, and clears any pending move).
   */
  private async write(rollout: string, reason: string, event: string, basedOn: string, rollback: boolean, now: number, cause = '', move = false, promoted?: string): Promise<RolloutRevision | ScriptCode> {
    const k = this.keys;
    // KEYS[5] is only read for a promote; the others name the unlabelled pods' key and leave it untouched.
    const reply = await replicatedScript(this.redis, 'setRollout', this.replication)(
      k.rollout(), k.rolloutRevisions(), k.fleetStream(), k.rolloutMove(), k.versionPods(promoted ?? ''), k.versionStatefulSets(),
      rollout, now, this.streamMaxLen, reason, event, basedOn, rollback ? '1' : '', cause, move ? '1' : '', promoted === undefined ? '' : '1', promoted ?? '',
    );
    if (typeof reply === 'number') return reply as ScriptCode;
    return JSON.parse(String((reply as (string | number)[])[3])) as RolloutRevision;
  }
}
