import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { RedisKeys } from '@smart-router/redis-keys';
import { SimCluster } from '@smart-router/sim';
import { sharedRedisUrl, uniquePrefix, waitFor } from '@smart-router/testing';
import { bootstrap } from './main';
import { MAX_REFUSED_UIDS, PodWatchService, RefusedPods } from './pod-watch.service';

/**
 * A pod named `metadata` would be recorded at `pod:metadata`, the seed's metadata hash
 * (security review L5). The real watcher, against the simulated Kubernetes API, must
 * publish the other pods and refuse that one: no event, one warn line, a counter.
 */
describe('pod-watcher refuses a pod whose key is another key of the schema', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sr-watcher-'));
  const keys = new RedisKeys(uniquePrefix('watch'));
  let sim: SimCluster;
  let redis: Redis;
  let app: NestFastifyApplication | undefined;
  let output: string[];
  let stdout: jest.SpyInstance;

  beforeAll(async () => {
    sim = await SimCluster.start({ replicas: 2, kubeconfigPath: join(dir, 'kubeconfig'), timings: { readyDelayMs: 50, terminationDelayMs: 50, recreateDelayMs: 20 } });
    redis = new Redis(sharedRedisUrl(), { maxRetriesPerRequest: 1 });
    output = [];
    stdout = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      output.push(String(chunk));
      return true;
    });
  });
  afterAll(async () => {
    await app?.close();
    stdout.mockRestore();
    await redis.quit();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('publishes the voice-agent pods, never `metadata`, and leaves pod:metadata alone', async () => {
    const seedMetadata = { 'voice-agent-0': '{"labels":{"app":"voice-agent"}}' };
    await redis.hset(keys.podMetadata(), seedMetadata);
    sim.createBarePod('metadata');
    app = await bootstrap({
      REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'warn',
      KUBECONFIG: join(dir, 'kubeconfig'), NAMESPACE: sim.namespace, POD_IDENTITY: 'watcher-reserved',
      LEASE_NAME: `lease-${keys.prefix.replace(/[^a-z0-9]/g, '')}`, LEASE_DURATION_SECONDS: '2', LEASE_RETRY_MS: '200',
    });
    const address = app.getHttpServer().address();
    const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const published = async () => (await redis.xrange(keys.podStream(), '-', '+')).map(([, fields]) => {
      const record: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
      return record;
    });

    // Both StatefulSet pods Ready in the stream; `metadata` Ready too (so it had ADDED and MODIFIED).
    await waitFor(async () => {
      const ready = new Set((await published()).filter((event) => event.ready === '1').map((event) => event.name));
      return ready.has('voice-agent-0') && ready.has('voice-agent-1') && sim.isReady('metadata');
    }, { what: 'both voice-agent pods published Ready' });
    // A later change of the refused pod (through the watch, not the list) is refused as well.
    sim.setReady('metadata', false);
    const refusals = async () => Number(/smart_router_pod_events_refused_total\{[^}]*reason="reserved_name"[^}]*\} (\d+)/.exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? 0);
    const counted = await waitFor(async () => ((await refusals()) >= 3 ? refusals() : null), { what: 'three refused changes of the metadata pod counted' });
    expect(counted).toBeGreaterThanOrEqual(3);

    expect((await published()).filter((event) => event.name === 'metadata')).toEqual([]);
    expect(await redis.hgetall(keys.podMetadata())).toEqual(seedMetadata);
    const lines = output.join('').split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { level: string; msg: string });
    const warnings = lines.filter((line) => line.msg.includes('refusing pod "metadata"'));
    expect(warnings).toEqual([expect.objectContaining({ level: 'warn' })]);

    // Deleted: its UID is forgotten (before, every refused UID was kept for ever).
    const watch = app.get(PodWatchService);
    expect(watch.refusedPods.size).toBe(1);
    sim.deletePod('metadata');
    await waitFor(async () => watch.refusedPods.size === 0, { what: 'the deleted metadata pod\'s UID forgotten' });
  });

  it('remembers at most MAX_REFUSED_UIDS refused pods, the oldest forgotten first', () => {
    expect(MAX_REFUSED_UIDS).toBe(1000);
    const refused = new RefusedPods();
    for (let i = 0; i < MAX_REFUSED_UIDS + 500; i += 1) expect(refused.add(`uid-${i}`)).toBe(true);
    expect(refused.size).toBe(MAX_REFUSED_UIDS);
    // Known ones are not warned about again; the oldest 500 were dropped, so they would be.
    expect(refused.add(`uid-${MAX_REFUSED_UIDS + 499}`)).toBe(false);
    expect(refused.add('uid-500')).toBe(false);
    expect(refused.add('uid-0')).toBe(true);
    expect(refused.size).toBe(MAX_REFUSED_UIDS);
    refused.delete('uid-0');
    expect(refused.size).toBe(MAX_REFUSED_UIDS - 1);
  });
});
