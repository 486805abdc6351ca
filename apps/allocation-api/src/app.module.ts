import { DynamicModule, Module } from '@nestjs/common';
import { CachedAgentTokens, CallerAuthenticator, HealthModule, MetricsController } from '@smart-router/http';
import { TokenReviewRepository, loadKubeConfig } from '@smart-router/kube';
import type Redis from 'ioredis';
import { LivenessScripts, PoolScripts } from '@smart-router/redis-scripts';
import { RedisKeys } from '@smart-router/redis-keys';
import { PoolMetrics, PoolStateModule, REQUEST_REDIS, redisReadiness, replicationLimits } from '@smart-router/pool-state';
import { Telemetry } from '@smart-router/telemetry';
import { AllocationApiConfig } from './allocation-api.config';
import { AllocationController } from './allocation.controller';
import { HeartbeatController } from './heartbeat.controller';
import { HeartbeatService } from './heartbeat.service';
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
      controllers: [AllocationController, HeartbeatController, MediaAuthController, OpenApiController, MetricsController],
      providers: [
        { provide: CallerAuthenticator, useValue: callerAuthenticator(config, telemetry) },
        {
          provide: HeartbeatService,
          inject: [REQUEST_REDIS, RedisKeys, PoolMetrics],
          useFactory: (redis: Redis, keys: RedisKeys, metrics: PoolMetrics) =>
            new HeartbeatService(
              new LivenessScripts(redis, keys, config.common.streamMaxLen, replicationLimits(config.common.redis, (script) => metrics.notReplicated.add(1, { script }))),
              metrics,
              telemetry,
            ),
        },
      ],
    };
  }
}

/** Who may call (SPEC 10.1): dispatcher tokens, and voice agents' ServiceAccount tokens when an audience is set. */
export function callerAuthenticator(config: AllocationApiConfig, telemetry: Telemetry): CallerAuthenticator {
  let agents: CachedAgentTokens | null = null;
  if (config.agentTokenAudience) {
    const reviews = new TokenReviewRepository(loadKubeConfig(config.kubeconfig), config.agentTokenAudience);
    // Saturation apart from the API failing or timing out: each needs a different fix.
    const counted = telemetry.meter().createCounter('smart_router_token_reviews_total', { description: 'TokenReviews wanted for voice-agent tokens, by result (authenticated, refused, saturated, timeout, failed)' });
    agents = new CachedAgentTokens((token) => reviews.review(token), {
      ttlMs: config.agentTokenCacheSeconds * 1000,
      onReview: (result) => counted.add(1, { result }),
    });
  }
  return new CallerAuthenticator({ dispatcherTokens: config.apiTokens, agents, allowUnauthenticated: config.allowUnauthenticated });
}
