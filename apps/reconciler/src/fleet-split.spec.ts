import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { EnvReader, readFleetSettings } from '@smart-router/config';
import { FleetScripts, RolloutScripts } from '@smart-router/redis-scripts';
import { SimCluster } from '@smart-router/sim';
import { Telemetry } from '@smart-router/telemetry';
import { PoolFixture, createPoolFixture, sharedRedisUrl, waitFor } from '@smart-router/testing';
import { FleetService, shareOf, splitMaxReplicas } from './fleet.service';

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
    // Of the known shares' sum: 50 of a known 50 is the whole; 30 of a known 90 is a third, exactly (integers).
    expect([shareOf(4, 50, 50), shareOf(3, 30, 90), shareOf(6, 30, 90), shareOf(4, 50, 0)]).toEqual([4, 1, 2, 0]);
  });

  it('apportions max_replicas: the caps sum to exactly max_replicas, a serving canary keeps at least one', () => {
    expect(splitMaxReplicas(10, [50, 50])).toEqual([5, 5]);
    expect(splitMaxReplicas(4, [50, 50])).toEqual([2, 2]);
    expect(splitMaxReplicas(10, [75, 25])).toEqual([7, 3]);
    expect(splitMaxReplicas(10, [99, 1])).toEqual([9, 1]);
    expect(splitMaxReplicas(5, [1, 99])).toEqual([1, 4]);
    expect(splitMaxReplicas(7, [34, 33, 33])).toEqual([3, 2, 2]);
    expect(splitMaxReplicas(1, [10, 90])).toEqual([0, 1]);
    expect(splitMaxReplicas(0, [50, 50])).toEqual([0, 0]);
    for (const max of [0, 1, 2, 3, 9, 10, 20, 1000]) {
      for (const percents of [[100], [50, 50], [95, 5], [1, 99], [40, 30, 20, 10], [20, 20, 20, 20, 20], [1, 1, 98]]) {
        const caps = splitMaxReplicas(max, percents);
        expect(caps.reduce((sum, cap) => sum + cap, 0)).toBe(max);
        if (max >= percents.length) expect(Math.min(...caps)).toBeGreaterThanOrEqual(1);
      }
    }
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

  it('another StatefulSet the Role may not scale (403) is logged, counted and skipped: the primary is still scaled', async () => {
    // voice-agent-v2 outside the Role's resourceNames: before, tick() threw after the primary's plan
    // was written but before its patch, so voice-agent was never scaled while 2.0.0 was in the split.
    const telemetry = Telemetry.start('fleet-split-spec');
    const warnings: string[] = [];
    const kube = new KubeConfig();
    kube.loadFromFile(join(dir, 'kubeconfig'));
    const settings = readFleetSettings(new EnvReader({ AUTOSCALER_ENABLED: 'true', AUTOSCALER_BUFFER: '4', AUTOSCALER_MIN_REPLICAS: '0', AUTOSCALER_MAX_REPLICAS: '10', AUTOSCALER_SCALE_DOWN_DELAY_SECONDS: '3600' }));
    fleet = new FleetService(pool.redis, pool.keys, new FleetScripts(pool.redis, pool.keys, 'voice-agent', 1000), kube, NS, settings, 10000,
      { ...logger, warn: (message: string) => void warnings.push(message) },
      (sts) => new FleetScripts(pool.redis, pool.keys, sts, 1000, {}, true), telemetry);
    cluster.forbidStatefulSet('voice-agent-v2');
    await rollouts.set({ targets: [{ version: '', percent: 75 }, { version: V2, percent: 25 }], assignment: 'random', guardrail: null }, 'test');
    await tickUntil(async () => (await replicas('voice-agent')) === 3, 'voice-agent scaled to 3 despite voice-agent-v2\'s 403');
    expect(warnings.some((line) => line.includes('voice-agent-v2') && line.includes('403') && !line.includes('\n'))).toBe(true);
    expect(await telemetry.prometheusText()).toMatch(/smart_router_fleet_step_errors_total\{[^}]*statefulset="voice-agent-v2"[^}]*\} [1-9]/);
    // The fleet lock was released: once allowed again, voice-agent-v2 is sized by its share on a later tick.
    cluster.forbidStatefulSet('voice-agent-v2', false);
    const call = await pool.scripts.allocate({ callSid: 'CA-v2', merchantId: '', provider: '', metadata: '', refuseTombstoned: false, draw: 0.9 });
    expect(call.ok && call.allocation.agentVersion).toBe(V2);
    await tickUntil(async () => (await replicas('voice-agent-v2')) === 2, 'voice-agent-v2 scaled to 2 once allowed');
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  }, 30000);

  /** Stores autoscaler settings as admin's PUT does (the reconciler reads them each tick). */
  const storeAutoscaler = (settings: Record<string, unknown>) =>
    pool.redis.set(pool.keys.autoscalerConfig(), JSON.stringify({ enabled: true, min_replicas: 0, max_replicas: 10, buffer: 4, scale_down_delay_seconds: 3600, ...settings }));

  it('max_replicas bounds the fleet under a split, not each StatefulSet: 50/50 at max 4 is 2 + 2', async () => {
    // Demand far above the bound (buffer 10): before, each StatefulSet grew to 4 (the fleet to 8).
    await storeAutoscaler({ buffer: 10, max_replicas: 4 });
    await rollouts.set({ targets: [{ version: '', percent: 50 }, { version: V2, percent: 50 }], assignment: 'random', guardrail: null }, 'test');
    await tickUntil(async () => (await replicas('voice-agent-v2')) >= 2, 'voice-agent-v2 scaled up');
    for (let round = 0; round < 3; round += 1) {
      await sync();
      await fleet.tick();
    }
    expect([await replicas('voice-agent'), await replicas('voice-agent-v2')]).toEqual([2, 2]);
    const state = await pool.redis.hgetall(pool.keys.autoscalerState());
    expect(state).toMatchObject({ max_replicas: '2', desired: '2', 'max_replicas:voice-agent-v2': '2', 'desired:voice-agent-v2': '2' });
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  }, 30000);

  it('a serving version whose StatefulSet is not learned yet leaves the whole buffer to the known ones', async () => {
    // 50/50, but the rollout mover has not learned 2.0.0's StatefulSet: voice-agent serves every
    // call, so it keeps the whole buffer of 4 (before: 50 % of it, 2, which its 2 free pods already were).
    await pool.redis.hdel(pool.keys.versionStatefulSets(), V2);
    await rollouts.set({ targets: [{ version: '', percent: 50 }, { version: V2, percent: 50 }], assignment: 'random', guardrail: null }, 'test');
    await tickUntil(async () => (await replicas('voice-agent')) === 4, 'voice-agent scaled to 4 (the whole buffer)');
    expect(await replicas('voice-agent-v2')).toBe(1);
    const state = await pool.redis.hgetall(pool.keys.autoscalerState());
    expect(state).toMatchObject({ buffer: '4', percent: '50', desired: '4' });
    expect(JSON.parse(state.last_decision).reason).toContain('taken of the 50 % whose StatefulSets are known');
    expect(state['desired:voice-agent-v2']).toBeUndefined();
  }, 30000);

  it('reads a StatefulSet\'s free pods and the waiting requests at one instant (one MULTI): a hand-off is never counted twice nor missed', async () => {
    // Only voice-agent serves (100/0) and nothing may change its size (max 2 = its size). Another
    // client moves voice-agent-0 between "free" and "taken by a waiter" atomically, as a hand-off
    // does: at every instant free + waiting is 1, so every tick's figures must add up to 1.
    await storeAutoscaler({ buffer: 1, max_replicas: 2 });
    await rollouts.set({ targets: [{ version: '', percent: 100 }, { version: V2, percent: 0 }], assignment: 'random', guardrail: null }, 'test');
    const available = pool.keys.poolAvailable('standard');
    await pool.redis.srem(available, 'voice-agent-1');
    const other = pool.redis.duplicate();
    let running = true;
    const toggler = (async () => {
      while (running) {
        await other.multi().srem(available, 'voice-agent-0').zadd(pool.keys.waitQueue(), 0, 'waiter').exec();
        await other.multi().sadd(available, 'voice-agent-0').zrem(pool.keys.waitQueue(), 'waiter').exec();
      }
    })();
    const sums: number[] = [];
    try {
      for (let round = 0; round < 100; round += 1) {
        await fleet.tick();
        const [free, waiting] = await pool.redis.hmget(pool.keys.autoscalerState(), 'free', 'waiting');
        sums.push(Number(free) + Number(waiting));
      }
    } finally {
      running = false;
      await toggler;
      other.disconnect();
    }
    expect(sums).toEqual(sums.map(() => 1));
  }, 30000);
});
