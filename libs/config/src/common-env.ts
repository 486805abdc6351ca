import { readTrustedProxies } from './access';
import { ConfigError, EnvReader } from './env';
import { SEED_TIER_CONFIG, TierConfig, parseTierConfig } from './tier-config';

/** The pools a call with no merchant config walks (SPEC section 1). */
export const DEFAULT_CHAIN = ['standard', 'overflow', 'basic'];

/**
 * Where Redis is: one server (`REDIS_URL`), a Sentinel-managed primary
 * (`REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`) or a Redis Cluster
 * (`REDIS_CLUSTER_NODES`). Exactly one applies; the client discovers the rest.
 */
export type RedisTopology =
  | { kind: 'standalone' }
  | { kind: 'sentinel'; sentinels: { host: string; port: number }[]; masterName: string; sentinelPassword?: string }
  | { kind: 'cluster'; nodes: { host: string; port: number }[] };

export interface RedisSettings {
  /** The server in standalone mode; with Sentinel or Cluster only its credentials and TLS scheme are used. */
  url: string;
  topology: RedisTopology;
  /** Key prefix; a hash tag such as `{voice}:` keeps every key in one cluster slot. */
  prefix: string;
  /** Request paths fail after this many ms instead of queueing while Redis is away. */
  commandTimeoutMs: number;
  /** After each state-changing script, WAIT for this many replicas (0 = do not wait). */
  replicaAcks: number;
  /** How long that WAIT may block before the write counts as not replicated. */
  waitTimeoutMs: number;
}

/** `host:port,host:port`; an empty or malformed entry stops the app naming the variable. */
function hostPortList(name: string, entries: string[]): { host: string; port: number }[] {
  return entries.map((entry) => {
    const match = /^([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})$/.exec(entry);
    if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) throw new ConfigError(name, `must be host:port entries, got "${entry}"`);
    return { host: match[1].replace(/^\[|\]$/g, ''), port: Number(match[2]) };
  });
}

export interface CommonSettings {
  redis: RedisSettings;
  tiers: TierConfig;
  defaultChain: string[];
  /** Tier that takes pods beyond the sum of targets. */
  extraPodsTier: string;
  voiceAgentBaseUrl: string;
  callTtlSeconds: number;
  maxCallDurationSeconds: number;
  tombstoneTtlSeconds: number;
  /** A new call not connected within this many seconds is released (`connect_timeout`); 0 = off. */
  connectTimeoutSeconds: number;
  /** Most requests waiting for a pod in all (SPEC 10.2); beyond it 503 QUEUE_FULL, nothing queued. */
  waitQueueMax: number;
  streamMaxLen: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  host: string;
  /** Addresses whose X-Forwarded-* headers are believed (TRUSTED_PROXIES); empty = none. */
  trustedProxies: string[];
}

export function readRedisSettings(env: EnvReader): RedisSettings {
  const prefix = env.string('REDIS_PREFIX', 'voice:');
  if (!/^[A-Za-z0-9_:{}.-]{1,64}$/.test(prefix)) {
    throw new ConfigError('REDIS_PREFIX', `must be 1-64 characters of [A-Za-z0-9_:{}.-], got "${prefix}"`);
  }
  const sentinels = hostPortList('REDIS_SENTINELS', env.list('REDIS_SENTINELS'));
  const clusterNodes = hostPortList('REDIS_CLUSTER_NODES', env.list('REDIS_CLUSTER_NODES'));
  let topology: RedisTopology = { kind: 'standalone' };
  if (sentinels.length > 0 && clusterNodes.length > 0) {
    throw new ConfigError('REDIS_CLUSTER_NODES', 'cannot be combined with REDIS_SENTINELS: choose one topology');
  }
  if (sentinels.length > 0) {
    topology = {
      kind: 'sentinel',
      sentinels,
      masterName: env.string('REDIS_SENTINEL_MASTER'),
      sentinelPassword: env.optionalString('REDIS_SENTINEL_PASSWORD'),
    };
  } else if (clusterNodes.length > 0) {
    // Multi-key scripts, streams and BullMQ's own scripts need every key in one slot.
    if (!/^[^{}]*\{[^{}]+\}/.test(prefix)) {
      throw new ConfigError('REDIS_PREFIX', `must carry a hash tag such as "{voice}:" with REDIS_CLUSTER_NODES, got "${prefix}"`);
    }
    topology = { kind: 'cluster', nodes: clusterNodes };
  }
  return {
    url: env.url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    topology,
    prefix,
    commandTimeoutMs: env.int('REDIS_COMMAND_TIMEOUT_MS', 800, { min: 50, max: 30000 }),
    replicaAcks: env.int('REDIS_REPLICA_ACKS', 0, { min: 0, max: 16 }),
    waitTimeoutMs: env.int('REDIS_WAIT_TIMEOUT_MS', 200, { min: 1, max: 30000 }),
  };
}

export function readCommonSettings(env: EnvReader = new EnvReader()): CommonSettings {
  const tiers = parseTierConfig(env.string('TIER_CONFIG', SEED_TIER_CONFIG));
  const defaultChain = env.list('DEFAULT_CHAIN', DEFAULT_CHAIN);
  for (const tier of defaultChain) {
    if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(tier)) throw new ConfigError('DEFAULT_CHAIN', `has an invalid tier name "${tier}"`);
  }
  const extraPodsTier = env.string('EXTRA_PODS_TIER', 'standard');
  if (!tiers.has(extraPodsTier)) {
    throw new ConfigError('EXTRA_PODS_TIER', `names "${extraPodsTier}", which is not a tier of TIER_CONFIG`);
  }
  return {
    redis: readRedisSettings(env),
    tiers,
    defaultChain,
    extraPodsTier,
    voiceAgentBaseUrl: env.url('VOICE_AGENT_BASE_URL', 'ws://127.0.0.1:8000', ['ws:', 'wss:']),
    callTtlSeconds: env.int('CALL_TTL_SECONDS', 86400, { min: 60 }),
    maxCallDurationSeconds: env.int('MAX_CALL_DURATION_SECONDS', 7200, { min: 10 }),
    tombstoneTtlSeconds: env.int('TOMBSTONE_TTL_SECONDS', 86400, { min: 0 }),
    connectTimeoutSeconds: env.int('CONNECT_TIMEOUT_SECONDS', 0, { min: 0, max: 3600 }),
    waitQueueMax: env.int('WAIT_QUEUE_MAX', 1000, { min: 0, max: 1000000 }),
    streamMaxLen: env.int('STREAM_MAXLEN', 100000, { min: 100 }),
    logLevel: env.oneOf('LOG_LEVEL', 'info', ['debug', 'info', 'warn', 'error'] as const),
    host: env.string('HOST', '127.0.0.1'),
    trustedProxies: readTrustedProxies(env),
  };
}
