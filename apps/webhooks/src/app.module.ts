import { DynamicModule, Module } from '@nestjs/common';
import { HealthModule, MetricsController } from '@smart-router/http';
import { CallAllocator, PoolStateModule, redisReadiness } from '@smart-router/pool-state';
import { PoolScripts } from '@smart-router/redis-scripts';
import { JsonLogger, Telemetry } from '@smart-router/telemetry';
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
          inject: [CallAllocator],
          useFactory: (allocator: CallAllocator) => new WebhooksService(allocator, new WebhookMetrics(telemetry), logger, config.waitMs),
        },
      ],
    };
  }
}
