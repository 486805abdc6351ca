import { DynamicModule, Module } from '@nestjs/common';
import { BearerTokens, HealthModule, MetricsController } from '@smart-router/http';
import { PoolScripts, } from '@smart-router/redis-scripts';
import { PoolStateModule, redisReadiness } from '@smart-router/pool-state';
import { Telemetry } from '@smart-router/telemetry';
import { AllocationApiConfig } from './allocation-api.config';
import { AllocationController } from './allocation.controller';
import { MediaAuthController } from './media-auth.controller';
import { OpenApiController } from './openapi.controller';

@Module({})
export class AppModule {
  static register(config: AllocationApiConfig, telemetry: Telemetry): DynamicModule {
    return {
      module: AppModule,
      imports: [
        PoolStateModule.forRoot(config.common, telemetry, 'allocation-api'),
        HealthModule.forRoot({ inject: [PoolScripts], useFactory: (scripts: PoolScripts) => [redisReadiness(scripts)] } as never),
      ],
      controllers: [AllocationController, MediaAuthController, OpenApiController, MetricsController],
      providers: [{ provide: BearerTokens, useValue: new BearerTokens(config.apiTokens) }],
    };
  }
}
