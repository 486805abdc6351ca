import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { jsonRequest, waitFor } from '@smart-router/testing';
import { FREE_PORTS, LocalStack } from './stack';
import { PrometheusServer, prometheusAlerts, startPrometheus } from './prometheus-server';

/**
 * The alerts as a real Prometheus (Debian's package) evaluates them from the
 * running apps' metrics, with deploy/monitoring/alerts.yml loaded unchanged:
 * - SmartRouterRolloutRolledBack (`for: 0m`) is reported *firing* by
 *   Prometheus once the guardrail rolled back a 2.0.0 canary whose agents
 *   never connect (the way guardrail.e2e.spec.ts trips it), next to the
 *   rollout.rolled_back event;
 * - SmartRouterVoiceAgentsDead (`for: 1m`) is reported *pending* once a
 *   frozen agent is declared dead: its expression holds on the real metrics;
 *   waiting out the minute would triple this spec's time, and the `for:`
 *   itself is covered by the promtool test (deploy/monitoring/alerts.test.yml).
 * Prometheus scrapes and evaluates every second (the helper's config).
 */

const ROOT = join(__dirname, '..', '..', '..');
const APPS = ['allocation-api', 'admin', 'pod-watcher', 'reconciler'] as const;
const run = promisify(execFile);

let stack: LocalStack;
let prometheus: PrometheusServer;
let redis: Redis;
let workDir: string;

const request = jsonRequest;
const admin = (method: string, path: string, body?: unknown) => request(stack.url('admin'), method, path, body);
const api = (path: string, body: unknown) => request(stack.url('allocation-api'), 'POST', path, body);
const alertState = async (name: string) => (await prometheusAlerts(prometheus.url)).find((alert) => alert.labels.alertname === name)?.state;

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'sr-prometheus-alerts-'));
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: join(workDir, 'logs'),
    replicas: 2,
    apps: APPS,
    simTimings: { readyDelayMs: 100 },
    env: {
      TIER_CONFIG: JSON.stringify({ standard: { type: 'exclusive', target: 1 } }),
      CONNECT_TIMEOUT_SECONDS: '1',
      // Jobs 3x the production pace (guardrail every ~0.7 s); heartbeats every 1 s, dead after 4 s of silence
      // (margin enough that a busy test machine never declares a healthy agent dead during the first test).
      JOB_INTERVAL_SCALE: '0.33',
      HEARTBEAT_INTERVAL_MS: '1000',
      HEARTBEAT_SUSPECT_MS: '3000',
      HEARTBEAT_DEAD_MS: '4000',
    },
  });
  redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  prometheus = await startPrometheus(workDir, Object.fromEntries(APPS.map((app) => [app, stack.ports.apps[app]])));
}, 120000);

afterAll(async () => {
  await prometheus?.stop();
  await redis?.quit().catch(() => undefined);
  await stack?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
}, 60000);

