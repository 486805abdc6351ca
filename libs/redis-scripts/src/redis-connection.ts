import type { ConnectionOptions } from 'bullmq';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import Redis, { Cluster, ClusterOptions, RedisOptions } from 'ioredis';
import type { RedisSettings } from '@smart-router/config';

/**
 * Two connection profiles from one place.
 * - `request`: hot paths fail fast. No offline queue, a command timeout, one
 *   retry: a dead Redis becomes a 503 within about a second, never a hang.
 * - `worker`: background consumers (BullMQ, stream readers) wait an outage out.
 *
 * And three topologies (RedisSettings.topology), all discovered by ioredis
 * itself: one server, a Sentinel-managed primary (asked from the sentinels at
 * every connect; a demoted primary's READONLY forces a reconnect), or a
 * Redis Cluster (slots discovered and followed on MOVED/ASK).
 */
export type ConnectionProfile = 'request' | 'worker';

/**
 * Node's TLS options for a `rediss://` REDIS_URL (SPEC 10.1): the CA from
 * REDIS_TLS_CA_FILE (else the system's), a client certificate for mutual TLS,
 * and REDIS_TLS_SERVERNAME when the certificate names the server otherwise
 * than the address we connect to. The certificate is always verified.
 */
export function redisTlsOptions(settings: RedisSettings): TlsConnectionOptions | undefined {
  if (!settings.url.startsWith('rediss:')) return undefined;
  const tls = settings.tls ?? {};
  return {
    rejectUnauthorized: true,
    ...(tls.ca ? { ca: tls.ca } : {}),
    ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
    ...(tls.servername ? { servername: tls.servername } : {}),
  };
}

export function redisOptions(settings: RedisSettings, profile: ConnectionProfile, name: string): RedisOptions {
  const url = new URL(settings.url);
  const tls = redisTlsOptions(settings);
  const common: RedisOptions = {
    connectionName: name,
    // No CLIENT SETINFO (Redis 7.2+): the ACL users grant only what the apps
    // need, and Redis 7.0's ACL cannot name that subcommand (SPEC 10.1).
    disableClientInfo: true,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 1000),
    // A demoted primary answers READONLY: reconnect, which asks the sentinels for the new one.
    reconnectOnError: (error) => /READONLY|LOADING/.test(error.message),
  };
  if (settings.topology.kind !== 'standalone') {
    // The URL carries only credentials and the TLS choice when something else names the servers.
    if (url.username) common.username = decodeURIComponent(url.username);
    if (url.password) common.password = decodeURIComponent(url.password);
  }
  // TLS to the server (and, behind Sentinel, to the primary the sentinels name).
  if (tls) common.tls = tls;
  if (settings.topology.kind === 'sentinel') {
    Object.assign(common, {
      sentinels: settings.topology.sentinels,
      name: settings.topology.masterName,
      sentinelPassword: settings.topology.sentinelPassword,
      role: 'master',
      // Not ioredis' failoverDetector: its +switch-master handler can close a
      // reconnect in progress, which leaves the client ended for good (seen in
      // the failover test). A killed primary drops the socket anyway, and a
      // demoted one answers READONLY, which reconnects through the sentinels.
      failoverDetector: false,
      sentinelRetryStrategy: (attempt: number) => Math.min(100 * attempt, 1000),
      // rediss:// means TLS everywhere: to the sentinels and to the primary they name.
      ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
    } satisfies RedisOptions);
  }
  if (profile === 'request') {
    return {
      ...common,
      enableOfflineQueue: false,
      commandTimeout: settings.commandTimeoutMs,
      maxRetriesPerRequest: 1,
      connectTimeout: 1000,
    };
  }
  return { ...common, maxRetriesPerRequest: null, enableOfflineQueue: true, connectTimeout: 2000 };
}

function clusterOptions(settings: RedisSettings, profile: ConnectionProfile, name: string): ClusterOptions {
  const { enableOfflineQueue, ...nodeOptions } = redisOptions(settings, profile, name);
  return {
    redisOptions: nodeOptions,
    enableOfflineQueue,
    // Writes and reads go to the primary of the slot: replicas lag.
    scaleReads: 'master',
    clusterRetryStrategy: (attempt) => Math.min(100 * attempt, 1000),
    slotsRefreshTimeout: 2000,
    // With TLS, connect to a node by the name it is known by, so the
    // certificate is checked against that name rather than a resolved address.
    ...(nodeOptions.tls ? { dnsLookup: (address: string, callback: (error: Error | null, address: string) => void) => callback(null, address) } : {}),
  };
}

/**
 * The client for the configured topology. A Cluster is returned typed as
 * Redis: it answers every command the apps use (scripts, streams,
 * pipelines) as long as each call's keys share a slot, which the hash-tagged
 * prefix that cluster mode requires guarantees.
 */
export function createRedis(settings: RedisSettings, profile: ConnectionProfile, name: string): Redis {
  const redis =
    settings.topology.kind === 'cluster'
      ? (new Cluster(settings.topology.nodes, clusterOptions(settings, profile, name)) as unknown as Redis)
      : settings.topology.kind === 'sentinel'
        ? new Redis(redisOptions(settings, profile, name))
        : new Redis(settings.url, redisOptions(settings, profile, name));
  // Errors surface on the commands that fail; the connection event would
  // otherwise crash the process as an unhandled 'error'.
  redis.on('error', () => undefined);
  return redis;
}

/**
 * The same profiles for BullMQ queues and workers. BullMQ builds its own
 * client from options for one server or Sentinel; for a cluster it needs a
 * Cluster instance, which the caller then owns (see closeBullConnection).
 */
export function bullConnection(settings: RedisSettings, profile: ConnectionProfile, name: string): ConnectionOptions {
  if (settings.topology.kind === 'cluster') return createRedis(settings, profile, name) as unknown as Cluster;
  if (settings.topology.kind === 'sentinel') return redisOptions(settings, profile, name) as ConnectionOptions;
  return { ...redisOptions(settings, profile, name), url: settings.url } as ConnectionOptions;
}

/** BullMQ leaves a client it was handed open: close the cluster clients bullConnection made. */
export async function closeBullConnection(connection: ConnectionOptions): Promise<void> {
  if (connection instanceof Cluster) await connection.quit().catch(() => connection.disconnect());
}
