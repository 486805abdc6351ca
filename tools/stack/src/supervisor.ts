/**
 * How the local stack restarts an app that died on its own, as compose
 * (`restart: unless-stopped`) and Kubernetes (CrashLoopBackOff) do for theirs:
 * after a delay that doubles from `firstDelayMs` to `maxDelayMs` and starts
 * over once an instance has stayed up for `resetAfterMs`; an app that crashes
 * `crashLoopLimit` times within `crashLoopWindowMs` is left down, and we say so.
 */
export interface RestartPolicy {
  firstDelayMs: number;
  maxDelayMs: number;
  resetAfterMs: number;
  crashLoopLimit: number;
  crashLoopWindowMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  firstDelayMs: 500,
  maxDelayMs: 10_000,
  resetAfterMs: 60_000,
  crashLoopLimit: 5,
  crashLoopWindowMs: 60_000,
};

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What to do about one unexpected exit, and the line that says so. */
export type RestartDecision = { restart: true; delayMs: number; message: string } | { restart: false; message: string };

export function describeExit(exit: ProcessExit): string {
  return exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
}

/**
 * Crash bookkeeping per instance: pure decisions (the stack spawns and
 * schedules), so the policy is testable without processes or clocks.
 */
export class Supervisor {
  private readonly crashes = new Map<string, number[]>();
  private readonly delays = new Map<string, number>();

  constructor(readonly policy: RestartPolicy) {}

  /** An instance that was not asked to stop has exited after running `uptimeMs`. */
  exited(instance: string, exit: ProcessExit, uptimeMs: number, now = Date.now()): RestartDecision {
    const recent = (this.crashes.get(instance) ?? []).filter((at) => now - at < this.policy.crashLoopWindowMs);
    recent.push(now);
    this.crashes.set(instance, recent);
    const how = describeExit(exit);
    const window = `${this.policy.crashLoopWindowMs / 1000} s`;
    if (recent.length >= this.policy.crashLoopLimit) {
      return { restart: false, message: `stack: ${instance} died (${how}); it crashed ${recent.length} times within ${window}, so it is NOT restarted again (see ${instance}.log)` };
    }
    // A long healthy run starts the backoff over, like a container's restart delay.
    const previous = uptimeMs >= this.policy.resetAfterMs ? undefined : this.delays.get(instance);
    const delayMs = previous === undefined ? this.policy.firstDelayMs : Math.min(previous * 2, this.policy.maxDelayMs);
    this.delays.set(instance, delayMs);
    return {
      restart: true,
      delayMs,
      message: `stack: ${instance} died (${how}) after ${(uptimeMs / 1000).toFixed(1)} s; restarting it in ${delayMs / 1000} s (crash ${recent.length} within ${window}; at ${this.policy.crashLoopLimit} it is left down)`,
    };
  }

  /** Forget an instance (stopped on purpose, or started afresh by hand). */
  forget(instance: string): void {
    this.crashes.delete(instance);
    this.delays.delete(instance);
  }
}
