import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { WebhookReplayScripts } from './webhook-replay-scripts';

/** claimWebhookReplay-2.lua and recordWebhookReplay-2.lua against a real Redis (SPEC 10.2). */
describe('webhook replay memory scripts', () => {
  let pool: PoolFixture;
  let replays: WebhookReplayScripts;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    replays = new WebhookReplayScripts(pool.redis, pool.keys);
  });
  afterEach(() => pool.close());

  it('the first claim wins with its TTL; a copy gets the stored record; the answer replaces the claim and keeps the TTL', async () => {
    expect(await replays.claim(['n1'], 'claim-a', 120)).toEqual({ claimed: true });
    expect(await pool.redis.ttl(pool.keys.webhookReplay('n1'))).toBeGreaterThan(110);
    expect(await replays.claim(['n1'], 'claim-b', 120)).toEqual({ claimed: false, record: 'claim-a' });
    expect(await replays.record(['n1'], 'claim-b', 'answer-b')).toBe(0);
    expect(await replays.record(['n1'], 'claim-a', 'answer-a')).toBe(1);
    expect(await replays.claim(['n1'], 'claim-c', 120)).toEqual({ claimed: false, record: 'answer-a' });
    expect(await pool.redis.ttl(pool.keys.webhookReplay('n1'))).toBeGreaterThan(110);
  });

  it('two identities: either one seen before is a replay; both hold the answer', async () => {
    expect(await replays.claim(['token-1', 'sig-1'], 'claim-a', 60)).toEqual({ claimed: true });
    expect(await replays.record(['token-1', 'sig-1'], 'claim-a', 'answer-a')).toBe(2);
    // The token dropped or changed: the signature still matches.
    expect(await replays.claim(['sig-1'], 'claim-b', 60)).toEqual({ claimed: false, record: 'answer-a' });
    expect(await replays.claim(['token-forged', 'sig-1'], 'claim-c', 60)).toEqual({ claimed: false, record: 'answer-a' });
    // Nothing was written for the forged token.
    expect(await pool.redis.exists(pool.keys.webhookReplay('token-forged'))).toBe(0);
  });

  it('concurrent claims of one identity: exactly one is first', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, index) => replays.claim(['burst'], `claim-${index}`, 60)));
    expect(results.filter((result) => result.claimed)).toHaveLength(1);
  });

  it('a Redis error propagates (the caller fails closed), never a "first"', async () => {
    await pool.redis.hset(pool.keys.webhookReplay('broken'), 'a', 'b');
    await expect(replays.claim(['broken'], 'claim-a', 60)).rejects.toThrow(/WRONGTYPE/);
  });
});
