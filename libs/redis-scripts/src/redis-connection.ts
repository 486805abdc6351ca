import type { ConnectionOptions } from 'bullmq';
import Redis, { RedisOptions } from 'ioredis';
import type { RedisSettings } from '@smart-router/config';

/**
 * Two connection profiles from one place.
 * - `request`: hot paths fail fast. No offline queue, a command timeout, one
 *   retry: a dead Redis becomes a 503 within about a second, never a hang.
 * - `worker`: background consumers (BullMQ, stream readers) wait an outage out.
 */
export type ConnectionProfile = 'request' | 'worker';

export function redisOptions(settings: RedisSettings, profile: ConnectionProfile, name: string): RedisOptions {
  const common: RedisOptions = {
    connectionName: name,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 1000),
    reconnectOnError: (error) => /READONLY|LOADING/.test(error.message),
  };
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

export function createRedis(settings: RedisSettings, profile: ConnectionProfile, name: string): Redis {
  const redis = new Redis(settings.url, redisOptions(settings, profile, name));
  // Errors surface on the commands that fail; the connection event would
  // otherwise crash the process as an unhandled 'error'.
  redis.on('error', () => undefined);
  return redis;
}

/** The same profiles for BullMQ queues and workers (BullMQ takes ioredis options plus the URL). */
export function bullConnection(settings: RedisSettings, profile: ConnectionProfile, name: string): ConnectionOptions {
  return { ...redisOptions(settings, profile, name), url: settings.url } as ConnectionOptions;
}
