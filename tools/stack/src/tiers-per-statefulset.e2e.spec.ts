import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jsonRequest, waitFor } from '@smart-router/testing';
import { LocalStack, FREE_PORTS } from './stack';

/**
 * Tiers with several StatefulSets (SPEC 12 and the tier rule of
 * includes/pod-state.lua ordinalTier): a pod's tier follows its *own*
 * StatefulSet's ordinal (the `-{n}` of `{sts}-{n}`), so `voice-agent-0` and
 * `voice-agent-v2-0` are both in the first tier: every version serves every
 * tier and a canary has gold capacity. Scaling either set up or down never
 * moves the other set's pods; a tier change (rebalanceTiers) re-tiers both
 * sets by the same rule.
 */

const ROOT = join(__dirname, '..', '..', '..');
const run = promisify(execFile);
const TIERS = { gold: { type: 'exclusive', target: 1 }, standard: { type: 'exclusive', target: 1 }, basic: { type: 'shared', target: 1, max_concurrent: 3 } };

let stack: LocalStack;

const request = jsonRequest;
const admin = (method: string, path: string, body?: unknown) => request(stack.url('admin'), method, path, body);
const api = (path: string, body: unknown) => request(stack.url('allocation-api'), 'POST', path, body);
const kubectl = (...args: string[]) => run('kubectl', ['--kubeconfig', stack.kubeconfigPath, ...args], { timeout: 20000 });

/** pod name -> tier, as the admin API reports it. */
async function tiersNow(): Promise<Record<string, string | null>> {
  const answer = await admin('GET', '/api/v1/admin/pods');
  return Object.fromEntries((answer.body.pods as { pod_name: string; tier: string | null }[]).map((pod) => [pod.pod_name, pod.tier]));
}

/** Waits until exactly these pods are recorded, each in the given tier. */
async function expectTiers(expected: Record<string, string>, what: string): Promise<void> {
  let last: Record<string, string | null> = {};
  try {
    await waitFor(async () => {
      last = await tiersNow();
      return JSON.stringify(Object.entries(last).sort()) === JSON.stringify(Object.entries(expected).sort());
    }, { timeoutMs: 30000, intervalMs: 200, what });
  } catch (error) {
    expect(last).toEqual(expected);
    throw error;
  }
}

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-tiers-sts-')),
    replicas: 3,
    apps: ['allocation-api', 'admin', 'pod-watcher', 'reconciler'],
    simTimings: { readyDelayMs: 100, terminationDelayMs: 100, recreateDelayMs: 50 },
    env: { TIER_CONFIG: JSON.stringify(TIERS), JOB_INTERVAL_SCALE: '0.1' },
  });
}, 120000);

afterAll(async () => {
  await stack?.stop();
}, 60000);

describe('tiers with two StatefulSets', () => {
  it('each StatefulSet is tiered by its own ordinals, stable across scaling either set; a gold merchant gets either version; a tier change re-tiers both', async () => {
    await kubectl('apply', '-f', join(ROOT, 'k8s', 'examples', 'voice-agent-v2-statefulset.yaml'));
    await kubectl('-n', 'voice-system', 'scale', 'statefulset', 'voice-agent-v2', '--replicas=3');
    const both = {
      'voice-agent-0': 'gold', 'voice-agent-1': 'standard', 'voice-agent-2': 'basic',
      'voice-agent-v2-0': 'gold', 'voice-agent-v2-1': 'standard', 'voice-agent-v2-2': 'basic',
    };
    await expectTiers(both, 'both sets tiered by their own ordinals');

    // A gold merchant under a 50/50 split: gold pods of both versions serve it.
    expect((await admin('PUT', '/api/v1/admin/merchants/m-gold', { tier: 'gold' })).status).toBe(200);
    expect((await admin('PUT', '/api/v1/admin/rollout', { targets: [{ version: '', percent: 50 }, { version: '2.0.0', percent: 50 }] })).status).toBe(200);
    const served = new Map<string, string>();
    for (let index = 0; index < 40 && served.size < 2; index += 1) {
      const answer = await api('/api/v1/allocate', { call_sid: `gold-${index}`, merchant_id: 'm-gold' });
      expect(answer).toMatchObject({ status: 200, body: { source_pool: 'pool:gold' } });
      served.set(answer.body.agent_version as string, answer.body.pod_name as string);
      expect((await api('/api/v1/release', { call_sid: `gold-${index}`, reason: 'completed' })).status).toBe(200);
    }
    expect(Object.fromEntries(served)).toEqual({ '': 'voice-agent-0', '2.0.0': 'voice-agent-v2-0' });
    // Gold capacity is one pod per set: two gold calls at once take both (a spill when the drawn one is busy), a third finds no gold pod.
    const first = await api('/api/v1/allocate', { call_sid: 'gold-busy-a', merchant_id: 'm-gold' });
    const second = await api('/api/v1/allocate', { call_sid: 'gold-busy-b', merchant_id: 'm-gold' });
    expect(first).toMatchObject({ status: 200, body: { source_pool: 'pool:gold' } });
    expect(second).toMatchObject({ status: 200, body: { source_pool: 'pool:gold' } });
    expect([first.body.pod_name, second.body.pod_name].sort()).toEqual(['voice-agent-0', 'voice-agent-v2-0']);
    // The gold chain's next pool (gold, standard, overflow, basic): a standard pod of either version.
    const third = await api('/api/v1/allocate', { call_sid: 'gold-busy-c', merchant_id: 'm-gold' });
    expect(third).toMatchObject({ status: 200, body: { source_pool: 'pool:standard' } });
    expect(['voice-agent-1', 'voice-agent-v2-1']).toContain(third.body.pod_name);
    for (const sid of ['gold-busy-a', 'gold-busy-b', 'gold-busy-c']) await api('/api/v1/release', { call_sid: sid, reason: 'completed' });

    // Scaling the canary down and up never moves the stable set's pods, and its own come back to the same tiers.
    await kubectl('-n', 'voice-system', 'scale', 'statefulset', 'voice-agent-v2', '--replicas=1');
    await expectTiers({ 'voice-agent-0': 'gold', 'voice-agent-1': 'standard', 'voice-agent-2': 'basic', 'voice-agent-v2-0': 'gold' }, 'canary scaled to 1');
    await kubectl('-n', 'voice-system', 'scale', 'statefulset', 'voice-agent-v2', '--replicas=3');
    await expectTiers(both, 'canary scaled back to 3');
    // Likewise the stable set.
    stack.sim.scale(1);
    await expectTiers({ 'voice-agent-0': 'gold', 'voice-agent-v2-0': 'gold', 'voice-agent-v2-1': 'standard', 'voice-agent-v2-2': 'basic' }, 'stable scaled to 1');
    stack.sim.scale(3);
    await expectTiers(both, 'stable scaled back to 3');

    // rebalanceTiers (PUT /api/v1/admin/tiers): gold target 2 takes ordinal 1 of *each* set into gold, ordinal 2 of each into standard.
    const changed = await admin('PUT', '/api/v1/admin/tiers', { tiers: { ...TIERS, gold: { type: 'exclusive', target: 2 } } });
    expect(changed).toMatchObject({ status: 200, body: { pods_moved: 4 } });
    await expectTiers({
      'voice-agent-0': 'gold', 'voice-agent-1': 'gold', 'voice-agent-2': 'standard',
      'voice-agent-v2-0': 'gold', 'voice-agent-v2-1': 'gold', 'voice-agent-v2-2': 'standard',
    }, 'both sets re-tiered by the same rule');
  }, 90000);
});
