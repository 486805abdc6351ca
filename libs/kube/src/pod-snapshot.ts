import type { V1Pod } from '@kubernetes/client-node';

/** Label that pins a pod to a tier (SPEC section 6 item 1). */
export const TIER_LABEL = 'smart-router.io/tier';

/** What the router needs to know about a pod, taken from one observed version of it. */
export interface PodSnapshot {
  name: string;
  uid: string;
  ready: boolean;
  /** deletionTimestamp is set: never allocatable, whatever the Ready condition says. */
  terminating: boolean;
  labels: Record<string, string>;
  resourceVersion: string;
}

export function podSnapshot(pod: V1Pod): PodSnapshot | null {
  const name = pod.metadata?.name;
  const uid = pod.metadata?.uid;
  if (!name || !uid) return null;
  const ready = (pod.status?.conditions ?? []).some((condition) => condition.type === 'Ready' && condition.status === 'True');
  return {
    name,
    uid,
    ready: ready && pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed',
    terminating: Boolean(pod.metadata?.deletionTimestamp),
    labels: { ...(pod.metadata?.labels ?? {}) },
    resourceVersion: pod.metadata?.resourceVersion ?? '',
  };
}
