import Redis from 'ioredis';
import { waitFor } from '@smart-router/testing';
import type { LocalStack } from './stack';

/** `GET /sim/carrier/calls/{sid}` (SPEC 11): the call as the simulated carrier sees it. */
export interface CarrierView {
  state: string;
  streams: { pod: string | null; opened_at: number | null; first_media_at: number | null; closed_at: number | null }[];
}

/**
 * The simulated carrier and agents of a running stack, as the re-homing
 * end-to-end tests drive them: place a call, read it, fault an agent, and wait
 * for media on the first stream or on a stream from another pod.
 */
export class CarrierClient {
  constructor(private readonly stack: LocalStack) {}

  get simUrl(): string {
    return `http://127.0.0.1:${this.stack.ports.sim}`;
  }

  /** Places a call (`POST /sim/carrier/calls`) and answers its call_sid. */
  async place(provider: 'twilio' | 'plivo'): Promise<string> {
    const response = await fetch(`${this.simUrl}/sim/carrier/calls`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ provider }) });
    if (response.status !== 201) throw new Error(`the carrier answered ${response.status} to placing a ${provider} call`);
    return ((await response.json()) as { call_sid: string }).call_sid;
  }

  async view(sid: string): Promise<CarrierView> {
    return (await (await fetch(`${this.simUrl}/sim/carrier/calls/${sid}`)).json()) as CarrierView;
  }

  /** `POST /sim/agents/{pod}/freeze|thaw|crash`; anything but 200 is an error. */
  async fault(pod: string, action: 'freeze' | 'thaw' | 'crash'): Promise<void> {
    const response = await fetch(`${this.simUrl}/sim/agents/${pod}/${action}`, { method: 'POST' });
    if (response.status !== 200) throw new Error(`${action} ${pod} answered ${response.status}`);
  }

  /** Thaws every pod, ignoring failures: a frozen agent's pending work waits for its thaw, so a stack stops promptly after. */
  async thawAll(pods: readonly string[]): Promise<void> {
    for (const pod of pods) await fetch(`${this.simUrl}/sim/agents/${pod}/thaw`, { method: 'POST' }).catch(() => undefined);
  }

  /** The call's first stream with media flowing. */
  streaming(sid: string): Promise<CarrierView> {
    return waitFor(async () => {
      const current = await this.view(sid);
      return current.state === 'in-progress' && current.streams[0]?.first_media_at ? current : null;
    }, { timeoutMs: 10000, what: `${sid} streaming` });
  }

  /** The call's newest stream once it is on another pod than `from` with media flowing. */
  streamingElsewhere(sid: string, from: string, timeoutMs: number): Promise<CarrierView['streams'][number]> {
    return waitFor(async () => {
      const current = await this.view(sid);
      const last = current.streams[current.streams.length - 1];
      return current.state === 'in-progress' && current.streams.length >= 2 && last.pod && last.pod !== from && last.first_media_at ? last : null;
    }, { timeoutMs, intervalMs: 50, what: `${sid} streaming from a pod other than ${from}` });
  }

  /** Waits until `count` pods are enrolled by their heartbeats (only an enrolled pod can be declared dead) and allocatable. */
  async waitEnrolled(count: number): Promise<void> {
    const redis = new Redis(this.stack.redisUrl, { maxRetriesPerRequest: 1 });
    try {
      await waitFor(async () => (await redis.zcard(this.stack.keys.heartbeats())) === count, { timeoutMs: 20000, what: 'every pod enrolled by its heartbeats' });
    } finally {
      await redis.quit();
    }
    await waitFor(async () => {
      const status = (await (await fetch(`${this.stack.url('gateway')}/api/v1/status`)).json()) as { pools: Record<string, { available: string[] }> };
      return Object.values(status.pools).flatMap((pool) => pool.available).length === count;
    }, { timeoutMs: 20000, what: 'every pod allocatable' });
  }
}
