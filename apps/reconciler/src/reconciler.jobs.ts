import { Job, Queue, Worker } from 'bullmq';
import { LoggerService } from '@nestjs/common';
import { Counter, Histogram } from '@opentelemetry/api';
import { RedisSettings } from '@smart-router/config';
import { JOBS, JOB_NAMES, JobName, RECONCILER_QUEUE } from '@smart-router/events';
import { RedisKeys } from '@smart-router/redis-keys';
import { bullConnection, closeBullConnection } from '@smart-router/redis-scripts';
import type { ConnectionOptions } from 'bullmq';
import { Telemetry, inSpan } from '@smart-router/telemetry';
import { PoolReconcileService } from './pool-reconcile.service';
import { FleetService } from './fleet.service';
import { LivenessJob } from './liveness.job';
import { GuardrailJob } from './guardrail.job';
import { RolloutMover } from './rollout-move';

type Handler = () => Promise<unknown>;

/**
 * The periodic work as BullMQ job schedulers (never in-process timers): each
 * job is idempotent because BullMQ may run it twice. Every replica upserts the
 * same fixed scheduler ids; every replica's worker takes jobs from one queue.
 */
export class ReconcilerJobs {
  private readonly queue: Queue;
  private worker: Worker | null = null;
  private readonly handlers: Record<JobName, Handler>;
  private readonly runs: Counter;
  private readonly seconds: Histogram;

  constructor(
    private readonly redis: RedisSettings,
    keys: RedisKeys,
    reconcile: PoolReconcileService,
    fleet: FleetService,
    private readonly intervalScale: number,
    private readonly telemetry: Telemetry,
    private readonly logger: LoggerService,
    /** Failover detection rides on the data-loss check's schedule (see PrimaryWatch). */
    primary: { check(): Promise<boolean> } | undefined,
    liveness: LivenessJob,
    guardrail: GuardrailJob,
    mover?: RolloutMover,
  ) {
    this.handlers = {
      [JOBS.fullReconcile.name]: () => reconcile.fullReconcile('scheduled'),
      [JOBS.zombieSweep.name]: () => reconcile.zombieSweep(),
      [JOBS.dataLossCheck.name]: async () => ({ dataLost: await reconcile.checkDataLoss(), newPrimary: (await primary?.check()) ?? false }),
      [JOBS.staleCallReaper.name]: () => reconcile.reapStaleCalls(),
      // The primary's plan first, then a rollout's replica move (SPEC 12), which may plan it for the next step.
      [JOBS.fleetStep.name]: async () => ({ fleet: await fleet.tick(), move: await mover?.tick() }),
      [JOBS.connectTimeout.name]: () => reconcile.releaseUnconnectedCalls(),
      [JOBS.liveness.name]: () => liveness.run(),
      [JOBS.rolloutGuardrail.name]: () => guardrail.run(),
    };
    // Boot fails if a scheduled job has no handler.
    for (const name of JOB_NAMES) if (!this.handlers[name]) throw new Error(`job ${name} has no handler`);
    this.connections.push(bullConnection(redis, 'worker', 'reconciler-queue'));
    this.queue = new Queue(RECONCILER_QUEUE, { connection: this.connections[0], prefix: keys.bullPrefix() });
    this.queue.on('error', () => undefined);
    this.prefix = keys.bullPrefix();
    const meter = telemetry.meter();
    this.runs = meter.createCounter('smart_router_job_runs_total', { description: 'Reconciler job runs by job and result' });
    this.seconds = meter.createHistogram('smart_router_job_duration_seconds', { description: 'Reconciler job durations', unit: 's' });
  }

  private readonly prefix: string;
  private readonly connections: ConnectionOptions[] = [];

  /** (Re)creates every scheduler; called at start and after Redis lost its data. */
  async upsertSchedulers(): Promise<void> {
    for (const job of Object.values(JOBS)) {
      await this.queue.upsertJobScheduler(job.name, { every: Math.max(100, Math.round(job.everyMs * this.intervalScale)) }, {
        name: job.name,
        opts: { removeOnComplete: 100, removeOnFail: 100 },
      });
    }
  }

  startWorker(): void {
    const connection = bullConnection(this.redis, 'worker', 'reconciler-worker');
    this.connections.push(connection);
    this.worker = new Worker(RECONCILER_QUEUE, (job) => this.process(job), {
      connection,
      prefix: this.prefix,
      concurrency: 1,
    });
    this.worker.on('error', (error) => this.logger.warn(`job worker error: ${error.message}`, 'Jobs'));
    this.worker.on('failed', (job, error) => this.logger.warn(`job ${job?.name} failed: ${error.message}`, 'Jobs'));
  }

  /** Enqueues a job now (the admin "reconcile now" uses the same queue by name). */
  async runNow(name: JobName): Promise<string | undefined> {
    const job = await this.queue.add(name, {}, { removeOnComplete: 100, removeOnFail: 100 });
    return job.id;
  }

  private async process(job: Job): Promise<unknown> {
    const handler = this.handlers[job.name as JobName];
    if (!handler) throw new Error(`no handler for job ${job.name}`);
    const started = process.hrtime.bigint();
    try {
      const result = await inSpan(this.telemetry.tracer(), `job.${job.name}`, handler);
      this.runs.add(1, { job: job.name, result: 'ok' });
      return result;
    } catch (error) {
      this.runs.add(1, { job: job.name, result: 'error' });
      throw error;
    } finally {
      this.seconds.record(Number(process.hrtime.bigint() - started) / 1e9, { job: job.name });
    }
  }

  /** Finishes the job in hand, then closes. */
  async close(): Promise<void> {
    await this.worker?.close().catch(() => undefined);
    await this.queue.close().catch(() => undefined);
    await Promise.all(this.connections.map(closeBullConnection));
  }
}
