import { ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort, waitFor } from '@smart-router/testing';
import { MONITORING_DIR } from '../../deploy/src/monitoring';

/**
 * A real Prometheus (Debian's package) for the e2e specs: scrapes the given
 * targets every second and evaluates deploy/monitoring/alerts.yml every
 * second (the rules themselves are loaded unchanged, `for:` included).
 */
export interface PrometheusServer {
  url: string;
  stop(): Promise<void>;
}

export async function startPrometheus(workDir: string, targets: Record<string, number>): Promise<PrometheusServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  writeFileSync(join(workDir, 'prometheus.yml'), stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: [join(MONITORING_DIR, 'alerts.yml')],
    scrape_configs: Object.entries(targets).map(([job, target]) => ({ job_name: job, static_configs: [{ targets: [`127.0.0.1:${target}`] }] })),
  }));
  const child: ChildProcess = spawn('prometheus', [
    `--config.file=${join(workDir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(workDir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
  ], { stdio: 'ignore' });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  };
  try {
    await waitFor(async () => (await fetch(`${url}/-/ready`).catch(() => null))?.status === 200, { timeoutMs: 30000, intervalMs: 200, what: 'Prometheus ready' });
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, stop };
}

export interface PrometheusAlert {
  labels: Record<string, string>;
  state: 'pending' | 'firing' | 'inactive';
  activeAt?: string;
}

/** The alerts Prometheus itself reports (pending and firing), from GET /api/v1/alerts. */
export async function prometheusAlerts(url: string): Promise<PrometheusAlert[]> {
  const answer = (await (await fetch(`${url}/api/v1/alerts`)).json()) as { data: { alerts: PrometheusAlert[] } };
  return answer.data.alerts;
}
