import { DynamicModule, Module } from '@nestjs/common';
import { CachedAgentTokens, CallerAuthenticator, HealthModule, MetricsController } from '@smart-router/http';
import { TokenReviewRepository, loadKubeConfig } from '@smart-router/kube';
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
      providers: [{ provide: CallerAuthenticator, useValue: callerAuthenticator(config) }],
    };
  }
}

/** Who may call (SPEC 10.1): dispatcher tokens, and voice agents' ServiceAccount tokens when an audience is set. */
export function callerAuthenticator(config: AllocationApiConfig): CallerAuthenticator {
  let agents: CachedAgentTokens | null = null;
  if (config.agentTokenAudience) {
    const reviews = new TokenReviewRepository(loadKubeConfig(config.kubeconfig), config.agentTokenAudience);
    agents = new CachedAgentTokens((token) => reviews.review(token), config.agentTokenCacheSeconds * 1000);
  }
  return new CallerAuthenticator({ dispatcherTokens: config.apiTokens, agents, allowUnauthenticated: config.allowUnauthenticated });
}
