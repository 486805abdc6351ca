import { DynamicModule, Inject, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { Queue } from 'bullmq';
import type Redis from 'ioredis';
import { RECONCILER_QUEUE } from '@smart-router/events';
import { BearerTokens, HealthModule, MetricsController } from '@smart-router/http';
import { PoolMetrics, PoolStateModule, REQUEST_REDIS, redisReadiness } from '@smart-router/pool-state';
import { RedisKeys } from '@smart-router/redis-keys';
import { FleetScripts, PoolScripts, bullConnection } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';
import { AdminConfig } from './admin.config';
import { AdminController } from './admin.controller';
import { AdminService } from './admin.service';
import { OpenApiController } from './openapi.controller';
import { PoolStateRepository } from './pool-state.repository';
import { FleetController } from './fleet.controller';
import { AdminFleetService } from './fleet.service';

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
      controllers: [AdminController, FleetController, OpenApiController, MetricsController],
      providers: [
        { provide: BearerTokens, useValue: new BearerTokens(config.operatorTokens, config.viewerTokens) },
        {
          provide: Queue,
          inject: [RedisKeys],
          useFactory: (keys: RedisKeys) => {
            const queue = new Queue(RECONCILER_QUEUE, { connection: bullConnection(config.common.redis, 'request', 'admin-queue'), prefix: keys.bullPrefix() });
            // Enqueue failures reach the caller (503); connection-level errors are only logged.
            queue.on('error', (error) => new Logger('ReconcilerQueue').warn(`reconciler queue connection: ${error.message}`));
            return queue;
          },
        },
        { provide: PoolStateRepository, inject: [REQUEST_REDIS, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new PoolStateRepository(redis, keys) },
        {
          provide: AdminService,
          inject: [PoolStateRepository, PoolScripts, Queue, PoolMetrics],
          useFactory: (repository: PoolStateRepository, scripts: PoolScripts, queue: Queue, metrics: PoolMetrics) => new AdminService(repository, scripts, queue, config.common, telemetry, metrics),
        },
        {
          provide: AdminFleetService,
          inject: [REQUEST_REDIS, RedisKeys],
          useFactory: (redis: Redis, keys: RedisKeys) =>
            new AdminFleetService(redis, keys, new FleetScripts(redis, keys, config.fleet.statefulSet, config.common.streamMaxLen), config.fleet),
        },
        QueueCloser,
      ],
    };
  }
}
