import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { jsonRequest, waitFor } from '@smart-router/testing';
import { LocalStack, FREE_PORTS } from './stack';

/**
 * The rollout guardrail (SPEC 12) through the running stack, on the production
 * job schedule (JOB_INTERVAL_SCALE 1: connect-timeout every 1 s, guardrail
 * every 2 s): the stable version's calls connect, the 2.0.0 canary's never do
 * (CONNECT_TIMEOUT_SECONDS=1 releases them), and the reconciler rolls the
 * split back by itself within 10 s of the threshold.
 */

const ROOT = join(__dirname, '..', '..', '..');
const run = promisify(execFile);

let stack: LocalStack;
let redis: Redis;

const request = jsonRequest;
const admin = (method: string, path: string, body?: unknown) => request(stack.url('admin'), method, path, body);
const api = (path: string, body: unknown) => request(stack.url('allocation-api'), 'POST', path, body);

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-guardrail-')),
    replicas: 2,
    apps: ['allocation-api', 'admin', 'pod-watcher', 'reconciler'],
    simTimings: { readyDelayMs: 100 },
    env: { TIER_CONFIG: JSON.stringify({ standard: { type: 'exclusive', target: 1 } }), CONNECT_TIMEOUT_SECONDS: '1' },
  });
  redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
}, 120000);

afterAll(async () => {
  await redis?.quit().catch(() => undefined);
  await stack?.stop();
}, 60000);

describe('rollout guardrail through the running stack', () => {
  it('rolls a 2.0.0 canary whose agents never connect back by itself within 10 s of the threshold', async () => {
    await run('kubectl', ['--kubeconfig', stack.kubeconfigPath, 'apply', '-f', join(ROOT, 'k8s', 'examples', 'voice-agent-v2-statefulset.yaml')], { timeout: 20000 });
    await waitFor(async () => {
      const answer = await admin('GET', '/api/v1/admin/rollout');
      return answer.body.versions?.['2.0.0']?.free === 1 && answer.body.versions?.['']?.free === 2;
    }, { timeoutMs: 30000, what: 'both versions recorded and free' });
    expect((await admin('PUT', '/api/v1/admin/rollout', { targets: [{ version: '', percent: 100 }] })).body).toMatchObject({ revision: 1 });
    const put = await admin('PUT', '/api/v1/admin/rollout', { targets: [{ version: '', percent: 50 }, { version: '2.0.0', percent: 50 }], guardrail: { max_excess_pp: 20, min_calls: 3 } });
    expect(put.body).toMatchObject({ revision: 2, guardrail_state: { state: 'watching', stable: '' } });

    let canaryCalls = 0;
    let lastCanaryAt = 0;
    for (let index = 0; canaryCalls < 3 && index < 60; index += 1) {
      // The canary's one pod is free again once the connect-timeout job released its call.
      await waitFor(async () => (await admin('GET', '/api/v1/admin/rollout')).body.versions['2.0.0'].free === 1, { timeoutMs: 10000, what: 'the canary pod free' });
      const answer = await api('/api/v1/allocate', { call_sid: `guard-${index}` });
      expect(answer.status).toBe(200);
      if (answer.body.agent_version === '2.0.0') {
        canaryCalls += 1;
        lastCanaryAt = Date.now();
      } else {
        expect((await api('/api/v1/connected', { call_sid: `guard-${index}` })).status).toBe(200);
        expect((await api('/api/v1/release', { call_sid: `guard-${index}`, reason: 'completed' })).status).toBe(200);
      }
    }
    expect(canaryCalls).toBe(3);
    // The threshold is crossed when the third canary call's 1 s deadline passes.
    const crossedAt = lastCanaryAt + 1000;
    const rolledBack = await waitFor(async () => {
      const answer = await admin('GET', '/api/v1/admin/rollout');
      return answer.body.revision === 3 ? answer.body : null;
    }, { timeoutMs: 20000, intervalMs: 100, what: 'the guardrail rollback' });
    expect(Date.now() - crossedAt).toBeLessThan(10000);
    expect(rolledBack).toMatchObject({ previous: 2, targets: [{ version: '', percent: 100 }], guardrail_state: { state: 'held' } });
    const events = (await redis.xrange(stack.keys.fleetStream(), '-', '+')).map(([, fields]) => fields).filter((fields) => fields[fields.indexOf('type') + 1] === 'rollout.rolled_back');
    expect(events.map((fields) => [fields[fields.indexOf('revision') + 1], fields[fields.indexOf('cause') + 1]])).toEqual([['3', 'guardrail']]);
    // New calls go to the stable version.
    const next = await api('/api/v1/allocate', { call_sid: 'guard-after' });
    expect(next.body.agent_version).toBe('');
    // The alert's gauge, on the reconciler that ran the job last (eventually every replica's run sees it held).
    await waitFor(async () => /smart_router_rollout_guardrail_tripped(\{[^}]*\})? 1\b/.test(await (await fetch(`${stack.url('reconciler')}/metrics`)).text()), { timeoutMs: 15000, what: 'the tripped gauge' });
  }, 120000);
});
