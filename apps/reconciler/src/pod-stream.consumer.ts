import type Redis from 'ioredis';
import { LoggerService } from '@nestjs/common';
import { ObservableGauge } from '@opentelemetry/api';
import { POD_STREAM_GROUP, decodePodEvent } from '@smart-router/events';
import { RedisKeys } from '@smart-router/redis-keys';
import { Telemetry } from '@smart-router/telemetry';
import { PoolReconcileService } from './pool-reconcile.service';

/** Entries read back from our pending list may have been trimmed away: fields null. */
type StreamReply = [string, [string, string[] | null][]][] | null;

/**
 * Reads the pod stream through the consumer group: at-least-once, ack after
 * the script applied the event, claim what a dead replica left pending.
 * A NOGROUP answer means the stream vanished (FLUSHALL, empty restart): the
 * group is recreated and the pools are rebuilt before reading on.
 */
export class PodStreamConsumer {
  private running = false;
  /** Start with (and return to, after an error) our own pending entries. */
  private backlog = true;
  private loop: Promise<void> | null = null;
  private lag = 0;
  private pending = 0;
  private readonly gauges: ObservableGauge[] = [];
  lastReadAt = 0;

  constructor(
    private readonly reader: Redis,
    private readonly keys: RedisKeys,
    private readonly reconcile: PoolReconcileService,
    private readonly consumer: string,
    private readonly claimIdleMs: number,
    private readonly onStateLost: () => Promise<void>,
    telemetry: Telemetry,
    private readonly logger: LoggerService,
  ) {
    const meter = telemetry.meter();
    const lag = meter.createObservableGauge('smart_router_pod_stream_lag', { description: 'Pod events not yet delivered to the group' });
    lag.addCallback((result) => result.observe(this.lag));
    const pending = meter.createObservableGauge('smart_router_pod_stream_pending', { description: 'Pod events delivered but not acknowledged' });
    pending.addCallback((result) => result.observe(this.pending));
    this.gauges.push(lag, pending);
  }

  get isRunning(): boolean {
    return this.running;
  }

  async start(): Promise<void> {
    await this.ensureGroup();
    this.running = true;
    this.loop = this.run();
  }

  /** Stops after the current batch; leaves the group only with nothing pending. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    try {
      const summary = (await this.reader.xpending(this.keys.podStream(), POD_STREAM_GROUP, '-', '+', 1, this.consumer)) as unknown[];
      if (summary.length === 0) await this.reader.xgroup('DELCONSUMER', this.keys.podStream(), POD_STREAM_GROUP, this.consumer);
    } catch {
      // Redis unavailable while shutting down: the group keeps the consumer; harmless.
    }
  }

  private async ensureGroup(): Promise<void> {
    try {
      await this.reader.xgroup('CREATE', this.keys.podStream(), POD_STREAM_GROUP, '0', 'MKSTREAM');
    } catch (error) {
      if (!/BUSYGROUP/.test((error as Error).message)) throw error;
    }
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        await this.claimAbandoned();
        // Our own unacknowledged events first ('0'), then new ones ('>'): an event whose
        // apply failed is retried before anything newer about the same pod is applied.
        const from = this.backlog ? '0' : '>';
        const reply = (await this.reader.xreadgroup(
          'GROUP', POD_STREAM_GROUP, this.consumer, 'COUNT', 100, 'BLOCK', 1000, 'STREAMS', this.keys.podStream(), from,
        )) as StreamReply;
        this.lastReadAt = Date.now();
        const entries = reply?.[0]?.[1] ?? [];
        if (this.backlog && entries.length === 0) this.backlog = false;
        await this.handle(entries);
        await this.observeLag();
      } catch (error) {
        this.backlog = true;
        const message = (error as Error).message ?? String(error);
        if (/NOGROUP/.test(message)) {
          this.logger.warn('pod stream or group missing (Redis flushed or restarted empty): recreating and rebuilding', 'PodStream');
          await this.recover();
        } else {
          this.logger.warn(`pod stream read failed: ${message}`, 'PodStream');
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
    }
  }

  private async recover(): Promise<void> {
    try {
      await this.ensureGroup();
      await this.onStateLost();
    } catch (error) {
      this.logger.warn(`rebuild after state loss failed, retrying: ${(error as Error).message}`, 'PodStream');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  private async handle(entries: [string, string[] | null][]): Promise<void> {
    for (const [id, fields] of entries) {
      const event = fields ? decodePodEvent(fields) : null;
      if (event) {
        const applied = await this.reconcile.applyEvent(event);
        if (!applied) {
          // Tier config gone: rebuild from a fresh LIST (which supersedes this event), then ack.
          await this.onStateLost();
        }
      } else {
        this.logger.warn(`dropping malformed pod event ${id}`, 'PodStream');
      }
      await this.reader.xack(this.keys.podStream(), POD_STREAM_GROUP, id);
    }
  }

  private async claimAbandoned(): Promise<void> {
    const [, entries] = (await this.reader.xautoclaim(
      this.keys.podStream(), POD_STREAM_GROUP, this.consumer, this.claimIdleMs, '0-0', 'COUNT', 100,
    )) as [string, [string, string[] | null][]];
    const live = entries.filter((entry): entry is [string, string[]] => Array.isArray(entry[1]));
    if (live.length > 0) {
      this.logger.warn(`claimed ${live.length} pod event(s) left pending by a dead consumer`, 'PodStream');
      await this.handle(live);
    }
  }

  private async observeLag(): Promise<void> {
    const groups = (await this.reader.xinfo('GROUPS', this.keys.podStream())) as unknown[][];
    for (const group of groups) {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < group.length; i += 2) info.set(String(group[i]), group[i + 1]);
      if (info.get('name') === POD_STREAM_GROUP) {
        this.pending = Number(info.get('pending') ?? 0);
        this.lag = Number(info.get('lag') ?? 0);
      }
    }
  }
}
