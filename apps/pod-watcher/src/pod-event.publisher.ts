import type Redis from 'ioredis';
import { PodEvent, encodePodEvent } from '@smart-router/events';
import { RedisKeys } from '@smart-router/redis-keys';

/** The only code of the watcher that writes to Redis: one XADD per pod change. */
export class PodEventPublisher {
  constructor(private readonly redis: Redis, private readonly keys: RedisKeys, private readonly maxLen: number) {}

  async publish(event: PodEvent): Promise<string> {
    const id = await this.redis.xadd(this.keys.podStream(), 'MAXLEN', '~', this.maxLen, '*', ...encodePodEvent(event));
    return id ?? '';
  }

  /** Lets the admin status show who leads, with a TTL so a dead leader disappears. */
  async heartbeat(identity: string, term: number, ttlMs: number): Promise<void> {
    const key = this.keys.watcherLeader();
    await this.redis.multi().hset(key, { identity, term, renewed_at: Date.now() }).pexpire(key, ttlMs).exec();
  }
}
