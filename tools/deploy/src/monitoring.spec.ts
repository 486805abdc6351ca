import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { MONITORING_DIR, SPECIFIED_METRICS, alertRules, alerts, dashboardQueries, exportedMetrics, metricsIn } from './monitoring';
import { readRepoFile } from './repository';

function promtool(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { cwd: MONITORING_DIR, encoding: 'utf8', timeout: 60000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('alerts and dashboards as code (deploy/monitoring)', () => {
  it('promtool check rules accepts the alert rules', () => {
    const result = promtool('check', 'rules', 'alerts.yml');
    expect(result).toMatchObject({ status: 0 });
    expect(result.output).toContain(`SUCCESS: ${alerts().length} rules found`);
  });

  it('promtool test rules passes, with a firing test for every alert', () => {
    const result = promtool('test', 'rules', 'alerts.test.yml');
    expect({ status: result.status, output: result.output.trim() }).toEqual({ status: 0, output: expect.stringContaining('SUCCESS') });
    const tests = (parse(readRepoFile('deploy', 'monitoring', 'alerts.test.yml')) as { tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] }).tests;
    const fired = new Set(tests.flatMap((test) => (test.alert_rule_test ?? []).filter((check) => check.exp_alerts.length > 0).map((check) => check.alertname)));
    expect(alerts().map((rule) => rule.alert).filter((name) => !fired.has(name))).toEqual([]);
  });

  it('ships the same rules as a PrometheusRule in k8s/monitoring', () => {
    const manifest = parse(readRepoFile('k8s', 'monitoring', 'prometheusrule-smart-router.yaml')) as { apiVersion: string; kind: string; spec: unknown };
    expect([manifest.apiVersion, manifest.kind]).toEqual(['monitoring.coreos.com/v1', 'PrometheusRule']);
    expect(manifest.spec).toEqual(alertRules());
    expect(parse(readRepoFile('k8s', 'monitoring', 'kustomization.yaml'))).toMatchObject({ resources: ['prometheusrule-smart-router.yaml'] });
  });

  it('every Grafana dashboard query is valid PromQL (checked by promtool as recording rules)', () => {
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThanOrEqual(10);
    const dir = mkdtempSync(join(tmpdir(), 'sr-dashboard-rules-'));
    try {
      const rules = queries.map((query, index) => ({ record: `dashboard:query_${index}`, expr: query.expr }));
      writeFileSync(join(dir, 'dashboard.yml'), stringify({ groups: [{ name: 'dashboard', rules }] }));
      const run = spawnSync('promtool', ['check', 'rules', join(dir, 'dashboard.yml')], { encoding: 'utf8', timeout: 60000 });
      expect({ status: run.status, output: run.stdout + run.stderr }).toEqual({ status: 0, output: expect.stringContaining(`SUCCESS: ${queries.length} rules found`) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the dashboard covers allocations by pool and result, latency, pool state, active calls, stream lag and job runs', () => {
    const read = new Set(dashboardQueries().flatMap((query) => metricsIn(query.expr)));
    for (const metric of ['smart_router_allocations_total', 'smart_router_allocation_duration_seconds', 'smart_router_pool_pods', 'smart_router_active_calls', 'smart_router_pod_stream_lag', 'smart_router_job_runs_total']) {
      expect(read).toContain(metric);
    }
  });

  it('reads only metrics the apps export (or that SPEC 9.1/9.3 names for changes on their way)', () => {
    const exported = exportedMetrics();
    const expressions = [...alerts().map((rule) => rule.expr), ...dashboardQueries().map((query) => query.expr)];
    const unknown = [...new Set(expressions.flatMap(metricsIn))].filter((metric) => !exported.has(metric) && !SPECIFIED_METRICS.has(metric));
    expect(unknown).toEqual([]);
  });
});
