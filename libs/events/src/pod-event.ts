/**
 * The pod lifecycle event the watcher appends to `stream:pods` and the
 * reconciler consumes. Flat string fields (a Redis Stream entry is a flat
 * field list); trace context rides along as W3C `traceparent`/`tracestate`.
 */
export interface PodEvent {
  type: 'pod.upsert' | 'pod.deleted';
  name: string;
  uid: string;
  ready: boolean;
  terminating: boolean;
  labels: Record<string, string>;
  resourceVersion: string;
  /** Leader term (Lease leaseTransitions) of the watcher that published it. */
  term: number;
  trace: Record<string, string>;
}

export function encodePodEvent(event: PodEvent): string[] {
  const fields = [
    'type', event.type, 'name', event.name, 'uid', event.uid,
    'ready', event.ready ? '1' : '0', 'terminating', event.terminating ? '1' : '0',
    'labels', JSON.stringify(event.labels), 'rv', event.resourceVersion, 'term', String(event.term),
  ];
  for (const [key, value] of Object.entries(event.trace)) fields.push(key, value);
  return fields;
}

/** Parses a stream entry; null for an entry that is not a well-formed pod event (it is acked and counted, not retried). */
export function decodePodEvent(fields: string[]): PodEvent | null {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i], fields[i + 1]);
  const type = map.get('type');
  const name = map.get('name');
  const uid = map.get('uid');
  const term = Number(map.get('term'));
  if ((type !== 'pod.upsert' && type !== 'pod.deleted') || !name || uid === undefined || !Number.isInteger(term)) return null;
  let labels: Record<string, string> = {};
  try {
    labels = JSON.parse(map.get('labels') ?? '{}') as Record<string, string>;
  } catch {
    return null;
  }
  const trace: Record<string, string> = {};
  for (const key of ['traceparent', 'tracestate']) {
    const value = map.get(key);
    if (value) trace[key] = value;
  }
  return {
    type, name, uid, labels, term, trace,
    ready: map.get('ready') === '1',
    terminating: map.get('terminating') === '1',
    resourceVersion: map.get('rv') ?? '',
  };
}

/** The reconciler replicas' consumer group on the pod stream. */
export const POD_STREAM_GROUP = 'reconciler';
