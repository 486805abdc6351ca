/**
 * The reconciler's periodic work: BullMQ job schedulers with fixed ids (so an
 * upsert at every start never duplicates them), each next to its interval.
 */
export const RECONCILER_QUEUE = 'reconciler';

export const JOBS = {
  fullReconcile: { name: 'full-reconcile', everyMs: 60000 },
  zombieSweep: { name: 'zombie-sweep', everyMs: 30000 },
  dataLossCheck: { name: 'data-loss-check', everyMs: 2000 },
  staleCallReaper: { name: 'stale-call-reaper', everyMs: 60000 },
  /** Fleet autoscaler and call-safe scale-down (apps/reconciler/src/fleet.service.ts). */
  fleetStep: { name: 'fleet-step', everyMs: 2000 },
  /** Releases calls not connected by their deadline (CONNECT_TIMEOUT_SECONDS); a no-op when none are pending. */
  connectTimeout: { name: 'connect-timeout', everyMs: 1000 },
  /** Voice-agent liveness (SPEC 11): suspect and dead pods on the Redis clock, media stalls (apps/reconciler/src/liveness.job.ts). */
  liveness: { name: 'liveness', everyMs: 1000 },
  /** The rollout guardrail (SPEC 12): rolls a failing canary back by itself (apps/reconciler/src/guardrail.job.ts). */
  rolloutGuardrail: { name: 'rollout-guardrail', everyMs: 2000 },
} as const;

export type JobName = (typeof JOBS)[keyof typeof JOBS]['name'];

export const JOB_NAMES: readonly JobName[] = Object.values(JOBS).map((job) => job.name);
