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
  /** The same pool's scripts (same connection and keys) with other limits, e.g. a shorter WAIT. */
  scriptsWith(limits: Partial<ScriptLimits>): PoolScripts;
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
  /** A pod's UID (default: random). Pass the simulated cluster's when its agents authenticate as their pods (the pod UID is checked). */
  uidOf?: (name: string) => string | undefined;
  extraTier?: string;
  /** A client to use instead of one on `url` (a cluster, a sentinel-managed primary); closed with the fixture. */
  client?: Redis;
  /** Extra script limits (replica acknowledgements). */
  limits?: Partial<ScriptLimits>;
  /** CONNECT_TIMEOUT_SECONDS in ms for the fixture's scripts (default 0 = no deadline). */
  connectTimeoutMs?: number;
}): Promise<PoolFixture> {
  const keys = new RedisKeys(options.prefix ?? uniquePrefix());
  const tiers = parseTierConfig(options.tierConfig ?? SEED_TIER_CONFIG);
  const extra = options.extraTier ?? 'standard';
  const redis = options.client ?? new Redis(options.url, { maxRetriesPerRequest: 1 });
  const limits: ScriptLimits = {
    callTtlSeconds: 3600, tombstoneTtlSeconds: 60, streamMaxLen: 10000, connectTimeoutMs: options.connectTimeoutMs ?? 0, ...options.limits,
  };
  const scripts = new PoolScripts(redis, keys, limits);
  await redis.set(keys.tierConfig(), JSON.stringify(toTierDocument(tiers, extra, DEFAULT_CHAIN)));
  const pods = options.pods ?? SEED_PODS;
  const plan = planTiers(pods.map((name) => ({ name })), tiers, extra);
  const uids = new Map<string, string>();
  for (const name of pods) {
    const uid = options.uidOf?.(name) ?? randomUUID();
    uids.set(name, uid);
    await scripts.upsertPod({ name, uid, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null });
    if ((await redis.get(keys.podTier(name))) !== plan.get(name)) throw new Error(`fixture: ${name} did not land in its planned tier ${plan.get(name)}`);
  }
  await redis.set(keys.epoch(), randomUUID());
  return {
    redis, keys, scripts, tiers, uids,
    scriptsWith: (overrides) => new PoolScripts(redis, keys, { ...limits, ...overrides }),
    close: async () => void (await redis.quit()),
  };
}

/**
 * Every key under the fixture's prefix with its content: "wrote nothing" or
 * "changed nothing" means this is equal before and after.
 */
export async function snapshotState(pool: Pick<PoolFixture, 'redis' | 'keys'>, ignore: readonly string[] = []): Promise<Record<string, unknown>> {
  const state: Record<string, unknown> = {};
  for (const key of (await pool.redis.keys(`${pool.keys.prefix}*`)).sort()) {
    if (ignore.includes(key)) continue;
    const type = await pool.redis.type(key);
    if (type === 'string') state[key] = await pool.redis.get(key);
    else if (type === 'hash') state[key] = await pool.redis.hgetall(key);
    else if (type === 'set') state[key] = (await pool.redis.smembers(key)).sort();
    else if (type === 'zset') state[key] = await pool.redis.zrange(key, 0, -1, 'WITHSCORES');
    else if (type === 'list') state[key] = await pool.redis.lrange(key, 0, -1);
    else if (type === 'stream') state[key] = await pool.redis.xrange(key, '-', '+');
    else state[key] = type;
  }
  return state;
}
