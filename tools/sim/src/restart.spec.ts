import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SimCluster } from './sim-cluster';

/**
 * What a simulated cluster started again after a crash does (SPEC 10.2: under
 * `npm start` it is a supervised child process, and its state lives in it):
 * resourceVersions above its predecessor's, so an old watch relists; the same
 * StatefulSet with new pod UIDs; the Leases kept, so leader terms never go back.
 */

const LEASES = '/apis/coordination.k8s.io/v1/namespaces/voice-system/leases';

async function json(url: string, init?: RequestInit): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, init);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function firstLine(url: string): Promise<Record<string, unknown>> {
  return fetch(url).then(async (response) => {
    const reader = response.body!.getReader();
    let text = '';
    while (!text.includes('\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
    }
    await reader.cancel();
    return JSON.parse(text.split('\n')[0]) as Record<string, unknown>;
  });
}

describe('a restarted simulated cluster', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sim-restart-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts afresh above the old resourceVersions (an old watch gets 410), with new pod UIDs and the old Leases', async () => {
    const leaseFile = join(dir, 'leases.json');
    const first = await SimCluster.start({ replicas: 2, leaseFile, firstResourceVersion: 1000 });
    const lease = { metadata: { name: 'leader' }, spec: { holderIdentity: 'watcher-1', leaseTransitions: 3 } };
    expect((await json(`${first.url}${LEASES}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(lease) })).status).toBe(201);
    const oldVersion = Number(first.state.resourceVersion);
    expect(oldVersion).toBeGreaterThan(1000);
    const oldUids = first.listPods().map((pod) => pod.metadata.uid);
    await first.stop();

    const second = await SimCluster.start({ replicas: 2, leaseFile, firstResourceVersion: 5000 });
    try {
      expect(second.listPods().map((pod) => pod.metadata.name)).toEqual(['voice-agent-0', 'voice-agent-1']);
      expect(second.listPods().some((pod) => oldUids.includes(pod.metadata.uid))).toBe(false);
      const kept = await json(`${second.url}${LEASES}/leader`);
      expect(kept.body).toMatchObject({ spec: { holderIdentity: 'watcher-1', leaseTransitions: 3 } });
      // The holder renews with the resourceVersion it last saw, as after any API-server restart.
      const renewed = await json(`${second.url}${LEASES}/leader`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(kept.body) });
      expect(renewed.status).toBe(200);
      const watch = await firstLine(`${second.url}/api/v1/namespaces/voice-system/pods?watch=true&resourceVersion=${oldVersion}`);
      expect(watch).toMatchObject({ type: 'ERROR', object: { code: 410 } });
    } finally {
      await second.stop();
    }
  });

  it('without a lease file keeps nothing', async () => {
    const first = await SimCluster.start({ replicas: 1 });
    await json(`${first.url}${LEASES}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ metadata: { name: 'leader' }, spec: {} }) });
    await first.stop();
    const second = await SimCluster.start({ replicas: 1 });
    try {
      expect((await json(`${second.url}${LEASES}/leader`)).status).toBe(404);
    } finally {
      await second.stop();
    }
  });
});
