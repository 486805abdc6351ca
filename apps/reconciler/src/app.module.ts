import { DynamicModule, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import type Redis from 'ioredis';
import { KubeConfig } from '@kubernetes/client-node';
import { notReplicatedCounter, redisReadiness, replicationLimits } from '@smart-router/pool-state';
import { HealthModule, MetricsController, ReadinessCheck } from '@smart-router/http';
import { loadKubeConfig } from '@smart-router/kube';
import { RedisKeys } from '@smart-router/redis-keys';
import { FleetScripts, LivenessScripts, PoolScripts, RolloutScripts, createRedis } from '@smart-router/redis-scripts';
import { JsonLogger, Telemetry } from '@smart-router/telemetry';
import { PodStreamConsumer } from './pod-stream.consumer';
import { PoolReconcileService } from './pool-reconcile.service';
import { ReconcilerConfig } from './reconciler.config';
import { ReconcilerJobs } from './reconciler.jobs';
import { FleetService } from './fleet.service';
import { ReconcilerService } from './reconciler.service';
import { PrimaryWatch } from './primary-watch';
import { KubePodDeleter, LivenessJob } from './liveness.job';
import { SdkCallRedirector } from './call-redirect';
import { GuardrailJob } from './guardrail.job';
import { RolloutMover } from './rollout-move';

const STATE_REDIS = Symbol('STATE_REDIS');
const STREAM_REDIS = Symbol('STREAM_REDIS');

@Injectable()
class RedisCloser implements OnApplicationShutdown {
  constructor(@Inject(STATE_REDIS) private readonly state: Redis, @Inject(STREAM_REDIS) private readonly stream: Redis) {}
  async onApplicationShutdown(): Promise<void> {
    await Promise.all([this.state, this.stream].map((redis) => redis.quit().catch(() => redis.disconnect())));
  }
}

@Module({})
export class AppModule {
  static register(config: ReconcilerConfig, telemetry: Telemetry, logger: JsonLogger): DynamicModule {
    const keys = new RedisKeys(config.common.redis.prefix);
    // A write too few replicas confirmed fails its job or pod event, which is retried.
    const notReplicated = notReplicatedCounter(telemetry);
    const replication = replicationLimits(config.common.redis, (script) => notReplicated.add(1, { script }));
    let service: ReconcilerService | null = null;
    return {
      module: AppModule,
      // Global with exports so the health module's readiness factory can inject our providers.
      global: true,
      exports: [PoolScripts, ReconcilerService, PodStreamConsumer, PoolReconcileService],
      imports: [
        HealthModule.forRoot({
          inject: [PoolScripts, ReconcilerService, PodStreamConsumer, PoolReconcileService],
          useFactory: (scripts: PoolScripts, reconciler: ReconcilerService, consumer: PodStreamConsumer, pools: PoolReconcileService): ReadinessCheck[] => [
            redisReadiness(scripts),
            {
              name: 'reconciler',
              check: async () => {
                if (!reconciler.started || !consumer.isRunning) throw new Error('initial reconcile not finished');
              },
            },
            {
              // Compose gates the gateway on this: allocation answers 503 STATE_REBUILDING until it holds.
              name: 'pools',
              check: async () => {
                if (!(await pools.poolsBuilt())) throw new Error('pools not rebuilt yet (no epoch marker or tier config)');
              },
            },
          ],
        } as never),
      ],
      controllers: [MetricsController],
      providers: [
        { provide: Telemetry, useValue: telemetry },
        { provide: JsonLogger, useValue: logger },
        { provide: RedisKeys, useValue: keys },
        { provide: STATE_REDIS, useFactory: () => createRedis(config.common.redis, 'worker', 'reconciler-state') },
        { provide: STREAM_REDIS, useFactory: () => createRedis(config.common.redis, 'worker', 'reconciler-stream') },
        { provide: KubeConfig, useFactory: () => loadKubeConfig(config.kubeconfig) },
        {
          provide: PoolScripts,
          inject: [STATE_REDIS],
          useFactory: (redis: Redis) => {
            return new PoolScripts(redis, keys, {
              callTtlSeconds: config.common.callTtlSeconds,
              tombstoneTtlSeconds: config.common.tombstoneTtlSeconds,
              streamMaxLen: config.common.streamMaxLen,
              ...replication,
            });
          },
        },
        {
          provide: PrimaryWatch,
          inject: [STATE_REDIS, PoolScripts],
          useFactory: (redis: Redis, scripts: PoolScripts) => {
            const watch = new PrimaryWatch(redis, scripts, async (reason) => service?.recoverFromFailover(reason), telemetry, logger);
            watch.start();
            return watch;
          },
        },
        {
          provide: PoolReconcileService,
          inject: [STATE_REDIS, PoolScripts, KubeConfig],
          useFactory: (redis: Redis, scripts: PoolScripts, kube: KubeConfig) =>
            new PoolReconcileService(redis, keys, scripts, kube, config.common, { namespace: config.namespace, labelSelector: config.labelSelector, versionLabel: config.versionLabel }, telemetry, logger),
        },
        {
          provide: FleetService,
          inject: [STATE_REDIS, KubeConfig],
          useFactory: (redis: Redis, kube: KubeConfig) =>
            new FleetService(redis, keys, new FleetScripts(redis, keys, config.fleet.statefulSet, config.common.streamMaxLen, replication), kube, config.namespace, config.fleet, 10000, logger,
              (sts) => new FleetScripts(redis, keys, sts, config.common.streamMaxLen, replication, true), telemetry),
        },
        {
          provide: LivenessJob,
          inject: [STATE_REDIS, KubeConfig, PoolScripts],
          useFactory: (redis: Redis, kube: KubeConfig, scripts: PoolScripts) =>
            new LivenessJob(
              redis, keys, new LivenessScripts(redis, keys, config.common.streamMaxLen, replication), config.liveness,
              config.liveness.deadAction === 'delete' ? new KubePodDeleter(kube, config.namespace) : null, telemetry, logger,
              config.rehome ? new SdkCallRedirector(config.rehome) : null,
              // A call whose redirect failed ends as it would without re-homing (fenced: only that allocation;
              // endRehome: its rehome_requested marker, which fences the old agent's release, does not stop this one).
              { end: async (callSid, allocationId) => void (await scripts.release(callSid, 'agent_dead', 'call.released', Date.now(), undefined, { allocationId: Number(allocationId) || undefined, endRehome: true })) },
            ),
        },
        {
          provide: GuardrailJob,
          inject: [STATE_REDIS],
          useFactory: (redis: Redis) => new GuardrailJob(redis, keys, new RolloutScripts(redis, keys, config.common.streamMaxLen, replication), telemetry, logger),
        },
        {
          provide: RolloutMover,
          inject: [STATE_REDIS, KubeConfig],
          useFactory: (redis: Redis, kube: KubeConfig) => new RolloutMover(
            redis, keys, kube, config.namespace, config.fleet.statefulSet,
            new FleetScripts(redis, keys, config.fleet.statefulSet, config.common.streamMaxLen, replication),
            (sts) => new FleetScripts(redis, keys, sts, config.common.streamMaxLen, replication, true), 10000, logger,
            new RolloutScripts(redis, keys, config.common.streamMaxLen, replication), config.rolloutMoveDeadlineMs,
          ),
        },
        {
          provide: ReconcilerJobs,
          inject: [PoolReconcileService, FleetService, PrimaryWatch, LivenessJob, GuardrailJob, RolloutMover],
          useFactory: (reconcile: PoolReconcileService, fleet: FleetService, watch: PrimaryWatch, liveness: LivenessJob, guardrail: GuardrailJob, mover: RolloutMover) =>
            new ReconcilerJobs(config.common.redis, keys, reconcile, fleet, config.jobIntervalScale, telemetry, logger, watch, liveness, guardrail, mover),
        },
        {
          provide: PodStreamConsumer,
          inject: [STREAM_REDIS, PoolReconcileService],
          useFactory: (redis: Redis, reconcile: PoolReconcileService) =>
            new PodStreamConsumer(redis, keys, reconcile, config.consumer, config.claimIdleMs, async () => {
              await service?.recoverFromStateLoss();
            }, telemetry, logger),
        },
        {
          provide: ReconcilerService,
          inject: [PoolReconcileService, PodStreamConsumer, ReconcilerJobs],
          useFactory: (reconcile: PoolReconcileService, consumer: PodStreamConsumer, jobs: ReconcilerJobs) => {
            service = new ReconcilerService(reconcile, consumer, jobs, logger);
            return service;
          },
        },
        RedisCloser,
      ],
    };
  }
}
