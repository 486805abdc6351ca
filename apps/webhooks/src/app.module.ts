import { DynamicModule, Module } from '@nestjs/common';
import { HealthModule, MetricsController } from '@smart-router/http';
import type Redis from 'ioredis';
import { CallAllocator, PoolMetrics, PoolStateModule, REQUEST_REDIS, redisReadiness, replicationLimits } from '@smart-router/pool-state';
import { RedisKeys } from '@smart-router/redis-keys';
import { PoolScripts, WebhookReplayScripts } from '@smart-router/redis-scripts';
import { JsonLogger, Telemetry } from '@smart-router/telemetry';
import { AnswerReplays } from './answer-replays';
import { OpenApiController } from './openapi.controller';
import { ProviderRegistry } from './provider-registry';
import { WebhookMetrics } from './webhook-metrics';
import { WebhookRequestFactory } from './webhook-request.factory';
import { WebhooksConfig } from './webhooks.config';
import { WebhooksController } from './webhooks.controller';
import { WebhooksService } from './webhooks.service';

@Module({})
export class AppModule {
  static register(config: WebhooksConfig, telemetry: Telemetry, logger: JsonLogger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        PoolStateModule.forRoot(config.common, telemetry, 'webhooks'),
        HealthModule.forRoot({ inject: [PoolScripts], useFactory: (scripts: PoolScripts) => [redisReadiness(scripts)] } as never),
      ],
      controllers: [WebhooksController, OpenApiController, MetricsController],
      providers: [
        { provide: ProviderRegistry, useValue: ProviderRegistry.fromConfig(config) },
        { provide: WebhookRequestFactory, useValue: new WebhookRequestFactory(config.publicBaseUrl) },
        {
          provide: WebhooksService,
          inject: [CallAllocator, PoolMetrics, REQUEST_REDIS, RedisKeys],
          useFactory: (allocator: CallAllocator, metrics: PoolMetrics, redis: Redis, keys: RedisKeys) => {
            // SPEC 10.2: signed answer webhooks are remembered as long as a released call's tombstone lives.
            const replication = replicationLimits(config.common.redis, (script) => metrics.notReplicated.add(1, { script }));
            const replays = new AnswerReplays(new WebhookReplayScripts(redis, keys, replication), config.common.tombstoneTtlSeconds, config.waitMs);
            return new WebhooksService(allocator, new WebhookMetrics(telemetry), logger, config.waitMs, replays, metrics,
              { enabled: config.rehomeEnabled, max: config.rehomeMax });
          },
        },
      ],
    };
  }
}
