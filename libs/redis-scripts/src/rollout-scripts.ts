import type Redis from 'ioredis';
import { RedisKeys } from '@smart-router/redis-keys';
import { RolloutRevision, RolloutSpec } from '@smart-router/allocation';
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
    const k = this.keys;
    const reply = (await replicatedScript(this.redis, 'setRollout', this.replication)(
      k.rollout(), k.rolloutRevisions(), k.fleetStream(), JSON.stringify(rollout), now, this.streamMaxLen, reason, event,
    )) as (string | number)[];
    return JSON.parse(String(reply[3])) as RolloutRevision;
  }
}
