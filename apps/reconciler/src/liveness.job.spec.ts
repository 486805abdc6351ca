import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { LivenessScripts } from '@smart-router/redis-scripts';
import { SimCluster } from '@smart-router/sim';
import { Telemetry } from '@smart-router/telemetry';
import { PoolFixture, createPoolFixture, sharedRedisUrl, waitFor } from '@smart-router/testing';
import { KubePodDeleter, LivenessJob } from './liveness.job';
import { LivenessSettings } from './reconciler.config';

/** The liveness job's handler against a real Redis and the simulated Kubernetes API (its BullMQ schedule runs in tools/stack). */
describe('liveness job (SPEC 11)', () => {
  let pool: PoolFixture;
  let dir: string;
  let cluster: SimCluster;
  let kube: KubeConfig;
  const logger = { log: () => undefined, warn: () => undefined, error: () => undefined };
  const telemetry = Telemetry.start('liveness-job-spec');

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    dir = mkdtempSync(join(tmpdir(), 'liveness-'));
    cluster = await SimCluster.start({ replicas: 5, kubeconfigPath: join(dir, 'kubeconfig'), timings: { readyDelayMs: 20, terminationDelayMs: 20, recreateDelayMs: 20 } });
    kube = new KubeConfig();
    kube.loadFromFile(join(dir, 'kubeconfig'));
  });
  afterEach(async () => {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
    await pool.close();
  });

  const settings = (overrides: Partial<LivenessSettings> = {}): LivenessSettings => ({ suspectMs: 4000, deadMs: 6000, deadAction: 'keep', mediaStallMs: 0, ...overrides });
  const jobWith = (options: Partial<LivenessSettings>) => {
    const scripts = new LivenessScripts(pool.redis, pool.keys, 1000);
    const deleter = options.deadAction === 'delete' ? new KubePodDeleter(kube, 'voice-system') : null;
    return { scripts, job: new LivenessJob(pool.redis, pool.keys, scripts, settings(options), deleter, telemetry, logger) };
  };
  const silence = async (pod: string, ms: number) => {
    const [seconds, micros] = await pool.redis.time();
    await pool.redis.zadd(pool.keys.heartbeats(), Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - ms, pod);
  };
  const simUid = (name: string) => cluster.state.getPod(name)?.metadata.uid;

  it('HEARTBEAT_DEAD_ACTION=delete deletes the dead incarnation through the Kubernetes API; the StatefulSet replaces it', async () => {
    const name = 'voice-agent-3';
    const uid = simUid(name)!;
    // The router's record of the pod carries the simulated cluster's UID (as the watcher would write it).
    await pool.scripts.upsertPod({ name, uid, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null });
    const { scripts, job } = jobWith({ deadAction: 'delete' });
    await scripts.recordHeartbeat(name, []);
    await silence(name, 6100);
    const report = await job.run();
    expect(report.transitions).toEqual([{ pod: name, state: 'dead', uid, callsEnded: 0, callsToRehome: [] }]);
    expect(report.deleted).toEqual([name]);
    await waitFor(() => (simUid(name) && simUid(name) !== uid ? true : null), { what: 'the StatefulSet to recreate the pod with a new UID' });
  });

  it('never deletes a newer incarnation for its predecessor silence (UID precondition), and keep leaves the pod alone', async () => {
    const deleter = new KubePodDeleter(kube, 'voice-system');
    const uid = simUid('voice-agent-1')!;
    await deleter.delete('voice-agent-1', 'an-older-uid');
    await deleter.delete('no-such-pod', 'whatever');
    expect(simUid('voice-agent-1')).toBe(uid);
    expect(cluster.state.getPod('voice-agent-1')?.metadata.deletionTimestamp).toBeUndefined();

    const { scripts, job } = jobWith({ deadAction: 'keep' });
    await scripts.recordHeartbeat('voice-agent-4', []);
    await silence('voice-agent-4', 6100);
    expect(await job.run()).toMatchObject({ transitions: [expect.objectContaining({ pod: 'voice-agent-4', state: 'dead' })], deleted: [] });
  });

  it('counts pods by liveness for smart_router_pod_liveness, and ends stalled media when MEDIA_STALL_SECONDS is set', async () => {
    const { scripts, job } = jobWith({ mediaStallMs: 2000 });
    const call = await pool.scripts.allocate({ callSid: 'job-stall', merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
    if (!call.ok) throw new Error('no pod');
    await pool.scripts.connect('job-stall', 'api');
    await scripts.recordHeartbeat(call.allocation.podName, [{ callSid: 'job-stall', allocationId: null, mediaIn: 5, mediaOut: 5 }]);
    // The silent pod is never the one the allocation picked (a random pool member).
    const silent = call.allocation.podName === 'voice-agent-4' ? 'voice-agent-3' : 'voice-agent-4';
    await scripts.recordHeartbeat(silent, []);
    await silence(silent, 4100);
    const past = Date.now() - 10000;
    await pool.redis.hset(pool.keys.call('job-stall'), 'media_in_at', past, 'connected_at', past);
    await pool.redis.zadd(pool.keys.callMedia(), past, 'job-stall');
    const report = await job.run();
    expect(report.stalled).toEqual(['job-stall']);
    expect(report.transitions).toEqual([expect.objectContaining({ pod: silent, state: 'suspect' })]);
    const metrics = await telemetry.prometheusText();
    expect(metrics).toMatch(/smart_router_pod_liveness\{[^}]*state="suspect"[^}]*\} 1/);
    expect(metrics).toMatch(/smart_router_pod_liveness\{[^}]*state="live"[^}]*\} 1/);
    expect(metrics).toMatch(/smart_router_pod_liveness\{[^}]*state="unknown"[^}]*\} 3/);
  });
});
