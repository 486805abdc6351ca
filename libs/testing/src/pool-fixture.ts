import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { SEED_TIER_CONFIG, TierConfig, parseTierConfig } from '@smart-router/config';
import { RedisKeys } from '@smart-router/redis-keys';
import { DEFAULT_CHAIN } from '@smart-router/config';
import { planTiers, toTierDocument } from '@smart-router/allocation';
import { PoolScripts, ScriptLimits } from '@smart-router/redis-scripts';

export const SEED_PODS = ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4'];

export interface PoolFixture {
  redis: Redis;
  keys: RedisKeys;
  scripts: PoolScripts;
  tiers: TierConfig;
  uids: Map<string, string>;
  close(): Promise<void>;
}

let counter = 0;

/** A unique key prefix per test, so tests share one redis-server safely. */
export function uniquePrefix(label = 't'): string {
  counter += 1;
  return `${label}${process.pid}x${counter}x${Date.now().toString(36)}:`;
}

/**
 * Registers pods the way the reconciler does (same scripts), with the seeds'
 * tier config by default: voice-agent-0 gold, -1 standard, -2 basic, -3 and -4
 * standard (beyond the targets).
 */
export async function createPoolFixture(options: {
  url: string;
  prefix?: string;
  tierConfig?: string;
  pods?: string[];
  extraTier?: string;
  /** A client to use instead of one on `url` (a cluster, a sentinel-managed primary); closed with the fixture. */
  client?: Redis;
  /** Extra script limits (replica acknowledgements). */
  limits?: Partial<ScriptLimits>;
}): Promise<PoolFixture> {
  const keys = new RedisKeys(options.prefix ?? uniquePrefix());
  const tiers = parseTierConfig(options.tierConfig ?? SEED_TIER_CONFIG);
  const extra = options.extraTier ?? 'standard';
  const redis = options.client ?? new Redis(options.url, { maxRetriesPerRequest: 1 });
  const scripts = new PoolScripts(redis, keys, {
    callTtlSeconds: 3600, tombstoneTtlSeconds: 60, streamMaxLen: 10000, ...options.limits,
  });
  await redis.set(keys.tierConfig(), JSON.stringify(toTierDocument(tiers, extra, DEFAULT_CHAIN)));
  const pods = options.pods ?? SEED_PODS;
  const plan = planTiers(pods.map((name) => ({ name })), tiers, extra);
  const uids = new Map<string, string>();
  for (const name of pods) {
    const uid = randomUUID();
    uids.set(name, uid);
    await scripts.upsertPod({ name, uid, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null });
    if ((await redis.get(keys.podTier(name))) !== plan.get(name)) throw new Error(`fixture: ${name} did not land in its planned tier ${plan.get(name)}`);
  }
  await redis.set(keys.epoch(), randomUUID());
  return { redis, keys, scripts, tiers, uids, close: async () => void (await redis.quit()) };
}