describe('alerts in a real Prometheus', () => {
  it('reports SmartRouterRolloutRolledBack firing after the guardrail rolled a never-connecting canary back', async () => {
    // Inactive before: the rule is loaded, evaluated, and not firing on a healthy stack.
    await waitFor(async () => {
      const rules = (await (await fetch(`${prometheus.url}/api/v1/rules?type=alert`)).json()) as { data: { groups: { rules: { name: string; health: string; state: string }[] }[] } };
      const rule = rules.data.groups.flatMap((group) => group.rules).find((entry) => entry.name === 'SmartRouterRolloutRolledBack');
      return rule?.health === 'ok' && rule.state === 'inactive';
    }, { timeoutMs: 15000, intervalMs: 250, what: 'SmartRouterRolloutRolledBack evaluated, inactive' });

    await run('kubectl', ['--kubeconfig', stack.kubeconfigPath, 'apply', '-f', join(ROOT, 'k8s', 'examples', 'voice-agent-v2-statefulset.yaml')], { timeout: 20000 });
    await waitFor(async () => {
      const answer = await admin('GET', '/api/v1/admin/rollout');
      return answer.body.versions?.['2.0.0']?.free === 1 && answer.body.versions?.['']?.free === 2;
    }, { timeoutMs: 30000, what: 'both versions recorded and free' });
    expect((await admin('PUT', '/api/v1/admin/rollout', { targets: [{ version: '', percent: 100 }] })).body).toMatchObject({ revision: 1 });
    expect((await admin('PUT', '/api/v1/admin/rollout', { targets: [{ version: '', percent: 50 }, { version: '2.0.0', percent: 50 }], guardrail: { max_excess_pp: 20, min_calls: 3 } })).body)
      .toMatchObject({ revision: 2, guardrail_state: { state: 'watching' } });
    expect(await alertState('SmartRouterRolloutRolledBack')).toBeUndefined();

    // The canary's agents never connect (nobody calls /connected for them): CONNECT_TIMEOUT_SECONDS=1 releases them.
    let canaryCalls = 0;
    for (let index = 0; canaryCalls < 3 && index < 60; index += 1) {
      await waitFor(async () => (await admin('GET', '/api/v1/admin/rollout')).body.versions['2.0.0'].free === 1, { timeoutMs: 10000, what: 'the canary pod free' });
      const answer = await api('/api/v1/allocate', { call_sid: `alert-${index}` });
      expect(answer.status).toBe(200);
      if (answer.body.agent_version === '2.0.0') {
        canaryCalls += 1;
      } else {
        expect((await api('/api/v1/connected', { call_sid: `alert-${index}` })).status).toBe(200);
        expect((await api('/api/v1/release', { call_sid: `alert-${index}`, reason: 'completed' })).status).toBe(200);
      }
    }
    expect(canaryCalls).toBe(3);

    await waitFor(async () => (await admin('GET', '/api/v1/admin/rollout')).body.revision === 3, { timeoutMs: 15000, intervalMs: 100, what: 'the guardrail rollback' });
    const events = (await redis.xrange(stack.keys.fleetStream(), '-', '+')).map(([, fields]) => fields).filter((fields) => fields[fields.indexOf('type') + 1] === 'rollout.rolled_back');
    expect(events.map((fields) => [fields[fields.indexOf('revision') + 1], fields[fields.indexOf('cause') + 1]])).toEqual([['3', 'guardrail']]);
    // Prometheus itself: scraped the gauge, evaluated the rule, reports the alert firing.
    const firing = await waitFor(async () => (await prometheusAlerts(prometheus.url)).find((alert) => alert.labels.alertname === 'SmartRouterRolloutRolledBack' && alert.state === 'firing'),
      { timeoutMs: 15000, intervalMs: 250, what: 'SmartRouterRolloutRolledBack firing in Prometheus' });
    expect(firing.labels).toMatchObject({ severity: 'warning' });
  }, 90000);

  it('reports SmartRouterVoiceAgentsDead pending (its expression true) once a frozen agent is declared dead', async () => {
    expect(await alertState('SmartRouterVoiceAgentsDead')).toBeUndefined();
    await waitFor(async () => (await redis.zscore(stack.keys.heartbeats(), 'voice-agent-1')) !== null, { timeoutMs: 10000, what: 'voice-agent-1 enrolled by its heartbeats' });
    expect((await fetch(`${stack.sim.url}/sim/agents/voice-agent-1/freeze`, { method: 'POST' })).status).toBe(200);
    await waitFor(async () => (await redis.hget(stack.keys.pod('voice-agent-1'), 'liveness')) === 'dead', { timeoutMs: 10000, what: 'voice-agent-1 declared dead' });
    // `for: 1m`: Prometheus holds it pending first, which proves the rule's expression holds on the scraped gauge.
    await waitFor(async () => (await alertState('SmartRouterVoiceAgentsDead')) === 'pending', { timeoutMs: 15000, intervalMs: 250, what: 'SmartRouterVoiceAgentsDead pending in Prometheus' });
    expect((await fetch(`${stack.sim.url}/sim/agents/voice-agent-1/thaw`, { method: 'POST' })).status).toBe(200);
  }, 40000);
});
