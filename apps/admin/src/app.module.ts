import { DynamicModule, Inject, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import type Redis from 'ioredis';
import { BearerTokens, HealthModule, MetricsController } from '@smart-router/http';
import { PoolMetrics, PoolStateModule, REQUEST_REDIS, redisReadiness, replicationLimits } from '@smart-router/pool-state';
import { RedisKeys } from '@smart-router/redis-keys';
import { FleetScripts, PoolScripts, RolloutScripts, createRedis } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';
import { AdminConfig } from './admin.config';
import { AdminController } from './admin.controller';
import { AdminService } from './admin.service';
import { OpenApiController } from './openapi.controller';
import { PoolStateRepository } from './pool-state.repository';
import { DashboardController } from './dashboard.controller';
import { EventLogController } from './event-log.controller';
import { EventLogRepository } from './event-log.repository';
import { EventStreamMetrics, EventStreamService } from './event-stream.service';
import { PodListRepository } from './pod-list.repository';
import { ReconcileQueue } from './reconcile-queue';
import { FleetController } from './fleet.controller';
import { AdminFleetService } from './fleet.service';
import { RolloutController } from './rollout.controller';
import { AdminRolloutService } from './rollout.service';

@Injectable()
class QueueCloser implements OnApplicationShutdown {
  constructor(private readonly queue: ReconcileQueue) {}
  async onApplicationShutdown(): Promise<void> {
    await this.queue.close();
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
      controllers: [AdminController, FleetController, RolloutController, EventLogController, DashboardController, OpenApiController, MetricsController],
      providers: [
        { provide: BearerTokens, useValue: new BearerTokens(config.operatorTokens, config.viewerTokens) },
        { provide: ReconcileQueue, inject: [RedisKeys], useFactory: (keys: RedisKeys) => new ReconcileQueue(config.common.redis, keys.bullPrefix()) },
        { provide: PoolStateRepository, inject: [REQUEST_REDIS, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new PoolStateRepository(redis, keys) },
        {
          provide: AdminService,
          inject: [PoolStateRepository, PoolScripts, ReconcileQueue, PoolMetrics],
          useFactory: (repository: PoolStateRepository, scripts: PoolScripts, queue: ReconcileQueue, metrics: PoolMetrics) => new AdminService(repository, scripts, queue, config.common, telemetry, metrics),
        },
        {
          provide: AdminFleetService,
          inject: [REQUEST_REDIS, RedisKeys, PoolMetrics],
          useFactory: (redis: Redis, keys: RedisKeys, metrics: PoolMetrics) => {
            const replication = replicationLimits(config.common.redis, (script) => metrics.notReplicated.add(1, { script }));
            return new AdminFleetService(redis, keys, new FleetScripts(redis, keys, config.fleet.statefulSet, config.common.streamMaxLen, replication), config.fleet, metrics);
          },
        },
        {
          // SPEC 12: the split between agent versions.
          provide: AdminRolloutService,
          inject: [REQUEST_REDIS, RedisKeys, PoolMetrics],
          useFactory: (redis: Redis, keys: RedisKeys, metrics: PoolMetrics) => {
            const replication = replicationLimits(config.common.redis, (script) => metrics.notReplicated.add(1, { script }));
            return new AdminRolloutService(redis, keys, new RolloutScripts(redis, keys, config.common.streamMaxLen, replication), metrics);
          },
        },
        QueueCloser,
        // SPEC 9.4: event log, live events (a dedicated blocking connection per stream) and the pod table.
        { provide: EventLogRepository, inject: [REQUEST_REDIS, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new EventLogRepository(redis, keys) },
        { provide: PodListRepository, inject: [REQUEST_REDIS, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new PodListRepository(redis, keys) },
        {
          provide: EventStreamService,
          inject: [EventLogRepository],
          useFactory: (events: EventLogRepository) =>
            new EventStreamService(events, () => createRedis(config.common.redis, 'worker', 'admin-events-stream'), config.eventStream, new EventStreamMetrics(telemetry)),
        },
      ],
    };
  }
}
