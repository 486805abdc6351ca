import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { EnvReader, readFleetSettings } from '@smart-router/config';
import { FleetScripts, RolloutScripts } from '@smart-router/redis-scripts';
import { SimCluster } from '@smart-router/sim';
import { PoolFixture, createPoolFixture, sharedRedisUrl, waitFor } from '@smart-router/testing';
import { FleetService, shareOf } from './fleet.service';

const NS = 'voice-system';
const V2 = '2.0.0';

/**
 * The autoscaler's buffer across versions (SPEC 12) against a real Redis and
 * the simulated Kubernetes API with two StatefulSets: voice-agent (no version
 * label, version "") and voice-agent-v2 (2.0.0). Pod records are kept in step
 * with the simulated pods here, as the watcher and reconciler do.
 */
describe('autoscaler buffer split across versions', () => {
  const logger = { log: () => undefined, warn: () => undefined, error: () => undefined };
  let pool: PoolFixture;
  let dir: string;
  let cluster: SimCluster;
  let apps: AppsV1Api;
  let core: CoreV1Api;
  let fleet: FleetService;
  let rollouts: RolloutScripts;
  const known = new Set<string>();

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fleet-split-'));
    cluster = await SimCluster.start({ replicas: 2, kubeconfigPath: join(dir, 'kubeconfig'), timings: { readyDelayMs: 20, terminationDelayMs: 20, recreateDelayMs: 20 } });
    const kube = new KubeConfig();
    kube.loadFromFile(join(dir, 'kubeconfig'));
    apps = kube.makeApiClient(AppsV1Api);
    core = kube.makeApiClient(CoreV1Api);
    const labels = { app: 'voice-agent', 'app.kubernetes.io/version': V2 };
    await apps.createNamespacedStatefulSet({ namespace: NS, body: {
      apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'voice-agent-v2', namespace: NS },
      spec: { serviceName: 'voice-agent', replicas: 1, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'voice-agent', image: 'example/agent:2.0.0' }] } } },
    } });
    await waitFor(async () => (await simPods()).length === 3, { what: 'three simulated pods' });
    pool = await createPoolFixture({ url: sharedRedisUrl(), tierConfig: '{"standard":{"type":"exclusive","target":0}}', pods: [] });
    known.clear();
    await sync();
    // What the rollout mover learns from pod names (rollout:statefulsets).
    await pool.redis.hset(pool.keys.versionStatefulSets(), '', 'voice-agent', V2, 'voice-agent-v2');
    const settings = readFleetSettings(new EnvReader({ AUTOSCALER_ENABLED: 'true', AUTOSCALER_BUFFER: '4', AUTOSCALER_MIN_REPLICAS: '0', AUTOSCALER_MAX_REPLICAS: '10', AUTOSCALER_SCALE_DOWN_DELAY_SECONDS: '3600' }));
    fleet = new FleetService(pool.redis, pool.keys, new FleetScripts(pool.redis, pool.keys, 'voice-agent', 1000), kube, NS, settings, 10000, logger,
      (sts) => new FleetScripts(pool.redis, pool.keys, sts, 1000, {}, true));
    rollouts = new RolloutScripts(pool.redis, pool.keys, 1000);
  });
  afterEach(async () => {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
    await pool.close();
  });

  const simPods = async () => (await core.listNamespacedPod({ namespace: NS })).items.filter((pod) => !pod.metadata?.deletionTimestamp).map((pod) => pod.metadata!);
  const replicas = async (name: string) => (await apps.readNamespacedStatefulSetScale({ name, namespace: NS })).spec?.replicas ?? 0;
  const sync = async () => {
    const pods = await simPods();
    for (const pod of pods) {
      if (known.has(pod.name!)) continue;
      await pool.scripts.upsertPod({ name: pod.name!, uid: pod.uid!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version: pod.labels?.['app.kubernetes.io/version'] ?? '' });
      known.add(pod.name!);
    }
  };
  /** The fleet job until `done` holds. */
  const tickUntil = async (done: () => Promise<boolean>, what: string) =>
    waitFor(async () => {
      await sync();
      await fleet.tick();
      return done();
    }, { timeoutMs: 10000, what });

  it('rounds each version\'s share up: a version above 0 % keeps at least one free pod', () => {
    expect([shareOf(4, 75), shareOf(4, 25), shareOf(2, 99), shareOf(2, 1), shareOf(0, 50), shareOf(4, 0)]).toEqual([3, 1, 2, 1, 0, 0]);
  });

  it('keeps the buffer in each version\'s StatefulSet in proportion to the split, and a version at 0 % is not sized', async () => {
    // 75/25, buffer 4: voice-agent keeps 3 free pods, voice-agent-v2 one.
    await rollouts.set({ targets: [{ version: '', percent: 75 }, { version: V2, percent: 25 }], assignment: 'random', guardrail: null }, 'test');
    await tickUntil(async () => (await replicas('voice-agent')) === 3, 'voice-agent scaled to 3 (2 free + 1)');
    expect(await replicas('voice-agent-v2')).toBe(1);
    // A 2.0.0 call takes its only free pod: its StatefulSet grows by one, the other stays.
    const call = await pool.scripts.allocate({ callSid: 'CA-v2', merchantId: '', provider: '', metadata: '', refuseTombstoned: false, draw: 0.9 });
    expect(call.ok && call.allocation.agentVersion).toBe(V2);
    await tickUntil(async () => (await replicas('voice-agent-v2')) === 2, 'voice-agent-v2 scaled to 2');
    for (let round = 0; round < 3; round += 1) {
      await sync();
      await fleet.tick();
    }
    expect([await replicas('voice-agent'), await replicas('voice-agent-v2')]).toEqual([3, 2]);
    const state = await pool.redis.hgetall(pool.keys.autoscalerState());
    expect(state).toMatchObject({ buffer: '3', percent: '75', desired: '3', 'buffer:voice-agent-v2': '1', 'percent:voice-agent-v2': '25', 'desired:voice-agent-v2': '2' });

    // 2.0.0 at 0 %: only voice-agent is sized, by the whole buffer (4 free); voice-agent-v2 stays as it is.
    await rollouts.set({ targets: [{ version: '', percent: 100 }, { version: V2, percent: 0 }], assignment: 'random', guardrail: null }, 'test');
    await tickUntil(async () => (await replicas('voice-agent')) === 4, 'voice-agent scaled to 4 (the whole buffer)');
    expect(await replicas('voice-agent-v2')).toBe(2);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  }, 30000);
});
