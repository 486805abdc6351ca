import type Redis from 'ioredis';
import { RedisKeys } from '@smart-router/redis-keys';
import { ReplicationLimits, replicatedScript } from './pool-scripts';
import { defineScripts } from './script-loader';

/** What claimWebhookReplay found: this request is the first, or the record the first one left. */
export type ReplayClaimResult = { claimed: true } | { claimed: false; record: string };

/**
 * The typed entry point to the replay memory of signed answer webhooks
 * (SPEC 10.2): claim before answering, record the answer after. Keys are
 * given as digests (RedisKeys.webhookReplay); one or two per request, the
 * second passed as the first again when there is only one. Redis errors
 * propagate: the caller fails closed.
 */
export class WebhookReplayScripts {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly limits: ReplicationLimits = {},
  ) {
    defineScripts(redis);
  }

  private pair(digests: readonly string[]): [string, string] {
    if (digests.length < 1 || digests.length > 2) throw new Error(`a request has one or two replay identities, not ${digests.length}`);
    return [this.keys.webhookReplay(digests[0]), this.keys.webhookReplay(digests[digests.length - 1])];
  }

  async claim(digests: readonly string[], marker: string, ttlSeconds: number): Promise<ReplayClaimResult> {
    const reply = await replicatedScript(this.redis, 'claimWebhookReplay', this.limits)(...this.pair(digests), marker, ttlSeconds);
    const [claimed, record] = reply as [number, string];
    return Number(claimed) === 1 ? { claimed: true } : { claimed: false, record: String(record) };
  }

  /** Replaces this request's claim with its answer; the number of records written (0: the claim was gone). */
  async record(digests: readonly string[], marker: string, answer: string): Promise<number> {
    return Number(await replicatedScript(this.redis, 'recordWebhookReplay', this.limits)(...this.pair(digests), marker, answer));
  }
}
