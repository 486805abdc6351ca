import type Redis from 'ioredis';
import { MediaTarget, MediaUrlSigner } from '@smart-router/allocation';
import { RedisKeys } from '@smart-router/redis-keys';

/**
 * ws_urls as callers receive them and as the edge checks them (SPEC 10.1).
 * Signing and verifying is MediaUrlSigner (libs/allocation); this adds the
 * two Redis reads they need, and is the only code that makes them:
 * - `allocated_at` of a repeated allocation, so a provider's retry gets the
 *   very same URL (same expiry, same signature) as the first answer;
 * - the call record's `pod_name` and `allocation_id` when the edge asks
 *   whether a media URL may still open a socket.
 */
export class MediaUrls {
  constructor(
    private readonly signer: MediaUrlSigner,
    private readonly baseUrl: string,
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  get signed(): boolean {
    return this.signer.enabled;
  }

  /**
   * The ws_url of an allocation. `allocatedAtMs` is known for a fresh
   * allocation (the time handed to the script); null means "read it from the
   * call record" (a repeat, or a hand-off to a waiting request). A failed
   * read throws: the caller counts it and answers 503 (a Redis error is never
   * read as "nothing recorded"); the allocation stands, and a retry of the
   * same call_sid answers it.
   */
  async wsUrl(target: MediaTarget, allocatedAtMs: number | null): Promise<string> {
    if (!this.signer.enabled) return this.baseUrl + this.signer.path(target, 0);
    const now = Date.now();
    let allocatedAt = allocatedAtMs;
    if (allocatedAt === null) {
      const recorded = await this.redis.hget(this.keys.call(target.callSid), 'allocated_at');
      allocatedAt = recorded !== null && /^\d+$/.test(recorded) ? Number(recorded) : now;
    }
    return this.baseUrl + this.signer.path(target, this.signer.expiryFor(allocatedAt, now));
  }

  /**
   * May a WebSocket upgrade for `uri` (the edge's original request URI) go to
   * its pod? True only for a valid, unexpired signature of a call that is
   * still on that pod under that allocation_id; with no secret configured,
   * any well-formed seed path (the seed's behaviour). Throws when Redis does
   * not answer: the caller fails closed (503), never reads that as "yes".
   */
  async authorize(uri: string | undefined): Promise<boolean> {
    if (!uri) return false;
    const path = uri.split('?', 1)[0];
    const check = this.signer.verify(path, Date.now());
    if (!check.ok) return false;
    if (!this.signer.enabled) return true;
    const [podName, allocationId] = await this.redis.hmget(this.keys.call(check.target.callSid), 'pod_name', 'allocation_id');
    if (podName !== check.target.podName) return false;
    // `0` in the URL stands for a record with no allocation_id (written before fencing).
    return (allocationId ?? '') === (check.target.allocationId === null ? '' : String(check.target.allocationId));
  }
}
