import { Injectable, LoggerService, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { PodStreamConsumer } from './pod-stream.consumer';
import { PoolReconcileService } from './pool-reconcile.service';
import { ReconcilerJobs } from './reconciler.jobs';

/**
 * Start-up order matters: rebuild the pools from a fresh LIST first (so tiers
 * come out in ordinal order, not in event arrival order), then consume the
 * stream, then run the jobs. Shutdown reverses it.
 */
@Injectable()
export class ReconcilerService implements OnApplicationBootstrap, OnModuleDestroy {
  started = false;

  constructor(
    private readonly reconcile: PoolReconcileService,
    private readonly consumer: PodStreamConsumer,
    private readonly jobs: ReconcilerJobs,
    private readonly logger: LoggerService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    void this.startInBackground();
  }

  private async startInBackground(): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.reconcile.fullReconcile('startup');
        await this.jobs.upsertSchedulers();
        break;
      } catch (error) {
        this.logger.warn(`start-up reconcile failed (attempt ${attempt}), retrying: ${(error as Error).message}`, 'Reconciler');
        await new Promise((resolve) => setTimeout(resolve, Math.min(250 * attempt, 2000)));
      }
    }
    await this.consumer.start();
    this.jobs.startWorker();
    this.started = true;
    this.logger.log('reconciler started: consuming pod events and running jobs', 'Reconciler');
  }

  /** After FLUSHALL or an empty restart the schedulers are gone too. */
  async recoverFromStateLoss(): Promise<void> {
    await this.reconcile.fullReconcile('state-lost');
    await this.jobs.upsertSchedulers();
  }

  /**
   * A new primary may lack the last writes of the old one (asynchronous
   * replication) while its epoch marker says nothing was lost: rebuild pool
   * membership from a fresh LIST and sweep every pod now. Before the start-up
   * reconcile finished there is nothing to do: that reconcile covers it.
   */
  async recoverFromFailover(reason: string): Promise<void> {
    if (!this.started) return;
    await this.reconcile.fullReconcile(reason);
    await this.reconcile.zombieSweep();
    await this.jobs.upsertSchedulers();
  }

  async onModuleDestroy(): Promise<void> {
    await this.consumer.stop();
    await this.jobs.close();
  }
}
