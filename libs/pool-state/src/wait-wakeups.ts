import type Redis from 'ioredis';

/**
 * One waiting request's wake-ups. A wake-up that arrives while the request is
 * between two checks is kept, so none is lost.
 */
export class WakeTicket {
  private woken = false;
  private release: (() => void) | null = null;

  constructor(private readonly onDispose: (ticket: WakeTicket) => void) {}

  wake(): void {
    this.woken = true;
    this.release?.();
  }

  /** Resolves at the next wake-up or after `ms`, whichever comes first. */
  next(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.release = null;
        this.woken = false;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.release = done;
    });
  }

  dispose(): void {
    this.release?.();
    this.onDispose(this);
  }
}

/**
 * Wakes waiting requests without a polling loop: the scripts that hand a pod
 * to a waiter, or time it out, publish its call_sid on one channel; this
 * process holds one subscriber connection for all its waiting requests. A
 * reconnect of that connection may have lost messages, so every waiting
 * request re-checks once after it (the bounded safety re-check; the other is
 * each request's own deadline).
 */
export class WaitWakeups {
  private readonly tickets = new Map<string, Set<WakeTicket>>();
  private subscriber: Redis | null = null;
  private subscribed: Promise<void> | null = null;

  constructor(private readonly connect: () => Redis, private readonly channel: string) {}

  /**
   * Subscribes once (on the first waiting request); later calls return at
   * once. Waits at most `timeoutMs`: without the subscription a request still
   * gets its outcome at its deadline check, only later.
   */
  async ready(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([this.subscribe().catch(() => undefined), bound]);
    clearTimeout(timer);
  }

  private subscribe(): Promise<void> {
    if (!this.subscribed) {
      const subscriber = this.connect();
      this.subscriber = subscriber;
      let connectedBefore = false;
      subscriber.on('message', (channel: string, callSid: string) => {
        if (channel === this.channel) this.wake(callSid);
      });
      subscriber.on('ready', () => {
        if (connectedBefore) for (const callSid of this.tickets.keys()) this.wake(callSid);
        connectedBefore = true;
      });
      this.subscribed = subscriber.subscribe(this.channel).then(() => undefined);
      // A request must not hang on a subscription that cannot happen: its deadline check still decides.
      this.subscribed.catch(() => undefined);
    }
    return this.subscribed;
  }

  /** Register before the allocation script runs, so a hand-off right after it is not missed. */
  register(callSid: string): WakeTicket {
    const ticket = new WakeTicket((done) => {
      const set = this.tickets.get(callSid);
      set?.delete(done);
      if (set && set.size === 0) this.tickets.delete(callSid);
    });
    const set = this.tickets.get(callSid) ?? new Set<WakeTicket>();
    set.add(ticket);
    this.tickets.set(callSid, set);
    return ticket;
  }

  /** Requests of this process waiting right now. */
  get size(): number {
    let count = 0;
    for (const set of this.tickets.values()) count += set.size;
    return count;
  }

  private wake(callSid: string): void {
    for (const ticket of this.tickets.get(callSid) ?? []) ticket.wake();
  }

  async close(): Promise<void> {
    for (const set of this.tickets.values()) for (const ticket of set) ticket.wake();
    const subscriber = this.subscriber;
    this.subscriber = null;
    if (subscriber) await subscriber.quit().catch(() => subscriber.disconnect());
  }
}
