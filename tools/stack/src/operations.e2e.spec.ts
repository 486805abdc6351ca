import { SmartRouterClient } from '@smart-router/client';
import { mkdtempSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { freePort, waitFor } from '@smart-router/testing';
import { AppName, LocalStack, FREE_PORTS, exitedCleanly } from './stack';

/**
 * SPEC section 6 item 7 and issue 5's proofs: every router app restarted in
 * turn under steady allocate/release load fails zero allocations, and the
 * Prometheus counters match a scripted workload.
 */

const ROOT = join(__dirname, '..', '..', '..');

let stack: LocalStack;
let redis: Redis;
let collector: Server;

interface ExportedSpan {
  service: string;
  name: string;
  traceId: string;
  parentSpanId: string;
  spanId: string;
  attributes: Record<string, unknown>;
}
const spans: ExportedSpan[] = [];

/** A minimal OTLP/HTTP JSON trace receiver: what an OpenTelemetry collector would get. */
async function startCollector(): Promise<number> {
  collector = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans: Array<{ spans: Array<Record<string, unknown>> }> }>;
        };
        for (const resourceSpan of body.resourceSpans ?? []) {
          const service = resourceSpan.resource.attributes.find((attribute) => attribute.key === 'service.name')?.value.stringValue ?? '';
          for (const scope of resourceSpan.scopeSpans) {
            for (const span of scope.spans) {
              const attributes = Object.fromEntries(((span.attributes as Array<{ key: string; value: Record<string, unknown> }>) ?? []).map((attribute) => [attribute.key, Object.values(attribute.value)[0]]));
              spans.push({ service, name: String(span.name), traceId: String(span.traceId), spanId: String(span.spanId), parentSpanId: String(span.parentSpanId ?? ''), attributes });
            }
          }
        }
      } catch {
        // Not JSON: the test below fails for lack of spans.
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  return (collector.address() as { port: number }).port;
}

/** allocate/release through the typed client; bodies read loosely (assertions compare success and error fields alike). */
async function post(base: string, path: '/api/v1/allocate' | '/api/v1/release', body: { call_sid: string }): Promise<{ status: number; body: Record<string, unknown> }> {
  const client = new SmartRouterClient(base);
  const answer = path === '/api/v1/allocate' ? await client.allocate(body) : await client.release(body);
  return answer as unknown as { status: number; body: Record<string, unknown> };
}

async function invariants(): Promise<{ ok: boolean; violations: unknown[] }> {
  return (await (await fetch(`${stack.url('admin')}/api/v1/admin/invariants`)).json()) as { ok: boolean; violations: unknown[] };
}

/** Sums a Prometheus counter's samples whose labels include every given pair. */
function sample(text: string, metric: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`) && !line.startsWith(`${metric} `)) continue;
    if (Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

async function metrics(base: string): Promise<string> {
  return (await fetch(`${base}/metrics`)).text();
}

beforeAll(async () => {
  const collectorPort = await startCollector();
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-operations-')),
    simTimings: { readyDelayMs: 200, terminationDelayMs: 200, recreateDelayMs: 50 },
    env: {
      JOB_INTERVAL_SCALE: '0.1', STREAM_CLAIM_IDLE_MS: '1000', LEASE_DURATION_SECONDS: '3', LEASE_RETRY_MS: '200',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collectorPort}`, OTEL_BSP_SCHEDULE_DELAY: '100',
      // The rolling-restart load is one client address as fast as the stack answers, which the
      // gateway's per-address rate (SPEC 10.2, tools/gateway edge-limits) would refuse; not what it tests.
      EDGE_RATE_PER_SECOND: '100000', EDGE_RATE_BURST: '100000',
    },
  });
  redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  await waitFor(async () => (await post(stack.url('gateway'), '/api/v1/allocate', { call_sid: 'ops-warmup' })).status === 200, { timeoutMs: 15000, what: 'a first allocation' });
  await post(stack.url('gateway'), '/api/v1/release', { call_sid: 'ops-warmup' });
}, 90000);

afterAll(async () => {
  await redis?.quit().catch(() => undefined);
  await stack?.stop();
  await new Promise((resolve) => collector?.close(resolve));
}, 60000);

