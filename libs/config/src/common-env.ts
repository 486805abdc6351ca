import { readFileSync } from 'node:fs';
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
  /** TLS details for a `rediss://` REDIS_URL (every topology); absent = plain TCP. */
  tls?: RedisTlsSettings;
}

/**
 * TLS to Redis (SPEC 10.1): on when REDIS_URL is `rediss://`, for the server,
 * the sentinels and every cluster node alike. PEM contents, read once at start.
 */
export interface RedisTlsSettings {
  /** CA certificate(s) to verify the server with; absent = the system's trust store. */
  ca?: string;
  /** Client certificate and key for mutual TLS (`tls-auth-clients yes`). */
  cert?: string;
  key?: string;
  /** The name the server certificate must carry (and SNI), when it is not the address connected to. */
  servername?: string;
}

/** The PEM file at `path` (from variable `name`); unreadable or not PEM stops the app naming the variable. */
function pemFile(name: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(name, `names a file that cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (!text.includes('-----BEGIN ')) throw new ConfigError(name, 'names a file that holds no PEM data');
  return text;
}

/**
 * The app's Redis ACL user (SPEC 10.1), beside a REDIS_URL that names only the
 * server (shared by every app, as in compose and k8s): REDIS_USERNAME, and
 * REDIS_PASSWORD_FILE, the password from a file (a mounted secret) so it never
 * sits in an environment variable. The file's first line is the password.
 */
function withCredentials(url: string, username: string | undefined, path: string | undefined): string {
  if (username === undefined && path === undefined) return url;
  const parsed = new URL(url);
  if (username !== undefined) {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(username)) throw new ConfigError('REDIS_USERNAME', 'must be 1-64 characters of [A-Za-z0-9._-]');
    if (parsed.username && decodeURIComponent(parsed.username) !== username) throw new ConfigError('REDIS_USERNAME', 'differs from the user in REDIS_URL');
    parsed.username = username;
  }
  if (path !== undefined) {
    let password: string;
    try {
      password = readFileSync(path, 'utf8').split(/\r?\n/)[0].trim();
    } catch (error) {
      throw new ConfigError('REDIS_PASSWORD_FILE', `names a file that cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (password === '') throw new ConfigError('REDIS_PASSWORD_FILE', 'names an empty file');
    if (parsed.password) throw new ConfigError('REDIS_PASSWORD_FILE', 'cannot be combined with a password in REDIS_URL');
    parsed.password = encodeURIComponent(password);
  }
  return parsed.toString().replace(/\/+$/, '');
}

/** The TLS variables as given (file paths, server name), read by readRedisSettings. */
interface RedisTlsVariables {
  REDIS_TLS_CA_FILE?: string;
  REDIS_TLS_CERT_FILE?: string;
  REDIS_TLS_KEY_FILE?: string;
  REDIS_TLS_SERVERNAME?: string;
}

function readRedisTls(url: string, given: RedisTlsVariables): RedisTlsSettings | undefined {
  const tls: RedisTlsSettings = {
    ca: pemFile('REDIS_TLS_CA_FILE', given.REDIS_TLS_CA_FILE),
    cert: pemFile('REDIS_TLS_CERT_FILE', given.REDIS_TLS_CERT_FILE),
    key: pemFile('REDIS_TLS_KEY_FILE', given.REDIS_TLS_KEY_FILE),
    servername: given.REDIS_TLS_SERVERNAME,
  };
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new ConfigError(tls.cert === undefined ? 'REDIS_TLS_CERT_FILE' : 'REDIS_TLS_KEY_FILE', 'is required with the other of REDIS_TLS_CERT_FILE / REDIS_TLS_KEY_FILE (mutual TLS)');
  }
  const named = (Object.keys(given) as (keyof RedisTlsVariables)[]).find((name) => given[name] !== undefined);
  if (!url.startsWith('rediss:')) {
    // A CA with a plain URL would silently send credentials in clear text.
    if (named) throw new ConfigError(named, 'needs a rediss:// REDIS_URL (TLS); REDIS_URL is redis://');
    return undefined;
  }
  return Object.fromEntries(Object.entries(tls).filter(([, value]) => value !== undefined)) as RedisTlsSettings;
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
  /** Signed media URLs (SPEC 10.1); no secrets = the seed URL format, unsigned. */
  mediaUrl: MediaUrlSettings;
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

export interface MediaUrlSettings {
  /** MEDIA_URL_SECRET: the first signs, every one verifies (rotation). */
  secrets: string[];
  /** A signed ws_url expires this many seconds after the allocation. */
  ttlSeconds: number;
}

/** Shortest MEDIA_URL_SECRET entry accepted: an HMAC is only as strong as its key. */
const MIN_MEDIA_URL_SECRET_LENGTH = 16;

function mediaUrlSettings(secrets: string[], ttlSeconds: number): MediaUrlSettings {
  for (const secret of secrets) {
    // Never echo the value: it is a credential.
    if (secret.length < MIN_MEDIA_URL_SECRET_LENGTH) throw new ConfigError('MEDIA_URL_SECRET', `entries must be at least ${MIN_MEDIA_URL_SECRET_LENGTH} characters (got one of ${secret.length})`);
  }
  return { secrets, ttlSeconds };
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
  const url = withCredentials(
    env.url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    env.optionalString('REDIS_USERNAME'),
    env.optionalString('REDIS_PASSWORD_FILE'),
  );
  const tls = readRedisTls(url, {
    REDIS_TLS_CA_FILE: env.optionalString('REDIS_TLS_CA_FILE'),
    REDIS_TLS_CERT_FILE: env.optionalString('REDIS_TLS_CERT_FILE'),
    REDIS_TLS_KEY_FILE: env.optionalString('REDIS_TLS_KEY_FILE'),
    REDIS_TLS_SERVERNAME: env.optionalString('REDIS_TLS_SERVERNAME'),
  });
  return {
    url,
    topology,
    prefix,
    commandTimeoutMs: env.int('REDIS_COMMAND_TIMEOUT_MS', 800, { min: 50, max: 30000 }),
    replicaAcks: env.int('REDIS_REPLICA_ACKS', 0, { min: 0, max: 16 }),
    waitTimeoutMs: env.int('REDIS_WAIT_TIMEOUT_MS', 200, { min: 1, max: 30000 }),
    ...(tls ? { tls } : {}),
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
    mediaUrl: mediaUrlSettings(env.list('MEDIA_URL_SECRET'), env.int('MEDIA_URL_TTL_SECONDS', 120, { min: 1, max: 86400 })),
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
