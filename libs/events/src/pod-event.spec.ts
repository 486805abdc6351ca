import { decodePodEvent, encodePodEvent, PodEvent } from './pod-event';

describe('pod event codec', () => {
  const event: PodEvent = {
    type: 'pod.upsert', name: 'voice-agent-1', uid: 'u-1', ready: true, terminating: false,
    labels: { app: 'voice-agent' }, resourceVersion: '42', term: 3, trace: { traceparent: '00-abc-def-01' },
  };

  it('round-trips every field', () => {
    expect(decodePodEvent(encodePodEvent(event))).toEqual(event);
  });

  it('rejects entries that are not pod events', () => {
    expect(decodePodEvent(['type', 'call.allocated', 'name', 'x', 'uid', 'u', 'term', '1'])).toBeNull();
    expect(decodePodEvent(['type', 'pod.upsert', 'uid', 'u', 'term', '1'])).toBeNull();
    expect(decodePodEvent(['type', 'pod.upsert', 'name', 'x', 'uid', 'u', 'term', 'x'])).toBeNull();
    expect(decodePodEvent([...encodePodEvent(event).slice(0, 10), 'labels', '{bad'])).toBeNull();
  });
});
