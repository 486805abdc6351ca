import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AppsV1Api, CoordinationV1Api, CoreV1Api, KubeConfig, PatchStrategy, V1Pod, makeInformer, setHeaderOptions } from '@kubernetes/client-node';
import { waitFor } from '@smart-router/testing';
import { parseLabelSelector } from './label-selector';
import { READY_ANNOTATION } from './cluster';
import { SimCluster } from './sim-cluster';

const run = promisify(execFile);
const NS = 'voice-system';

function isReady(pod: V1Pod | undefined): boolean {
  return pod?.status?.conditions?.some((condition) => condition.type === 'Ready' && condition.status === 'True') ?? false;
}

describe('simulated Kubernetes API, driven by the real @kubernetes/client-node', () => {
  let dir: string;
  let cluster: SimCluster;
  let config: KubeConfig;
  let core: CoreV1Api;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sim-'));
    cluster = await SimCluster.start({ replicas: 5, kubeconfigPath: join(dir, 'kubeconfig'), timings: { readyDelayMs: 50, terminationDelayMs: 50, recreateDelayMs: 20 } });
    config = new KubeConfig();
    config.loadFromFile(join(dir, 'kubeconfig'));
    core = config.makeApiClient(CoreV1Api);
  });

  afterEach(async () => {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists the StatefulSet pods by label selector; they start not Ready and become Ready', async () => {
    const initial = await core.listNamespacedPod({ namespace: NS, labelSelector: 'app=voice-agent' });
    expect(initial.items.map((pod) => pod.metadata?.name).sort()).toEqual(['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4']);
    expect(new Set(initial.items.map((pod) => pod.metadata?.uid)).size).toBe(5);
    expect(initial.metadata?.resourceVersion).toMatch(/^\d+$/);
    expect((await core.listNamespacedPod({ namespace: NS, labelSelector: 'app=other' })).items).toHaveLength(0);
    expect((await core.listNamespacedPod({ namespace: 'elsewhere' })).items).toHaveLength(0);

    const ready = await waitFor(async () => {
      const pods = (await core.listNamespacedPod({ namespace: NS, labelSelector: 'app=voice-agent' })).items;
      return pods.every(isReady) ? pods : null;
    }, { what: 'all pods Ready' });
    expect(ready).toHaveLength(5);
  });

  it('a deleted pod terminates, disappears, and comes back with the same name, a new UID, not Ready then Ready', async () => {
    await waitFor(() => cluster.isReady('voice-agent-2'));
    const before = await core.readNamespacedPod({ name: 'voice-agent-2', namespace: NS });
    const informer = makeInformer<V1Pod>(config, `/api/v1/namespaces/${NS}/pods`, () => core.listNamespacedPod({ namespace: NS, labelSelector: 'app=voice-agent' }), 'app=voice-agent');
    const seen: string[] = [];
    const record = (kind: string) => (pod: V1Pod) => {
      if (pod.metadata?.name === 'voice-agent-2') seen.push(`${kind}:${pod.metadata.uid === before.metadata?.uid ? 'old' : 'new'}:${pod.metadata.deletionTimestamp ? 'terminating' : isReady(pod) ? 'ready' : 'not-ready'}`);
    };
    informer.on('add', record('add'));
    informer.on('update', record('update'));
    informer.on('delete', record('delete'));
    await informer.start();
    try {
      await core.deleteNamespacedPod({ name: 'voice-agent-2', namespace: NS });
      await waitFor(() => seen.includes('update:new:ready'), { what: 'the recreated pod to be Ready' });
      expect(seen).toEqual(['add:old:ready', 'update:old:terminating', 'delete:old:terminating', 'add:new:not-ready', 'update:new:ready']);
      const after = await core.readNamespacedPod({ name: 'voice-agent-2', namespace: NS });
      expect(after.metadata?.uid).not.toBe(before.metadata?.uid);
    } finally {
      await informer.stop();
    }
  });

  it('an informer whose history expired during a dropped watch relists and still sees the deletion', async () => {
    const informer = makeInformer<V1Pod>(config, `/api/v1/namespaces/${NS}/pods`, () => core.listNamespacedPod({ namespace: NS, labelSelector: 'app=voice-agent' }), 'app=voice-agent');
    const uids = new Map<string, string>();
    const deleted: string[] = [];
    informer.on('add', (pod) => uids.set(pod.metadata!.name!, pod.metadata!.uid!));
    informer.on('update', (pod) => uids.set(pod.metadata!.name!, pod.metadata!.uid!));
    informer.on('delete', (pod) => deleted.push(pod.metadata!.name!));
    await informer.start();
    try {
      await waitFor(() => uids.size === 5 && cluster.openWatches === 1, { what: 'informer synced and watching' });
      cluster.stallWatches();
      const oldUid = uids.get('voice-agent-4');
      cluster.scale(4);
      await waitFor(() => !cluster.getPod('voice-agent-4'), { what: 'voice-agent-4 gone' });
      const oldUid1 = uids.get('voice-agent-1');
      cluster.deletePod('voice-agent-1', 0);
      await waitFor(() => cluster.getPod('voice-agent-1') && cluster.getPod('voice-agent-1')!.metadata.uid !== oldUid1, { what: 'voice-agent-1 recreated' });
      // The stalled watch delivered nothing; the informer still believes the old state.
      expect(uids.get('voice-agent-4')).toBe(oldUid);
      cluster.expireHistory();
      cluster.dropWatches();
      await waitFor(() => deleted.includes('voice-agent-4'), { what: 'the relist to report the deletion' });
      await waitFor(() => uids.get('voice-agent-1') === cluster.getPod('voice-agent-1')!.metadata.uid, { what: 'the relist to report the new UID' });
    } finally {
      await informer.stop();
    }
  });

  it('a watch from a too-old resourceVersion gets an ERROR event with 410', async () => {
    const first = await core.listNamespacedPod({ namespace: NS });
    cluster.expireHistory();
    const response = await fetch(`${cluster.url}/api/v1/namespaces/${NS}/pods?watch=true&resourceVersion=${first.metadata?.resourceVersion}`);
    expect(response.status).toBe(200);
    const [line] = (await response.text()).trim().split('\n');
    expect(JSON.parse(line)).toMatchObject({ type: 'ERROR', object: { kind: 'Status', code: 410 } });
  });

  it('scales the StatefulSet through its scale subresource: new ordinals appear, the highest go away', async () => {
    const apps = config.makeApiClient(AppsV1Api);
    const scaled = await apps.patchNamespacedStatefulSetScale({ name: 'voice-agent', namespace: NS, body: { spec: { replicas: 7 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    expect(scaled.spec?.replicas).toBe(7);
    await waitFor(async () => (await core.listNamespacedPod({ namespace: NS })).items.length === 7, { what: '7 pods' });
    const read = await apps.readNamespacedStatefulSetScale({ name: 'voice-agent', namespace: NS });
    expect(read.status?.selector).toBe('app=voice-agent');
    await apps.patchNamespacedStatefulSetScale({ name: 'voice-agent', namespace: NS, body: { spec: { replicas: 5 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    await waitFor(async () => (await core.listNamespacedPod({ namespace: NS })).items.length === 5, { what: 'back to 5 pods' });
    expect(cluster.listPods().map((pod) => pod.metadata.name).sort()).toEqual(['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4']);
  });

  it('the ready annotation flips the Ready condition, by merge patch and by JSON patch', async () => {
    await waitFor(() => cluster.isReady('voice-agent-0'));
    await core.patchNamespacedPod({ name: 'voice-agent-0', namespace: NS, body: { metadata: { annotations: { [READY_ANNOTATION]: 'false' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    expect(isReady(await core.readNamespacedPod({ name: 'voice-agent-0', namespace: NS }))).toBe(false);
    await core.patchNamespacedPod({ name: 'voice-agent-0', namespace: NS, body: [{ op: 'replace', path: `/metadata/annotations/${READY_ANNOTATION.replace('/', '~1')}`, value: 'true' }] }, setHeaderOptions('Content-Type', PatchStrategy.JsonPatch));
    expect(isReady(await core.readNamespacedPod({ name: 'voice-agent-0', namespace: NS }))).toBe(true);
  });

  it('Leases have optimistic concurrency: create once, stale update 409, fresh update wins', async () => {
    const leases = config.makeApiClient(CoordinationV1Api);
    const created = await leases.createNamespacedLease({ namespace: NS, body: { metadata: { name: 'watcher' }, spec: { holderIdentity: 'a', leaseTransitions: 0 } } });
    await expect(leases.createNamespacedLease({ namespace: NS, body: { metadata: { name: 'watcher' }, spec: { holderIdentity: 'b' } } })).rejects.toMatchObject({ code: 409 });
    const renewed = await leases.replaceNamespacedLease({ name: 'watcher', namespace: NS, body: { ...created, spec: { holderIdentity: 'a', leaseTransitions: 0 } } });
    expect(renewed.metadata?.resourceVersion).not.toBe(created.metadata?.resourceVersion);
    await expect(leases.replaceNamespacedLease({ name: 'watcher', namespace: NS, body: { ...created, spec: { holderIdentity: 'b', leaseTransitions: 1 } } })).rejects.toMatchObject({ code: 409 });
    expect((await leases.readNamespacedLease({ name: 'watcher', namespace: NS })).spec?.holderIdentity).toBe('a');
    await expect(leases.readNamespacedLease({ name: 'missing', namespace: NS })).rejects.toMatchObject({ code: 404 });
  });

  it('kubectl works against it with the written kubeconfig: get, annotate, scale, delete', async () => {
    const kubectl = (...args: string[]) => run('kubectl', ['--kubeconfig', join(dir, 'kubeconfig'), ...args], { timeout: 20000 });
    const { stdout } = await kubectl('get', 'pods', '-o', 'name');
    expect(stdout.trim().split('\n').sort()).toEqual(['pod/voice-agent-0', 'pod/voice-agent-1', 'pod/voice-agent-2', 'pod/voice-agent-3', 'pod/voice-agent-4']);
    await waitFor(() => cluster.isReady('voice-agent-3'));
    await kubectl('annotate', '--overwrite', 'pod', 'voice-agent-3', `${READY_ANNOTATION}=false`);
    expect(cluster.isReady('voice-agent-3')).toBe(false);
    const table = (await kubectl('get', 'pods')).stdout.split('\n');
    expect(table[0].split(/\s+/)).toEqual(['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE']);
    expect(table.find((line) => line.startsWith('voice-agent-3 '))?.split(/\s+/).slice(0, 3)).toEqual(['voice-agent-3', '0/1', 'Running']);
    expect(table.find((line) => line.startsWith('voice-agent-2 '))?.split(/\s+/).slice(0, 3)).toEqual(['voice-agent-2', '1/1', 'Running']);
    await kubectl('scale', 'statefulset', 'voice-agent', '--replicas=6');
    await waitFor(() => cluster.getPod('voice-agent-5'), { what: 'voice-agent-5' });
    const uid = cluster.getPod('voice-agent-0')!.metadata.uid;
    await kubectl('delete', 'pod', 'voice-agent-0', '--wait=false');
    await waitFor(() => cluster.getPod('voice-agent-0') && cluster.getPod('voice-agent-0')!.metadata.uid !== uid, { what: 'voice-agent-0 recreated' });
    const json = JSON.parse((await kubectl('get', 'pod', 'voice-agent-0', '-o', 'json')).stdout);
    expect(json.metadata.uid).toBe(cluster.getPod('voice-agent-0')!.metadata.uid);
  }, 60000);

  it('kubectl rollout restart replaces every pod, highest ordinal first, never two down at once', async () => {
    await waitFor(() => cluster.listPods().every((pod) => cluster.isReady(pod.metadata.name)), { what: 'all Ready' });
    const before = new Map(cluster.listPods().map((pod) => [pod.metadata.name, pod.metadata.uid]));
    const replacedOrder: string[] = [];
    let mostDown = 0;
    const onEvent = () => {
      const pods = cluster.listPods();
      mostDown = Math.max(mostDown, 5 - pods.filter((pod) => cluster.isReady(pod.metadata.name)).length);
      for (const pod of pods) if (pod.metadata.uid !== before.get(pod.metadata.name) && !replacedOrder.includes(pod.metadata.name)) replacedOrder.push(pod.metadata.name);
    };
    cluster.state.on('pod', onEvent);
    try {
      await run('kubectl', ['--kubeconfig', join(dir, 'kubeconfig'), 'rollout', 'restart', 'statefulset/voice-agent'], { timeout: 20000 });
      const replaced = () => cluster.listPods().filter((pod) => pod.metadata.uid !== before.get(pod.metadata.name) && cluster.isReady(pod.metadata.name));
      await waitFor(() => replaced().length === 5, { what: 'every pod replaced and Ready' });
    } finally {
      cluster.state.off('pod', onEvent);
    }
    expect(replacedOrder).toEqual(['voice-agent-4', 'voice-agent-3', 'voice-agent-2', 'voice-agent-1', 'voice-agent-0']);
    expect(mostDown).toBe(1);
  });
});

describe('label selectors', () => {
  it.each([
    ['app=voice-agent', { app: 'voice-agent' }, true],
    ['app=voice-agent', { app: 'other' }, false],
    ['app==voice-agent,tier!=gold', { app: 'voice-agent', tier: 'basic' }, true],
    ['app=voice-agent,tier!=gold', { app: 'voice-agent', tier: 'gold' }, false],
    ['tier in (gold, basic)', { tier: 'basic' }, true],
    ['tier notin (gold,basic)', { tier: 'gold' }, false],
    ['tier', {}, false],
    ['!tier', {}, true],
    ['', { anything: 'x' }, true],
  ])('%s matches %j -> %s', (selector, labels, expected) => {
    expect(parseLabelSelector(selector)(labels as Record<string, string>)).toBe(expected);
  });
});
