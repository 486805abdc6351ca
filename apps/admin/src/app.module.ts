import { DynamicModule, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { ConnectionOptions, Queue } from 'bullmq';
import type Redis from 'ioredis';
import { RECONCILER_QUEUE } from '@smart-router/events';
import { BearerTokens, HealthModule, MetricsController } from '@smart-router/http';
import { PoolStateModule, REQUEST_REDIS, redisReadiness } from '@smart-router/pool-state';
import { RedisKeys } from '@smart-router/redis-keys';
import { PoolScripts, redisOptions } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';
import { AdminConfig } from './admin.config';
import { AdminController } from './admin.controller';
import { AdminService } from './admin.service';
import { OpenApiController } from './openapi.controller';
import { PoolStateRepository } from './pool-state.repository';

@Injectable()
class QueueCloser implements OnApplicationShutdown {
  constructor(@Inject(Queue) private readonly queue: Queue) {}
  async onApplicationShutdown(): Promise<void> {
    await this.queue.close().catch(() => undefined);
  }
}

@Module({})
export class AppModule {
  static register(config: AdminConfig, telemetry: Telemetry): DynamicModule {
    return {
      module: AppModule,
      imports: [
        PoolStateModule.forRoot(config.common, telemetry, 'admin'),
        HealthModule.forRoot({ inject: [PoolScripts], useFactory: (scripts: PoolScripts) => [redisReadiness(scripts)] } as never),
      ],
      controllers: [AdminController, OpenApiController, MetricsController],
      providers: [
        { provide: BearerTokens, useValue: new BearerTokens(config.operatorTokens, config.viewerTokens) },
        {
          provide: Queue,
          inject: [RedisKeys],
          useFactory: (keys: RedisKeys) => {
            const queue = new Queue(RECONCILER_QUEUE, {
              connection: { ...redisOptions(config.common.redis, 'request', 'admin-queue'), url: config.common.redis.url } as ConnectionOptions,
              prefix: keys.bullPrefix(),
            });
            queue.on('error', () => undefined);
            return queue;
          },
        },
        { provide: PoolStateRepository, inject: [REQUEST_REDIS, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new PoolStateRepository(redis, keys) },
        {
          provide: AdminService,
          inject: [PoolStateRepository, PoolScripts, Queue],
          useFactory: (repository: PoolStateRepository, scripts: PoolScripts, queue: Queue) => new AdminService(repository, scripts, queue, config.common, telemetry),
        },
        QueueCloser,
      ],
    };
  }
}
