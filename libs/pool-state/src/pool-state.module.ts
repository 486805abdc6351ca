import { DynamicModule, Inject, Injectable, Module, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type Redis from 'ioredis';
import { CommonSettings, RedisSettings } from '@smart-router/config';
import { RedisKeys } from '@smart-router/redis-keys';
import { PoolScripts, ScriptLimits, createRedis } from '@smart-router/redis-scripts';
import { ReadinessCheck } from '@smart-router/http';
import { Telemetry } from '@smart-router/telemetry';
import { CallAllocator } from './call-allocator';
import { PoolMetrics } from './pool-metrics';
import { WaitWakeups } from './wait-wakeups';

export const REQUEST_REDIS = Symbol('REQUEST_REDIS');
export const COMMON_SETTINGS = Symbol('COMMON_SETTINGS');

/**
 * Waits (briefly) for the first connection before the app takes traffic, since
 * the request profile has no offline queue; closes the connection only after
 * the HTTP server stopped taking requests.
 */
@Injectable()
class RedisLifecycle implements OnModuleInit, OnApplicationShutdown {
  constructor(@Inject(REQUEST_REDIS) private readonly redis: Redis, private readonly wakeups: WaitWakeups) {}

  async onModuleInit(): Promise<void> {
    if (this.redis.status === 'ready') return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.redis.off('ready', done);
        resolve();
      };
      // Start anyway after the deadline: readiness reports Redis down until it connects.
      const timer = setTimeout(done, 5000);
      this.redis.once('ready', done);
    });
  }
  async onApplicationShutdown(): Promise<void> {
    await this.wakeups.close();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/**
 * Redis readiness for every app, answered within `timeoutMs` whatever the
 * connection profile (a worker connection would otherwise wait an outage out).
 * Given PoolScripts it is a real script round trip, not PING: after a Redis
 * restart the script cache is empty, and this proves EVALSHA/EVAL works.
 */
export function redisReadiness(target: { ping(): Promise<unknown> }, timeoutMs = 1000): ReadinessCheck {
  return {
    name: 'redis',
    check: async () => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`redis did not answer within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await Promise.race([target.ping(), deadline]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** The WAIT part of ScriptLimits from the settings, for every PoolScripts. */
export function replicationLimits(redis: RedisSettings, onNotReplicated: (script: string) => void): Pick<ScriptLimits, 'replicaAcks' | 'waitTimeoutMs' | 'onNotReplicated'> {
  return { replicaAcks: redis.replicaAcks, waitTimeoutMs: redis.waitTimeoutMs, onNotReplicated };
}

/** Redis, the key schema, the typed scripts and the allocator, for any app. */
@Module({})
export class PoolStateModule {
  static forRoot(settings: CommonSettings, telemetry: Telemetry, appName: string): DynamicModule {
    return {
      module: PoolStateModule,
      global: true,
      providers: [
        { provide: COMMON_SETTINGS, useValue: settings },
        { provide: Telemetry, useValue: telemetry },
        { provide: REQUEST_REDIS, useFactory: () => createRedis(settings.redis, 'request', appName) },
        { provide: RedisKeys, useValue: new RedisKeys(settings.redis.prefix) },
        { provide: PoolMetrics, useFactory: () => new PoolMetrics(telemetry) },
        {
          provide: PoolScripts,
          inject: [REQUEST_REDIS, RedisKeys, PoolMetrics],
          useFactory: (redis: Redis, keys: RedisKeys, metrics: PoolMetrics) =>
            new PoolScripts(redis, keys, {
              callTtlSeconds: settings.callTtlSeconds,
              tombstoneTtlSeconds: settings.tombstoneTtlSeconds,
              streamMaxLen: settings.streamMaxLen,
              connectTimeoutMs: settings.connectTimeoutSeconds * 1000,
              waitQueueMax: settings.waitQueueMax,
              ...replicationLimits(settings.redis, (script) => metrics.notReplicated.add(1, { script })),
            }),
        },
        {
          // Its subscriber connection opens on the first waiting request only (admin never waits).
          provide: WaitWakeups,
          inject: [RedisKeys],
          useFactory: (keys: RedisKeys) =>
            new WaitWakeups(() => createRedis(settings.redis, 'worker', `${appName}-wait`), keys.waitChannel()),
        },
        {
          provide: CallAllocator,
          inject: [PoolScripts, PoolMetrics, WaitWakeups],
          useFactory: (scripts: PoolScripts, metrics: PoolMetrics, wakeups: WaitWakeups) =>
            new CallAllocator(scripts, metrics, telemetry, settings.voiceAgentBaseUrl, wakeups),
        },
        RedisLifecycle,
      ],
      exports: [COMMON_SETTINGS, Telemetry, REQUEST_REDIS, RedisKeys, PoolMetrics, PoolScripts, CallAllocator],
    };
  }
}
