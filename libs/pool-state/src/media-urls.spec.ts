import Redis from 'ioredis';
import { MediaUrlSigner } from '@smart-router/allocation';
import { Telemetry } from '@smart-router/telemetry';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { CallAllocator, REFUSALS } from './call-allocator';
import { MediaUrls } from './media-urls';
import { PoolMetrics } from './pool-metrics';
import { WaitWakeups } from './wait-wakeups';

/**
 * A signed ws_url of a repeated allocation reads the call's allocated_at from
 * Redis. When that read fails the answer is 503 REDIS_UNAVAILABLE, counted,
 * never a URL signed from some other time (a Redis error is never "nothing
 * recorded"). Real redis-server; the media connection is a real client whose
 * connection is closed.
 */
describe('MediaUrls when its Redis read fails', () => {
  let pool: PoolFixture;
  let mediaRedis: Redis;
  let telemetry: Telemetry;
  let wakeups: WaitWakeups;
  let allocator: CallAllocator;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    mediaRedis = new Redis(sharedRedisUrl(), { maxRetriesPerRequest: 0 });
    telemetry = Telemetry.start('media-urls-spec');
    wakeups = new WaitWakeups(() => new Redis(sharedRedisUrl()), pool.keys.waitChannel());
    const media = new MediaUrls(new MediaUrlSigner(['media-urls-spec-secret-01'], 120), 'wss://buddy.example.test', mediaRedis, pool.keys);
    allocator = new CallAllocator(pool.scripts, new PoolMetrics(telemetry), telemetry, media, wakeups);
  });
  afterEach(async () => {
    await wakeups.close();
    if (mediaRedis.status !== 'end') await mediaRedis.quit();
    await pool.close();
  });

  const request = (callSid: string) => ({ callSid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
  const counted = async () => {
    const text = await telemetry.prometheusText();
    const match = text.match(/smart_router_redis_errors_total\{[^}]*operation="media_url"[^}]*\} (\d+)/);
    return match ? Number(match[1]) : 0;
  };

  it('a repeat whose allocated_at cannot be read is 503 REDIS_UNAVAILABLE, counted; the allocation stands', async () => {
    const first = await allocator.tryAllocate(request('media-fail-1'));
    if (!first.ok) throw new Error(`allocate: ${first.refusal.body.code}`);
    const repeat = await allocator.tryAllocate(request('media-fail-1'));
    expect(repeat).toEqual({ ok: true, value: expect.objectContaining({ wsUrl: first.value.wsUrl, wasExisting: true }) });

    const before = await counted();
    await mediaRedis.quit();
    expect(await allocator.tryAllocate(request('media-fail-1'))).toEqual({ ok: false, refusal: REFUSALS.redisUnavailable });
    expect(await counted()).toBe(before + 1);
    // Nothing was undone: the call keeps its pod, and a retry once Redis answers gets the same URL.
    expect(await pool.redis.hget(pool.keys.call('media-fail-1'), 'pod_name')).toBe(first.value.podName);
  });
});
