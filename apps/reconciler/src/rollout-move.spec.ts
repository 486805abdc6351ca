import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { readFleetSettings, EnvReader } from '@smart-router/config';
import { FleetScripts, RolloutScripts } from '@smart-router/redis-scripts';
import { SimCluster } from '@smart-router/sim';
import { PoolFixture, createPoolFixture, sharedRedisUrl, waitFor } from '@smart-router/testing';
import { FleetService } from './fleet.service';
import { RolloutMove, RolloutMover } from './rollout-move';

const NS = 'voice-system';
const V2 = '2.0.0';
const DEADLINE_MS = 60_000;

/**
 * Promote moves replicas call-safely (SPEC 12) against a real Redis and the
 * simulated Kubernetes API: v1 is the stack's voice-agent StatefulSet (no
 * version label, version ""), 2.0.0 a second StatefulSet. The pod records are
 * kept in step with the simulated pods here, as the watcher and reconciler do.
 */
describe('rollout replica move (promote, call-safe)', () => {
  const logger = { log: () => undefined, warn: () => undefined, error: () => undefined };
  let pool: PoolFixture;
  let dir: string;
  let cluster: SimCluster;
  let apps: AppsV1Api;
  let core: CoreV1Api;
  let fleet: FleetService;
  let mover: RolloutMover;
  let rollouts: RolloutScripts;
  let timer: NodeJS.Timeout | undefined;
  const known = new Set<string>();
  /** Pods recorded not Ready yet (name -> first seen), while `readyAfterMs` > 0: the watcher sees a pod before it is Ready. */
  const starting = new Map<string, number>();
  let readyAfterMs = 0;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rollout-move-'));
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
    starting.clear();
    readyAfterMs = 0;
    await sync();
    const settings = readFleetSettings(new EnvReader({}));
    fleet = new FleetService(pool.redis, pool.keys, new FleetScripts(pool.redis, pool.keys, 'voice-agent', 1000), kube, NS, settings, 10000, logger);
    rollouts = new RolloutScripts(pool.redis, pool.keys, 1000);
    mover = new RolloutMover(pool.redis, pool.keys, kube, NS, 'voice-agent', new FleetScripts(pool.redis, pool.keys, 'voice-agent', 1000),
      (sts) => new FleetScripts(pool.redis, pool.keys, sts, 1000, {}, true), 10000, logger, rollouts, DEADLINE_MS);
  });
  afterEach(async () => {
    if (timer) clearInterval(timer);
    timer = undefined;
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
    await pool.close();
  });

  const simPods = async () => (await core.listNamespacedPod({ namespace: NS })).items.filter((pod) => !pod.metadata?.deletionTimestamp).map((pod) => pod.metadata!);
  const replicas = async (name: string) => (await apps.readNamespacedStatefulSetScale({ name, namespace: NS })).spec?.replicas ?? 0;
  /** The watcher and reconciler's part: new simulated pods recorded with their version, gone ones removed. */
  const sync = async () => {
    const pods = await simPods();
    const names = new Set(pods.map((pod) => pod.name!));
    for (const pod of pods) {
      if (known.has(pod.name!)) continue;
      const record = (ready: boolean) => pool.scripts.upsertPod({ name: pod.name!, uid: pod.uid!, ready, terminating: false, metadata: {}, pinnedTier: '', term: null, version: pod.labels?.['app.kubernetes.io/version'] ?? '' });
      if (readyAfterMs > 0) {
        const since = starting.get(pod.name!);
        if (since === undefined) {
          starting.set(pod.name!, Date.now());
          await record(false);
          continue;
        }
        if (Date.now() - since < readyAfterMs) continue;
        starting.delete(pod.name!);
      }
      await record(true);
      known.add(pod.name!);
    }
    for (const name of [...known, ...starting.keys()]) {
      if (names.has(name)) continue;
      await pool.scripts.removePod(name, '', null);
      known.delete(name);
      starting.delete(name);
    }
  };
  /** The reconciler's fleet-step job, at JOB_INTERVAL_SCALE 0.05. */
  const schedule = () => {
    let busy = false;
    timer = setInterval(() => {
      if (busy) return;
      busy = true;
      void (async () => {
        await sync();
        await fleet.tick();
        await mover.tick();
      })().catch(() => undefined).finally(() => (busy = false));
    }, 100);
  };
  const allocate = async (sid: string) => {
    const result = await pool.scripts.allocate({ callSid: sid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
    if (!result.ok) throw new Error(`allocation refused: ${result.code}`);
    return result.allocation;
  };

  /** Every live call's pod still exists in the cluster. */
  const callsOnLivePods = async (sids: string[]) => {
    const names = new Set((await simPods()).map((pod) => pod.name));
    for (const sid of sids) {
      const pod = await pool.redis.hget(pool.keys.call(sid), 'pod_name');
      if (pod !== null) expect({ sid, pod, exists: names.has(pod) }).toEqual({ sid, pod, exists: true });
    }
  };

  it('rollback during the promote: the same guarantees the other way', async () => {
    await rollouts.set({ targets: [{ version: '', percent: 100 }, { version: V2, percent: 0 }], assignment: 'random', guardrail: null }, 'test');
    await allocate('CA-v1-a');
    await allocate('CA-v1-b');
    const promoted = await rollouts.setIfLive({ targets: [{ version: V2, percent: 100 }, { version: '', percent: 0 }], assignment: 'random', guardrail: null }, 1, 'test', 'rollout.promoted');
    schedule();
    await waitFor(async () => (await replicas('voice-agent-v2')) === 3, { timeoutMs: 10000, what: '2.0.0 scaled up to 3' });
    await waitFor(async () => (await pool.redis.sismember(pool.keys.pods(), 'voice-agent-v2-2')) === 1, { timeoutMs: 10000, what: 'the new 2.0.0 pods recorded' });
    const v2Calls = [];
    for (let index = 0; index < 3; index += 1) v2Calls.push(await allocate(`CA-v2-${index}`));
    expect(v2Calls.map((call) => call.agentVersion)).toEqual([V2, V2, V2]);
    expect(await replicas('voice-agent')).toBe(2);

    // Roll back while v1 still drains: its pods take calls again at once, 2.0.0 drains instead.
    const back = await rollouts.rollback('test');
    expect(back).toMatchObject({ targets: [{ version: '', percent: 100 }, { version: V2, percent: 0 }] });
    const all = ['CA-v1-a', 'CA-v1-b', 'CA-v2-0', 'CA-v2-1', 'CA-v2-2'];
    await waitFor(async () => (await replicas('voice-agent')) === 3, { timeoutMs: 10000, what: 'v1 scaled back up to cover (3)' });
    await waitFor(async () => (await pool.redis.sismember(pool.keys.pods(), 'voice-agent-2')) === 1, { timeoutMs: 10000, what: 'the new v1 pod recorded' });
    expect((await allocate('CA-back')).agentVersion).toBe('');
    await callsOnLivePods(all);
    expect(await replicas('voice-agent-v2')).toBe(3);
    for (const sid of ['CA-v2-0', 'CA-v2-1']) await pool.scripts.release(sid, 'completed');
    await callsOnLivePods(all);
    expect(await replicas('voice-agent-v2')).toBe(3);
    await pool.scripts.release('CA-v2-2', 'completed');
    await waitFor(async () => (await replicas('voice-agent-v2')) === 0, { timeoutMs: 10000, what: '2.0.0 scaled to 0 after its last call' });
    await waitFor(async () => (await pool.redis.exists(pool.keys.rolloutMove())) === 0, { timeoutMs: 10000, what: 'the move done' });
    await callsOnLivePods(all);
    expect(await replicas('voice-agent')).toBe(3);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  }, 30000);

  it('promote 2.0.0 while every v1 pod holds a call: no call is cut, v1 reaches 0 only after its last call, new calls go to 2.0.0 at once', async () => {
    await rollouts.set({ targets: [{ version: '', percent: 100 }, { version: V2, percent: 0 }], assignment: 'random', guardrail: null }, 'test');
    const held = [await allocate('CA-v1-a'), await allocate('CA-v1-b')];
    expect(held.map((call) => [call.podName, call.agentVersion]).sort()).toEqual([['voice-agent-0', ''], ['voice-agent-1', '']]);

    // Promote, as admin's POST …/promote does it: a new revision and its move, in one step.
    await rollouts.setIfLive({ targets: [{ version: V2, percent: 100 }, { version: '', percent: 0 }], assignment: 'random', guardrail: null }, 1, 'test', 'rollout.promoted');
    expect((await allocate('CA-v2-first')).agentVersion).toBe(V2);
    schedule();

    // 2.0.0 is scaled up to cover the fleet (2 + 1 replicas); v1 keeps both pods while they hold calls.
    await waitFor(async () => (await replicas('voice-agent-v2')) === 3, { timeoutMs: 10000, what: '2.0.0 scaled up to 3' });
    await waitFor(async () => (await pool.redis.sismember(pool.keys.pods(), 'voice-agent-v2-2')) === 1, { timeoutMs: 10000, what: 'the new 2.0.0 pods recorded' });
    const livePodsExist = () => callsOnLivePods(['CA-v1-a', 'CA-v1-b']);
    await livePodsExist();
    expect(await replicas('voice-agent')).toBe(2);
    // Their pods take no new call: every new one goes to 2.0.0 (two free pods of three).
    for (let index = 0; index < 2; index += 1) expect((await allocate(`CA-v2-${index}`)).agentVersion).toBe(V2);

    await pool.scripts.release('CA-v1-a', 'completed');
    // One call still holds a v1 pod: the size stays (a StatefulSet removes the highest ordinals first).
    for (let round = 0; round < 5; round += 1) {
      await new Promise((resolve) => setImmediate(resolve));
      await livePodsExist();
    }
    await waitFor(async () => (await pool.redis.hget(pool.keys.fleetPlan(), 'target')) === '0', { what: 'v1 planned to 0' });
    expect(await replicas('voice-agent')).toBe(2);
    await livePodsExist();

    await pool.scripts.release('CA-v1-b', 'completed');
    await waitFor(async () => (await replicas('voice-agent')) === 0, { timeoutMs: 10000, what: 'v1 scaled to 0 after its last call' });
    await waitFor(async () => (await pool.redis.exists(pool.keys.rolloutMove())) === 0, { timeoutMs: 10000, what: 'the move done' });
    expect(await replicas('voice-agent-v2')).toBe(3);
    const events = (await pool.redis.xrange(pool.keys.fleetStream(), '-', '+')).map(([, fields]) => fields[fields.indexOf('type') + 1]);
    expect(events).toEqual(expect.arrayContaining(['fleet.scale_requested', 'fleet.scale_down_committed', 'fleet.scaled']));
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  }, 30000);
  it('a rollback right after a promote keeps a free pod at every moment: the old version is lowered only as far as the new one has Ready pods', async () => {
    const free = () => pool.redis.scard(pool.keys.poolAvailable('standard'));
    await rollouts.set({ targets: [{ version: '', percent: 100 }, { version: V2, percent: 0 }], assignment: 'random', guardrail: null }, 'test');
    await rollouts.setIfLive({ targets: [{ version: V2, percent: 100 }, { version: '', percent: 0 }], assignment: 'random', guardrail: null }, 1, 'test', 'rollout.promoted');
    schedule();
    await waitFor(async () => (await replicas('voice-agent')) === 0 && (await pool.redis.exists(pool.keys.rolloutMove())) === 0 && (await free()) === 3,
      { timeoutMs: 10000, what: 'the promote done: v1 at 0, three free 2.0.0 pods' });

    // v1's new pods take 1.5 s to be Ready: until then 2.0.0 must keep serving.
    readyAfterMs = 1500;
    expect(await rollouts.rollback('test')).toMatchObject({ targets: [{ version: '', percent: 100 }, { version: V2, percent: 0 }] });
    let least = Number.POSITIVE_INFINITY;
    await waitFor(async () => {
      least = Math.min(least, await free());
      return (await replicas('voice-agent-v2')) === 0 && (await pool.redis.exists(pool.keys.rolloutMove())) === 0;
    }, { timeoutMs: 15000, what: 'the rollback done: 2.0.0 at 0' });
    expect(least).toBeGreaterThan(0);
    expect(await replicas('voice-agent')).toBe(3);
    expect((await allocate('CA-after-rollback')).agentVersion).toBe('');
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  }, 30000);

  it('a move whose version never gets all its pods Ready is abandoned at its deadline, leaving the old version serving', async () => {
    await rollouts.set({ targets: [{ version: '', percent: 100 }, { version: V2, percent: 0 }], assignment: 'random', guardrail: null }, 'test');
    // 2.0.0's new pods start but never get Ready (a crash loop, an image that does not pull).
    readyAfterMs = 3_600_000;
    await rollouts.setIfLive({ targets: [{ version: V2, percent: 100 }, { version: '', percent: 0 }], assignment: 'random', guardrail: null }, 1, 'test', 'rollout.promoted');
    const move = JSON.parse((await pool.redis.get(pool.keys.rolloutMove()))!) as RolloutMove;
    await waitFor(async () => {
      await sync();
      await fleet.tick();
      await mover.tick();
      return (await replicas('voice-agent-v2')) === 3 && starting.size === 2;
    }, { timeoutMs: 10000, what: '2.0.0 scaled up to 3, its two new pods not Ready' });
    // Cover 3, one 2.0.0 pod Ready: v1 keeps its 2 pods, in its pool.
    expect(await replicas('voice-agent')).toBe(2);
    expect((await pool.redis.smembers(pool.keys.poolAvailable('standard'))).filter((name) => !name.includes('v2')).sort()).toEqual(['voice-agent-0', 'voice-agent-1']);

    expect(await mover.tick(move.at + DEADLINE_MS - 1000)).toMatchObject({ state: 'moving' });
    expect(await mover.tick(move.at + DEADLINE_MS + 1)).toEqual({ state: 'abandoned' });
    expect(await pool.redis.exists(pool.keys.rolloutMove())).toBe(0);
    const abandoned = (await pool.redis.xrange(pool.keys.fleetStream(), '-', '+')).map(([, fields]) => fields).find((fields) => fields[fields.indexOf('type') + 1] === 'rollout.move_abandoned');
    expect(abandoned?.[abandoned.indexOf('reason') + 1]).toBe('version "2.0.0" had 1 of 3 pods Ready after 60 s');
    expect(await replicas('voice-agent')).toBe(2);
    expect((await pool.redis.smembers(pool.keys.poolAvailable('standard'))).filter((name) => !name.includes('v2')).sort()).toEqual(['voice-agent-0', 'voice-agent-1']);
  }, 30000);

  it('a Kubernetes error (403 on the promoted StatefulSet) is logged and retried, and never keeps the move past its deadline', async () => {
    // Before, readReplicas rethrew it: tick() threw before the deadline checks, the move was never
    // abandoned and the autoscaler stayed paused for ever.
    const warnings: string[] = [];
    const kube = new KubeConfig();
    kube.loadFromFile(join(dir, 'kubeconfig'));
    mover = new RolloutMover(pool.redis, pool.keys, kube, NS, 'voice-agent', new FleetScripts(pool.redis, pool.keys, 'voice-agent', 1000),
      (sts) => new FleetScripts(pool.redis, pool.keys, sts, 1000, {}, true), 10000, { ...logger, warn: (message: string) => void warnings.push(message) }, rollouts, DEADLINE_MS);
    await rollouts.set({ targets: [{ version: '', percent: 100 }, { version: V2, percent: 0 }], assignment: 'random', guardrail: null }, 'test');
    await rollouts.setIfLive({ targets: [{ version: V2, percent: 100 }, { version: '', percent: 0 }], assignment: 'random', guardrail: null }, 1, 'test', 'rollout.promoted');
    const move = JSON.parse((await pool.redis.get(pool.keys.rolloutMove()))!) as RolloutMove;
    cluster.forbidStatefulSet('voice-agent-v2');
    // 2.0.0 has a Ready pod (voice-agent-v2-0), so only the cover deadline can end this move.
    expect(await mover.tick(move.at + 1000)).toEqual({ state: 'retrying' });
    expect(warnings.some((line) => line.includes('voice-agent-v2') && line.includes('403') && line.includes('retried next tick'))).toBe(true);
    expect(await mover.tick(move.at + DEADLINE_MS - 1)).toEqual({ state: 'retrying' });
    expect(await pool.redis.exists(pool.keys.rolloutMove())).toBe(1);
    expect(await mover.tick(move.at + DEADLINE_MS + 1)).toEqual({ state: 'abandoned' });
    expect(await pool.redis.exists(pool.keys.rolloutMove())).toBe(0);
    const abandoned = (await pool.redis.xrange(pool.keys.fleetStream(), '-', '+')).map(([, fields]) => fields).find((fields) => fields[fields.indexOf('type') + 1] === 'rollout.move_abandoned');
    expect(abandoned?.[abandoned.indexOf('reason') + 1]).toBe('version "2.0.0" had 1 pods Ready and the move\'s first step had not completed after 60 s');
    // Nothing was scaled meanwhile: v1 serves as it did.
    expect(await replicas('voice-agent')).toBe(2);
  }, 30000);

  it('once cover is known, a 403 on a later step still lets the cover deadline abandon the move', async () => {
    await rollouts.set({ targets: [{ version: '', percent: 100 }, { version: V2, percent: 0 }], assignment: 'random', guardrail: null }, 'test');
    await rollouts.setIfLive({ targets: [{ version: V2, percent: 100 }, { version: '', percent: 0 }], assignment: 'random', guardrail: null }, 1, 'test', 'rollout.promoted');
    const at = (JSON.parse((await pool.redis.get(pool.keys.rolloutMove()))!) as RolloutMove).at;
    await mover.tick(at + 1000);
    const move = JSON.parse((await pool.redis.get(pool.keys.rolloutMove()))!) as RolloutMove;
    expect(move.cover).toBe(3);
    cluster.forbidStatefulSet('voice-agent-v2');
    expect(await mover.tick(at + 2000)).toEqual({ state: 'retrying' });
    expect(await mover.tick(at + DEADLINE_MS + 1)).toEqual({ state: 'abandoned' });
    expect(await pool.redis.exists(pool.keys.rolloutMove())).toBe(0);
  }, 30000);

  it('a move is compare-and-set on its revision, and one whose version has no pod past the deadline is abandoned with an event', async () => {
    await rollouts.set({ targets: [{ version: '', percent: 90 }, { version: 'v9', percent: 10 }], assignment: 'random', guardrail: null }, 'test');
    // v9 has a StatefulSet on record (learned once) but no pod: its move can never reach a pod.
    await pool.redis.hset(pool.keys.versionStatefulSets(), 'v9', 'voice-agent-v9');
    const stored = await rollouts.setIfLive({ targets: [{ version: 'v9', percent: 100 }, { version: '', percent: 0 }], assignment: 'random', guardrail: null }, 1, 'test', 'rollout.promoted');
    const move = async () => JSON.parse((await pool.redis.get(pool.keys.rolloutMove())) ?? 'null') as RolloutMove | null;
    const first = (await move())!;
    expect(first).toMatchObject({ version: 'v9', revision: (stored as { revision: number }).revision });

    // A step that read an older revision's move neither rewrites nor deletes this one.
    expect(await rollouts.settleMove(first.revision - 1, 'update', { cover: 99 })).toBe(false);
    expect(await rollouts.settleMove(first.revision - 1, 'done')).toBe(false);
    expect(await rollouts.settleMove(first.revision - 1, 'abandon', {}, 'stale')).toBe(false);
    expect(await move()).toEqual(first);

    // Before the deadline the move waits (and the autoscaler stays paused); after it, abandoned with its event.
    expect(await mover.tick(first.at + DEADLINE_MS - 1)).toMatchObject({ state: expect.stringMatching(/waiting|moving/) });
    expect(await pool.redis.exists(pool.keys.rolloutMove())).toBe(1);
    expect(await mover.tick(first.at + DEADLINE_MS + 1)).toEqual({ state: 'abandoned' });
    expect(await move()).toBeNull();
    const events = (await pool.redis.xrange(pool.keys.fleetStream(), '-', '+')).map(([, fields]) => Object.fromEntries(fields.flatMap((_, i) => (i % 2 === 0 ? [[fields[i], fields[i + 1]]] : []))));
    expect(events.find((event) => event.type === 'rollout.move_abandoned')).toMatchObject({ revision: String(first.revision), version: 'v9' });
    // Nothing scaled v1 (the primary) down meanwhile: the move never reached a pod of v9.
    expect(await replicas('voice-agent')).toBe(2);
  }, 30000);
});
