import { LoggerService } from '@nestjs/common';
import { Counter } from '@opentelemetry/api';
import type Redis from 'ioredis';
import { PoolScripts } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';

/**
 * Notices a new primary behind the same settings: a Sentinel failover (the
 * client reconnects after the sentinels' `+switch-master`), a cluster
 * failover or a restarted server all show up as a different run_id of the
 * server that answers for the pool state.
 *
 * Why it matters: replication is asynchronous, so the last writes before a
 * failover may be missing on the promoted replica while the epoch marker
 * survives. The data-loss check then sees nothing wrong, a pod whose
 * allocation vanished looks free, and calls double up. A full reconcile and a
 * zombie sweep right after the switch repair what can be repaired from
 * Kubernetes and the call records, instead of waiting for the schedules.
 *
 * Checked on every reconnect of the state connection and by the data-loss
 * check job (every 2 s), whichever comes first.
 */
export class PrimaryWatch {
  private known: string | null = null;
  private readonly changes: Counter;
  private checking: Promise<boolean> | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly scripts: PoolScripts,
    private readonly onNewPrimary: (reason: string) => Promise<void>,
    telemetry: Telemetry,
    private readonly logger: LoggerService,
  ) {
    this.changes = telemetry.meter().createCounter('smart_router_primary_changes_total', { description: 'New Redis primaries seen (failover or restart)' });
  }

  start(): void {
    this.redis.on('ready', () => {
      void this.check().catch((error: Error) => this.logger.warn(`primary check after reconnect failed (the data-loss check retries): ${error.message}`, 'Failover'));
    });
  }

  /** True when the primary changed since the last check (and recovery ran). Concurrent callers share one check. */
  check(): Promise<boolean> {
    this.checking ??= this.runCheck().finally(() => {
      this.checking = null;
    });
    return this.checking;
  }

  private async runCheck(): Promise<boolean> {
    const current = await this.scripts.primaryId();
    const previous = this.known;
    if (previous === current) return false;
    if (previous === null) {
      this.known = current;
      return false;
    }
    this.changes.add(1);
    this.logger.warn(`new Redis primary (run_id ${previous.slice(0, 8)} -> ${current.slice(0, 8)}): full reconcile and zombie sweep now`, 'Failover');
    await this.onNewPrimary('failover');
    // Remembered only once recovery succeeded: a failed one is retried by the next check.
    this.known = current;
    return true;
  }
}
