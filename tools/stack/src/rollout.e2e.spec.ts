import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { jsonRequest, waitFor } from '@smart-router/testing';
import { LocalStack, FREE_PORTS } from './stack';

/**
 * SPEC 12 versioned fleets, end to end: the built apps as processes, a real
 * redis-server, the simulated cluster. A second StatefulSet (the k8s example,
 * version 2.0.0) is applied with kubectl next to the stack's voice-agent (no
 * version label: version ""); the watcher and reconciler record the versions,
 * admin's rollout API sets the split, allocate answers the version.
 */

const ROOT = join(__dirname, '..', '..', '..');
const run = promisify(execFile);

let stack: LocalStack;
let redis: Redis;

const request = jsonRequest;
const admin = (method: string, path: string, body?: unknown) => request(stack.url('admin'), method, path, body);
const versionOf = async (sid: string, caller?: string): Promise<string> => {
  const answer = await request(stack.url('allocation-api'), 'POST', '/api/v1/allocate', { call_sid: sid, caller });
  expect({ sid, status: answer.status }).toEqual({ sid, status: 200 });
  expect((await request(stack.url('allocation-api'), 'POST', '/api/v1/release', { call_sid: sid, reason: 'completed' })).status).toBe(200);
  return answer.body.agent_version as string;
};

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-rollout-')),
    replicas: 2,
    apps: ['allocation-api', 'admin', 'pod-watcher', 'reconciler'],
    simTimings: { readyDelayMs: 100 },
    env: { TIER_CONFIG: JSON.stringify({ standard: { type: 'exclusive', target: 1 } }), JOB_INTERVAL_SCALE: '0.1' },
  });
  redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
}, 120000);

afterAll(async () => {
  await redis?.quit().catch(() => undefined);
  await stack?.stop();
}, 60000);

describe('versioned agent fleets through the running stack', () => {
  it('kubectl apply of a v2 StatefulSet, a split, promote and rollback, each from the next allocation', async () => {
    await run('kubectl', ['--kubeconfig', stack.kubeconfigPath, 'apply', '-f', join(ROOT, 'k8s', 'examples', 'voice-agent-v2-statefulset.yaml')], { timeout: 20000 });
    const view = await waitFor(async () => {
      const answer = await admin('GET', '/api/v1/admin/rollout');
      return answer.body.versions?.['2.0.0']?.free === 1 && answer.body.versions?.['']?.free === 2 ? answer.body : null;
    }, { timeoutMs: 30000, what: 'the v2 pod recorded with its version and free' });
    expect(view).toMatchObject({ revision: null, versions: { '2.0.0': { pods: 1 }, '': { pods: 2 } } });

    // No rollout: both versions serve.
    const seen = new Set<string>();
    for (let index = 0; index < 12; index += 1) seen.add(await versionOf(`plain-${index}`));
    expect([...seen].sort()).toEqual(['', '2.0.0']);

    const put = await admin('PUT', '/api/v1/admin/rollout', { targets: [{ version: '', percent: 0 }, { version: '2.0.0', percent: 100 }], assignment: 'sticky_by_caller' });
    expect(put).toMatchObject({ status: 200, body: { revision: 1 } });
    for (let index = 0; index < 5; index += 1) expect(await versionOf(`canary-${index}`, `+1555000${index}`)).toBe('2.0.0');

    expect((await admin('POST', '/api/v1/admin/rollout/rollback')).status).toBe(409);
    expect((await admin('POST', '/api/v1/admin/rollout/promote', { version: '' })).body).toMatchObject({ revision: 2 });
    for (let index = 0; index < 5; index += 1) expect(await versionOf(`promoted-${index}`)).toBe('');
    expect((await admin('POST', '/api/v1/admin/rollout/rollback')).body).toMatchObject({ revision: 3, targets: [{ version: '', percent: 0 }, { version: '2.0.0', percent: 100 }] });
    expect(await versionOf('rolled-back')).toBe('2.0.0');

    const figures = (await admin('GET', '/api/v1/admin/rollout')).body.versions;
    expect(figures['2.0.0']).toMatchObject({ allocations: 6, spills: 0, live_calls: 0, releases: { completed: 6 } });
    expect(figures['']).toMatchObject({ allocations: 5 });
    // The call events carry the version and the revision; the fleet stream the rollout decisions.
    const allocated = (await redis.xrange(stack.keys.callStream(), '-', '+')).map(([, fields]) => fields).filter((fields) => fields[fields.indexOf('call_sid') + 1] === 'rolled-back' && fields[1] === 'call.allocated');
    expect(allocated[0][allocated[0].indexOf('agent_version') + 1]).toBe('2.0.0');
    expect(allocated[0][allocated[0].indexOf('rollout_revision') + 1]).toBe('3');
    const decisions = (await redis.xrange(stack.keys.fleetStream(), '-', '+')).map(([, fields]) => fields[fields.indexOf('type') + 1]).filter((type) => type.startsWith('rollout.'));
    expect(decisions).toEqual(['rollout.updated', 'rollout.promoted', 'rollout.rolled_back']);
  }, 90000);
});