describe('operations', () => {
  it('metrics: the allocation counters match a scripted workload', async () => {
    const api = stack.url('allocation-api');
    const before = await metrics(api);
    const allocated = ['m-1', 'm-2', 'm-3'];
    for (const sid of allocated) expect((await post(api, '/api/v1/allocate', { call_sid: sid })).status).toBe(200);
    expect((await post(api, '/api/v1/allocate', { call_sid: 'm-1' })).body.was_existing).toBe(true);
    expect((await post(api, '/api/v1/allocate', { call_sid: 'bad sid!' })).status).toBe(400);
    for (const sid of allocated) expect((await post(api, '/api/v1/release', { call_sid: sid })).status).toBe(200);
    expect((await post(api, '/api/v1/release', { call_sid: 'm-1' })).status).toBe(404);

    const after = await metrics(api);
    const delta = (metric: string, labels: Record<string, string> = {}) => sample(after, metric, labels) - sample(before, metric, labels);
    expect(delta('smart_router_allocations_total', { result: 'allocated' })).toBe(3);
    expect(delta('smart_router_allocations_total', { result: 'existing' })).toBe(1);
    expect(delta('smart_router_allocation_duration_seconds_count')).toBe(4);
    expect(delta('smart_router_releases_total')).toBe(4);
    expect(delta('smart_router_http_errors_total', { status: '400' })).toBe(1);
    expect(delta('smart_router_redis_errors_total')).toBe(0);

    const admin = await metrics(stack.url('admin'));
    expect(sample(admin, 'smart_router_pool_pods', { tier: 'standard', state: 'assigned' })).toBe(3);
    expect(sample(admin, 'smart_router_pool_pods', { tier: 'gold', state: 'available' })).toBe(1);
    expect(sample(admin, 'smart_router_active_calls')).toBe(0);
    const watcher = await metrics(stack.url('pod-watcher'));
    expect(sample(watcher, 'smart_router_leader')).toBe(1);
    expect(sample(watcher, 'smart_router_pod_events_published_total')).toBeGreaterThanOrEqual(5);
    const reconciler = await metrics(stack.url('reconciler'));
    expect(sample(reconciler, 'smart_router_job_runs_total')).toBeGreaterThan(0);
    expect(reconciler).toContain('smart_router_pod_stream_lag');
  });

  it('traces: a pod change is one trace from the watcher, across the stream, into the reconciler; allocations are traced', async () => {
    const pod = 'voice-agent-2';
    stack.sim.setReady(pod, false);
    const published = await waitFor(() => spans.find((span) => span.service === 'pod-watcher' && span.name === 'publishPodEvent' && span.attributes['pod.name'] === pod), { what: 'the watcher span' });
    const applied = await waitFor(() => spans.find((span) => span.service === 'reconciler' && span.name === 'applyPodEvent' && span.traceId === published.traceId), { what: 'the reconciler span in the same trace' });
    expect(applied.attributes['pod.name']).toBe(pod);
    stack.sim.setReady(pod, true);

    expect((await post(stack.url('gateway'), '/api/v1/allocate', { call_sid: 'traced-1' })).status).toBe(200);
    const allocation = await waitFor(() => spans.find((span) => span.service === 'allocation-api' && span.name === 'allocateCall' && span.attributes['call.sid'] === 'traced-1'), { what: 'the allocation span' });
    expect(allocation.traceId).toMatch(/^[0-9a-f]{32}$/);
    // ...as the child of the request's SERVER span, which continues the caller's traceparent.
    const request = await waitFor(() => spans.find((span) => span.service === 'allocation-api' && span.spanId === allocation.parentSpanId), { what: 'the HTTP span' });
    expect(request).toMatchObject({ name: 'POST /api/v1/allocate', attributes: { 'http.response.status_code': 200 } });

    const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const traced = await fetch(`${stack.url('allocation-api')}/api/v1/allocate`, {
      method: 'POST', headers: { 'content-type': 'application/json', traceparent: `00-${callerTrace}-00f067aa0ba902b7-01` }, body: '{"call_sid":"traced-2"}',
    });
    expect(traced.status).toBe(200);
    await waitFor(() => spans.find((span) => span.name === 'allocateCall' && span.attributes['call.sid'] === 'traced-2' && span.traceId === callerTrace), { what: 'the allocation in the caller\'s trace' });
    expect((await post(stack.url('gateway'), '/api/v1/release', { call_sid: 'traced-2' })).status).toBe(200);
    expect((await post(stack.url('gateway'), '/api/v1/release', { call_sid: 'traced-1' })).status).toBe(200);
    await waitFor(async () => (await fetch(`${stack.url('admin')}/api/v1/status`).then((response) => response.json()) as { pools: { basic: { available: string[] } } }).pools.basic.available.includes(pod), { what: `${pod} back` });
  });

  it('rolling restart of every app under allocate/release load fails zero allocations', async () => {
    // A second instance of each app: the gateway (like nginx) sends new connections elsewhere while one restarts.
    const extra: Array<[AppName, string]> = [['allocation-api', 'allocation-api-b'], ['webhooks', 'webhooks-b'], ['reconciler', 'reconciler-b'], ['pod-watcher', 'pod-watcher-b']];
    const ports = new Map<string, number>(Object.entries(stack.ports.apps));
    for (const [app, instance] of extra) {
      const port = await freePort();
      ports.set(instance, port);
      stack.startApp(app, { instance, port });
      await stack.waitReady(app, port);
    }
    stack.gateway.setUpstream('allocationApi', [stack.url('allocation-api'), `http://127.0.0.1:${ports.get('allocation-api-b')}`]);
    stack.gateway.setUpstream('webhooks', [stack.url('webhooks'), `http://127.0.0.1:${ports.get('webhooks-b')}`]);

    const failures: string[] = [];
    let completed = 0;
    let running = true;
    const worker = async (id: number) => {
      let n = 0;
      while (running) {
        const sid = `roll-${id}-${(n += 1)}`;
        try {
          const allocated = await post(stack.url('gateway'), '/api/v1/allocate', { call_sid: sid });
          if (allocated.status !== 200) failures.push(`allocate ${sid}: ${allocated.status} ${JSON.stringify(allocated.body)}`);
          const released = await post(stack.url('gateway'), '/api/v1/release', { call_sid: sid });
          // 404 = already released (a retried request): voice agents treat it as success.
          if (allocated.status === 200 && released.status !== 200 && released.status !== 404) failures.push(`release ${sid}: ${released.status}`);
          completed += 1;
        } catch (error) {
          failures.push(`${sid}: ${(error as Error).message}`);
        }
      }
    };
    const load = [1, 2, 3, 4].map(worker);

    const restart = async (instance: string, app: AppName) => {
      const before = completed;
      const started = Date.now();
      expect(exitedCleanly(await stack.stopApp(instance, 'SIGTERM'))).toBe(true);
      expect(Date.now() - started).toBeLessThan(10000);
      stack.startApp(app, { instance, port: ports.get(instance) });
      await stack.waitReady(app, ports.get(instance));
      await waitFor(() => completed > before + 20, { what: `load to continue after restarting ${instance}` });
    };
    try {
      await waitFor(() => completed > 20, { what: 'load to start' });
      for (const [app, instance] of extra) {
        await restart(app, app);
        await restart(instance, app);
      }
      // The watcher leader last, whichever instance holds the lease now.
      // The leader record names the previous holder until a live instance renews it.
      const leaderInstance = await waitFor(async () => {
        const leader = await redis.hget(stack.keys.watcherLeader(), 'identity');
        return [...stack.identities.entries()].find(([instance, identity]) => identity === leader && stack.running.has(instance))?.[0];
      }, { what: 'a running watcher instance to hold the lease' });
      await restart(leaderInstance, 'pod-watcher');
    } finally {
      running = false;
      await Promise.all(load);
    }
    expect(failures).toEqual([]);
    expect(completed).toBeGreaterThan(200);
    expect(await invariants()).toEqual({ ok: true, violations: [] });
    expect(await redis.zcard(stack.keys.activeCalls())).toBe(0);
  }, 180000);
});
