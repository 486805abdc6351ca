import { Logger } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { JOBS, RECONCILER_QUEUE } from '@smart-router/events';
import { RedisSettings } from '@smart-router/config';
import { bullConnection } from '@smart-router/redis-scripts';

/**
 * The reconciler's job queue as admin uses it: `POST /api/v1/admin/reconcile`
 * adds a full reconcile. BullMQ and its connection are opened on the first
 * request, not at start: an operator asks rarely, and admin's idle memory
 * matters more (about 7 MB for the module, plus a connection).
 */
export class ReconcileQueue {
  private queue: Queue | null = null;

  constructor(private readonly redis: RedisSettings, private readonly bullPrefix: string) {}

  async fullReconcile(): Promise<{ id: string; name: string }> {
    const job = await this.open().add(JOBS.fullReconcile.name, {}, { removeOnComplete: 100, removeOnFail: 100 });
    return { id: String(job.id), name: JOBS.fullReconcile.name };
  }

  async close(): Promise<void> {
    // At shutdown a failed close changes nothing for callers, but it is said, not swallowed.
    await this.queue?.close().catch((error: Error) => new Logger('ReconcilerQueue').warn(`closing the reconciler queue: ${error.message}`));
  }

  private open(): Queue {
    if (!this.queue) {
      // Loaded here, on first use; the type-only import above is erased at build time.
      const { Queue: BullQueue } = require('bullmq') as typeof import('bullmq');
      const queue = new BullQueue(RECONCILER_QUEUE, { connection: bullConnection(this.redis, 'request', 'admin-queue'), prefix: this.bullPrefix });
      // Enqueue failures reach the caller (503); connection-level errors are only logged.
      queue.on('error', (error) => new Logger('ReconcilerQueue').warn(`reconciler queue connection: ${error.message}`));
      this.queue = queue;
    }
    return this.queue;
  }
}
