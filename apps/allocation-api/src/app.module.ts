import { DynamicModule, Module } from '@nestjs/common';
import { AgentAdmissionError, AgentIdentity, CachedAgentTokens, CallerAuthenticator, HealthModule, MetricsController, agentNamespacePolicy } from '@smart-router/http';
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
        {
          provide: CallerAuthenticator,
          inject: [REQUEST_REDIS, RedisKeys, PoolMetrics],
          useFactory: (redis: Redis, keys: RedisKeys, metrics: PoolMetrics) => callerAuthenticator(config, telemetry, podRecordUids(redis, keys, metrics)),
        },
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

/** The UID the watcher recorded for a pod (pod:{name} field uid), '' when none; rejects when Redis fails. */
export type PodRecordUid = (podName: string) => Promise<string>;

/** Reads pod:{name} uid; a Redis error is counted (redis_errors_total{operation="agent_pod_uid"}) and rejects, never read as a mismatch. */
export function podRecordUids(redis: Redis, keys: RedisKeys, metrics: PoolMetrics): PodRecordUid {
  return async (podName) => {
    try {
      return (await redis.hget(keys.pod(podName), 'uid')) ?? '';
    } catch (error) {
      metrics.redisError('agent_pod_uid');
      throw new AgentAdmissionError(`pod record of ${podName} could not be read: ${error instanceof Error ? error.message : String(error)}`, error);
    }
  };
}

/**
 * Who may call (SPEC 10.1): dispatcher tokens, and voice agents' ServiceAccount tokens when an audience is set.
 * An agent identity must be a ServiceAccount of AGENT_NAMESPACE (of AGENT_SERVICE_ACCOUNTS when set) and its
 * pod UID the one recorded for that pod name: a same-named pod of another namespace, or a previous
 * incarnation, is 401. No pod record (not yet seen by the watcher, or Redis lost it) is 401 too, for at most
 * the refusal cache (5 s): such a pod holds no calls to act on.
 */
export function callerAuthenticator(config: AllocationApiConfig, telemetry: Telemetry, podUid: PodRecordUid): CallerAuthenticator {
  let agents: CachedAgentTokens | null = null;
  if (config.agentTokenAudience) {
    const reviews = new TokenReviewRepository(loadKubeConfig(config.kubeconfig), config.agentTokenAudience);
    // Saturation apart from the API failing or timing out: each needs a different fix.
    const counted = telemetry.meter().createCounter('smart_router_token_reviews_total', { description: 'TokenReviews wanted for voice-agent tokens, by result (authenticated, refused, saturated, timeout, failed)' });
    const ofOurNamespace = agentNamespacePolicy(config.agentNamespace, config.agentServiceAccounts);
    const admit = async (identity: AgentIdentity) => ofOurNamespace(identity) && !!identity.podUid && (await podUid(identity.podName)) === identity.podUid;
    agents = new CachedAgentTokens((token) => reviews.review(token), {
      ttlMs: config.agentTokenCacheSeconds * 1000,
      onReview: (result) => counted.add(1, { result }),
      admit,
    });
  }
  return new CallerAuthenticator({ dispatcherTokens: config.apiTokens, agents, allowUnauthenticated: config.allowUnauthenticated, agentAudience: config.agentTokenAudience });
}
