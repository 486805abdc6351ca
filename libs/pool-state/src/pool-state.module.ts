import { DynamicModule, Inject, Injectable, Module, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type Redis from 'ioredis';
import { CommonSettings } from '@smart-router/config';
import { buildChainRules } from '@smart-router/allocation';
import { RedisKeys } from '@smart-router/redis-keys';
import { PoolScripts, createRedis } from '@smart-router/redis-scripts';
import { ReadinessCheck } from '@smart-router/http';
import { Telemetry } from '@smart-router/telemetry';
import { CallAllocator } from './call-allocator';
import { PoolMetrics } from './pool-metrics';

export const REQUEST_REDIS = Symbol('REQUEST_REDIS');
export const COMMON_SETTINGS = Symbol('COMMON_SETTINGS');

/**
 * Waits (briefly) for the first connection before the app takes traffic, since
 * the request profile has no offline queue; closes the connection only after
 * the HTTP server stopped taking requests.
 */
@Injectable()
class RedisLifecycle implements OnModuleInit, OnApplicationShutdown {
  constructor(@Inject(REQUEST_REDIS) private readonly redis: Redis) {}

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
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/**
 * Redis readiness: a real script round trip, not PING. After a Redis restart
 * the script cache is empty; this proves EVALSHA/EVAL works end to end.
 */
export function redisReadiness(scripts: PoolScripts): ReadinessCheck {
  return { name: 'redis', check: async () => void (await scripts.ping()) };
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
          inject: [REQUEST_REDIS, RedisKeys],
          useFactory: (redis: Redis, keys: RedisKeys) =>
            new PoolScripts(redis, keys, buildChainRules(settings.tiers, settings.defaultChain), {
              callTtlSeconds: settings.callTtlSeconds,
              tombstoneTtlSeconds: settings.tombstoneTtlSeconds,
              streamMaxLen: settings.streamMaxLen,
            }),
        },
        {
          provide: CallAllocator,
          inject: [PoolScripts, PoolMetrics],
          useFactory: (scripts: PoolScripts, metrics: PoolMetrics) =>
            new CallAllocator(scripts, metrics, telemetry, settings.voiceAgentBaseUrl),
        },
        RedisLifecycle,
      ],
      exports: [COMMON_SETTINGS, Telemetry, REQUEST_REDIS, RedisKeys, PoolMetrics, PoolScripts, CallAllocator],
    };
  }
}
