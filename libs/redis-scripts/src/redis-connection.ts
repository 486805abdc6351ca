import type { ConnectionOptions } from 'bullmq';
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

export function redisOptions(settings: RedisSettings, profile: ConnectionProfile, name: string): RedisOptions {
  const url = new URL(settings.url);
  const common: RedisOptions = {
    connectionName: name,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 1000),
    // A demoted primary answers READONLY: reconnect, which asks the sentinels for the new one.
    reconnectOnError: (error) => /READONLY|LOADING/.test(error.message),
  };
  if (settings.topology.kind !== 'standalone') {
    // The URL carries only credentials and the TLS choice when something else names the servers.
    if (url.username) common.username = decodeURIComponent(url.username);
    if (url.password) common.password = decodeURIComponent(url.password);
    if (url.protocol === 'rediss:') common.tls = {};
  }
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
