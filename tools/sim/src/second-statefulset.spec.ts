import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AppsV1Api, CoreV1Api, KubeConfig, PatchStrategy, V1StatefulSet, setHeaderOptions } from '@kubernetes/client-node';
import { waitFor } from '@smart-router/testing';
import { SimCluster } from './sim-cluster';

const run = promisify(execFile);
const NS = 'voice-system';
const VERSION_LABEL = 'app.kubernetes.io/version';

/**
 * A second agent version as its own StatefulSet under the same selector
 * (SPEC 12), created, scaled and deleted through the simulated API by the real
 * @kubernetes/client-node and kubectl.
 */
describe('simulated Kubernetes API: a second StatefulSet', () => {
  let dir: string;
  let cluster: SimCluster;
  let apps: AppsV1Api;
  let core: CoreV1Api;
  const podNames = async (selector = 'app=voice-agent') =>
    (await core.listNamespacedPod({ namespace: NS, labelSelector: selector })).items.filter((pod) => !pod.metadata?.deletionTimestamp).map((pod) => pod.metadata!.name!).sort();

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sim-v2-'));
    cluster = await SimCluster.start({ replicas: 2, kubeconfigPath: join(dir, 'kubeconfig'), timings: { readyDelayMs: 20, terminationDelayMs: 20, recreateDelayMs: 20 } });
    const config = new KubeConfig();
    config.loadFromFile(join(dir, 'kubeconfig'));
    apps = config.makeApiClient(AppsV1Api);
    core = config.makeApiClient(CoreV1Api);
  });
  afterEach(async () => {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const manifest = (name: string, replicas: number, templateLabels: Record<string, string>, selector = templateLabels): V1StatefulSet => ({
    apiVersion: 'apps/v1', kind: 'StatefulSet',
    metadata: { name, namespace: NS },
    spec: { serviceName: 'voice-agent', replicas, selector: { matchLabels: selector }, template: { metadata: { labels: templateLabels }, spec: { containers: [{ name: 'voice-agent', image: 'example/agent:2.0.0' }] } } },
  });

  it('creates, scales and deletes a second StatefulSet whose pods carry its template labels', async () => {
    const v2 = { app: 'voice-agent', [VERSION_LABEL]: '2.0.0' };
    const created = await apps.createNamespacedStatefulSet({ namespace: NS, body: manifest('voice-agent-v2', 2, v2) });
    expect(created.metadata?.name).toBe('voice-agent-v2');
    await waitFor(async () => (await podNames()).length === 4, { what: 'v1 and v2 pods under one selector' });
    expect(await podNames()).toEqual(['voice-agent-0', 'voice-agent-1', 'voice-agent-v2-0', 'voice-agent-v2-1']);
    const pod = await core.readNamespacedPod({ namespace: NS, name: 'voice-agent-v2-0' });
    expect(pod.metadata?.labels).toMatchObject(v2);
    expect(pod.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'StatefulSet', name: 'voice-agent-v2' });
    expect((await core.readNamespacedPod({ namespace: NS, name: 'voice-agent-0' })).metadata?.labels?.[VERSION_LABEL]).toBeUndefined();

    // The scale subresource works for any StatefulSet, and leaves the other one alone.
    await apps.patchNamespacedStatefulSetScale({ namespace: NS, name: 'voice-agent-v2', body: { spec: { replicas: 3 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    await waitFor(async () => (await podNames(`${VERSION_LABEL}=2.0.0`)).length === 3, { what: 'three v2 pods' });
    expect((await apps.readNamespacedStatefulSetScale({ namespace: NS, name: 'voice-agent-v2' })).spec?.replicas).toBe(3);
    expect((await apps.readNamespacedStatefulSet({ namespace: NS, name: 'voice-agent' })).spec?.replicas).toBe(2);

    await apps.deleteNamespacedStatefulSet({ namespace: NS, name: 'voice-agent-v2' });
    await waitFor(async () => (await podNames()).length === 2, { what: 'v2 pods deleted with their StatefulSet' });
    expect(await podNames()).toEqual(['voice-agent-0', 'voice-agent-1']);
    expect((await apps.listNamespacedStatefulSet({ namespace: NS })).items.map((set) => set.metadata?.name)).toEqual(['voice-agent']);
  });

  it('refuses a duplicate name (409) and a selector that does not match the template labels (422), creating nothing', async () => {
    await expect(apps.createNamespacedStatefulSet({ namespace: NS, body: manifest('voice-agent', 1, { app: 'voice-agent' }) })).rejects.toMatchObject({ code: 409 });
    await expect(apps.createNamespacedStatefulSet({ namespace: NS, body: manifest('voice-agent-v3', 1, { app: 'voice-agent' }, { app: 'other' }) })).rejects.toMatchObject({ code: 422 });
    await expect(apps.createNamespacedStatefulSet({ namespace: NS, body: manifest('Not_A_Name', 1, { app: 'voice-agent' }) })).rejects.toMatchObject({ code: 422 });
    await expect(apps.deleteNamespacedStatefulSet({ namespace: NS, name: 'voice-agent-v3' })).rejects.toMatchObject({ code: 404 });
    expect((await apps.listNamespacedStatefulSet({ namespace: NS })).items).toHaveLength(1);
  });

  it('kubectl apply -f k8s/examples/voice-agent-v2-statefulset.yaml, then kubectl delete', async () => {
    const kubectl = (...args: string[]) => run('kubectl', ['--kubeconfig', join(dir, 'kubeconfig'), ...args], { timeout: 20000 });
    const file = join(__dirname, '..', '..', '..', 'k8s', 'examples', 'voice-agent-v2-statefulset.yaml');
    const applied = await kubectl('apply', '-f', file);
    expect(applied.stdout).toContain('statefulset.apps/voice-agent-v2');
    await waitFor(async () => (await podNames(`${VERSION_LABEL}=2.0.0`)).length === 1, { what: 'the example v2 pod' });
    expect(await podNames()).toEqual(['voice-agent-0', 'voice-agent-1', 'voice-agent-v2-0']);
    await kubectl('scale', 'statefulset', 'voice-agent-v2', '--replicas=2');
    await waitFor(async () => (await podNames(`${VERSION_LABEL}=2.0.0`)).length === 2, { what: 'two v2 pods' });
    await kubectl('delete', 'statefulset', 'voice-agent-v2');
    await waitFor(async () => (await podNames(`${VERSION_LABEL}=2.0.0`)).length === 0, { what: 'v2 gone' });
  });
});
