// Benchmark (not a test): allocate+release through the running allocation-api
// versus a hello-world on the same NestJS/Fastify bootstrap, measured in the
// same run, plus raw Lua script throughput on Redis. Prints ratios, since the
// machines are noisy. Usage: npm run bench  [-- --seconds 10 --connections 50]
//
// Latency at half of peak is measured twice: autocannon with `overallRate`
// (its limiter sends each connection's per-second quota back to back, then
// idles until the next second, so the load arrives in bursts), and an
// open-loop paced client that spreads allocate calls evenly over time and
// times allocate and release separately with sub-millisecond resolution.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'dist', 'package.json'));
const autocannon = require(join(root, 'node_modules', 'autocannon'));
const Redis = require(join(root, 'node_modules', 'ioredis'));
const testing = require(join(root, 'dist', 'node_modules', '@smart-router', 'testing'));

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? Number(args[index + 1]) : fallback;
};
const seconds = option('seconds', 10);
const connections = option('connections', 50);
const pods = option('pods', 400);

function startNode(script, env) {
  const child = spawn(process.execPath, [script], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  return child;
}

async function waitHttp(url) {
  await testing.waitFor(async () => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).catch(() => null)) !== null, { timeoutMs: 20000, what: url });
}

function cannon(options) {
  return new Promise((resolve, reject) => {
    autocannon({ connections, duration: seconds, ...options }, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

let counter = 0;
const allocateRelease = (base) => ({
  url: base,
  requests: [
    {
      method: 'POST', path: '/api/v1/allocate', headers: { 'content-type': 'application/json' },
      setupRequest: (request, context) => {
        counter += 1;
        context.sid = `bench-${process.pid}-${counter}`;
        return { ...request, body: JSON.stringify({ call_sid: context.sid }) };
      },
    },
    {
      method: 'POST', path: '/api/v1/release', headers: { 'content-type': 'application/json' },
      setupRequest: (request, context) => ({ ...request, body: JSON.stringify({ call_sid: context.sid, reason: 'bench' }) }),
    },
  ],
});

const hello = (base) => ({ url: `${base}/api/v1/hello`, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"call_sid":"bench"}' });

/**
 * Open-loop load at `rate` requests/s (half allocate, half release): a new call
 * starts every 2/rate s whether or not earlier ones finished; each call is an
 * allocate, then its release on the same keep-alive pool.
 */
async function paced(base, rate, durationMs) {
  const url = new URL(base);
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const post = (path, body) => new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const request = http.request({ host: url.hostname, port: url.port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (response) => {
      response.resume();
      response.on('end', () => resolve({ ok: response.statusCode === 200, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
    });
    request.on('error', () => resolve({ ok: false, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
    request.end(body);
  });
  const allocate = [];
  const release = [];
  let errors = 0;
  let n = 0;
  const inflight = new Set();
  const call = async () => {
    n += 1;
    const sid = `paced-${process.pid}-${n}`;
    const a = await post('/api/v1/allocate', JSON.stringify({ call_sid: sid }));
    allocate.push(a.ms);
    if (!a.ok) { errors += 1; return; }
    const r = await post('/api/v1/release', JSON.stringify({ call_sid: sid, reason: 'bench' }));
    release.push(r.ms);
    if (!r.ok) errors += 1;
  };
  const callsPerMs = rate / 2 / 1000;
  const start = performance.now();
  let started = 0;
  while (performance.now() - start < durationMs) {
    const due = Math.floor((performance.now() - start) * callsPerMs);
    while (started < due) {
      started += 1;
      const p = call().finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(inflight);
  agent.destroy();
  const elapsed = (performance.now() - start) / 1000;
  const pct = (values, q) => {
    const sorted = [...values].sort((x, y) => x - y);
    return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] : NaN;
  };
  return {
    rps: (allocate.length + release.length) / elapsed,
    allocate: { p50: pct(allocate, 0.5), p99: pct(allocate, 0.99), p999: pct(allocate, 0.999), n: allocate.length },
    release: { p50: pct(release, 0.5), p99: pct(release, 0.99), n: release.length },
    errors,
  };
}

/** Cumulative counts of the allocation-api's own allocate-duration histogram, summed over labels. */
async function allocationBuckets(base) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const buckets = new Map();
  for (const line of text.split('\n')) {
    const match = /^smart_router_allocation_duration_seconds_bucket\{.*le="([^"]+)".*\} (\S+)/.exec(line);
    if (match) buckets.set(match[1], (buckets.get(match[1]) ?? 0) + Number(match[2]));
  }
  return buckets;
}

/** Server-side view of one window: share under 1 and 2 ms, and the bucket holding p99. */
function serverSide(before, after) {
  const count = (le) => (after.get(le) ?? 0) - (before.get(le) ?? 0);
  const total = count('+Inf');
  if (!total) return null;
  const bounds = [...after.keys()].filter((le) => le !== '+Inf').map(Number).sort((x, y) => x - y);
  const p99 = bounds.find((le) => count(String(le)) >= 0.99 * total);
  return { total, under1: count('0.001') / total, under2: count('0.002') / total, p99Bucket: p99 === undefined ? '> 1 s' : `<= ${p99 * 1000} ms` };
}

function summary(result) {
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx };
}

async function rawScripts(url, prefix) {
  const fixture = await testing.createPoolFixture({ url, prefix, pods: Array.from({ length: pods }, (_, i) => `bench-pod-${i}`), tierConfig: '{"standard":{"type":"exclusive","target":0}}' });
  const deadline = Date.now() + seconds * 1000;
  let operations = 0;
  let n = 0;
  const worker = async () => {
    while (Date.now() < deadline) {
      n += 1;
      const sid = `raw-${n}`;
      await fixture.scripts.allocate({ callSid: sid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
      await fixture.scripts.release(sid, 'bench');
      operations += 2;
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: connections }, worker));
  await fixture.close();
  return operations / ((Date.now() - started) / 1000);
}

async function main() {
  const redis = await testing.RedisServer.start();
  const prefix = 'bench:';
  const fixture = await testing.createPoolFixture({ url: redis.url, prefix, pods: Array.from({ length: pods }, (_, i) => `voice-agent-${i}`), tierConfig: '{"standard":{"type":"exclusive","target":0}}' });
  await fixture.close();
  const apiPort = await testing.freePort();
  const helloPort = await testing.freePort();
  const api = startNode(join(root, 'dist', 'apps', 'allocation-api', 'src', 'main.js'), { REDIS_URL: redis.url, REDIS_PREFIX: prefix, HTTP_PORT: String(apiPort), LOG_LEVEL: 'error', TIER_CONFIG: '{"standard":{"type":"exclusive","target":0}}', TOMBSTONE_TTL_SECONDS: '0' });
  const helloApp = startNode(join(root, 'dist', 'tools', 'bench', 'src', 'hello-app.js'), { HTTP_PORT: String(helloPort) });
  try {
    await waitHttp(`http://127.0.0.1:${apiPort}/api/v1/release`);
    await waitHttp(`http://127.0.0.1:${helloPort}/api/v1/hello`);
    // Warm up both (JIT, connections, script cache).
    await cannon({ ...hello(`http://127.0.0.1:${helloPort}`), duration: 2 });
    await cannon({ ...allocateRelease(`http://127.0.0.1:${apiPort}`), duration: 2 });

    const baseline = summary(await cannon(hello(`http://127.0.0.1:${helloPort}`)));
    const allocation = summary(await cannon(allocateRelease(`http://127.0.0.1:${apiPort}`)));
    // Half of the measured peak as a total rate (autocannon spreads overallRate over the connections).
    // ignoreCoordinatedOmission: autocannon 8 "corrects" with an expected interval of ceil(1/rate) = 1 ms,
    // which adds synthetic samples; report what was measured.
    const halfRate = Math.max(1, Math.floor(allocation.rps / 2));
    const atHalf = summary(await cannon({ ...allocateRelease(`http://127.0.0.1:${apiPort}`), overallRate: halfRate, ignoreCoordinatedOmission: true }));
    const before = await allocationBuckets(`http://127.0.0.1:${apiPort}`);
    const pacedHalf = await paced(`http://127.0.0.1:${apiPort}`, halfRate, seconds * 1000);
    const server = serverSide(before, await allocationBuckets(`http://127.0.0.1:${apiPort}`));
    const scriptOps = await rawScripts(redis.url, 'benchraw:');

    const row = (name, s) => `| ${name} | ${s.rps.toFixed(0)} | ${s.p50} | ${s.p99} | ${s.errors} |`;
    console.log(`\n${seconds}s per run, ${connections} connections, ${pods} pods, node ${process.version}\n`);
    console.log('| run | req/s | p50 ms | p99 ms | errors |');
    console.log('|---|---|---|---|---|');
    console.log(row('hello-world (same bootstrap)', baseline));
    console.log(row('allocate+release (each request)', allocation));
    console.log(row(`allocate+release at half of peak, autocannon overallRate (${halfRate} req/s, bursty)`, atHalf));
    const f = (v) => v.toFixed(2);
    console.log(`\npaced open-loop at half of peak (${halfRate} req/s target, ${pacedHalf.rps.toFixed(0)} achieved, ${pacedHalf.errors} errors):`);
    console.log(`  allocate: p50 ${f(pacedHalf.allocate.p50)} ms, p99 ${f(pacedHalf.allocate.p99)} ms, p99.9 ${f(pacedHalf.allocate.p999)} ms (${pacedHalf.allocate.n} calls)`);
    console.log(`  release:  p50 ${f(pacedHalf.release.p50)} ms, p99 ${f(pacedHalf.release.p99)} ms`);
    if (server) console.log(`  allocate inside the server (smart_router_allocation_duration_seconds): ${(server.under1 * 100).toFixed(1)}% <= 1 ms, ${(server.under2 * 100).toFixed(1)}% <= 2 ms, p99 ${server.p99Bucket}`);
    console.log(`\nallocation / hello-world throughput: ${(allocation.rps / baseline.rps).toFixed(2)}`);
    console.log(`raw scripts on Redis (allocate+release, ${connections} callers): ${scriptOps.toFixed(0)} scripts/s = ${(scriptOps / allocation.rps).toFixed(1)}x the HTTP allocation rate`);
  } finally {
    api.kill('SIGTERM');
    helloApp.kill('SIGTERM');
    await redis.dispose();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
