import { DynamicModule, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import type Redis from 'ioredis';
import { KubeConfig } from '@kubernetes/client-node';
import { redisReadiness } from '@smart-router/pool-state';
import { HealthModule, MetricsController, ReadinessCheck } from '@smart-router/http';
import { loadKubeConfig } from '@smart-router/kube';
import { RedisKeys } from '@smart-router/redis-keys';
import { createRedis } from '@smart-router/redis-scripts';
import { JsonLogger, Telemetry } from '@smart-router/telemetry';
import { PodEventPublisher } from './pod-event.publisher';
import { PodWatchService } from './pod-watch.service';
import { PodWatcherConfig } from './pod-watcher.config';

const WATCHER_REDIS = Symbol('WATCHER_REDIS');

@Injectable()
class RedisCloser implements OnApplicationShutdown {
  constructor(@Inject(WATCHER_REDIS) private readonly redis: Redis) {}
  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

@Module({})
export class AppModule {
  static register(config: PodWatcherConfig, telemetry: Telemetry, logger: JsonLogger): DynamicModule {
    return {
      module: AppModule,
      // Global with exports so the health module's readiness factory can inject our providers.
      global: true,
      exports: [WATCHER_REDIS, PodWatchService],
      imports: [
        HealthModule.forRoot({
          inject: [WATCHER_REDIS, PodWatchService],
          useFactory: (redis: Redis, watch: PodWatchService): ReadinessCheck[] => [
            redisReadiness(redis),
            {
              name: 'watch',
              check: async () => {
                if (watch.isLeader && !watch.synced) throw new Error('leader, but the pod watch is not synced');
              },
            },
          ],
        } as never),
      ],
      controllers: [MetricsController],
      providers: [
        { provide: Telemetry, useValue: telemetry },
        { provide: JsonLogger, useValue: logger },
        { provide: WATCHER_REDIS, useFactory: () => createRedis(config.redis, 'worker', 'pod-watcher') },
        { provide: KubeConfig, useFactory: () => loadKubeConfig(config.kubeconfig) },
        {
          provide: PodEventPublisher,
          inject: [WATCHER_REDIS],
          useFactory: (redis: Redis) => new PodEventPublisher(redis, new RedisKeys(config.redis.prefix), config.streamMaxLen),
        },
        {
          provide: PodWatchService,
          inject: [KubeConfig, PodEventPublisher],
          useFactory: (kube: KubeConfig, publisher: PodEventPublisher) => new PodWatchService(kube, config, publisher, telemetry, logger),
        },
        RedisCloser,
      ],
    };
  }
}
