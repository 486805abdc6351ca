// Benchmark (not a test): allocate+release through the running allocation-api
// versus a hello-world on the same NestJS/Fastify bootstrap, measured in the
// same run, plus raw Lua script throughput on Redis. Prints ratios, since the
// machines are noisy. Usage: npm run bench  [-- --seconds 10 --connections 50]
import { spawn } from 'node:child_process';
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
    const halfRate = Math.max(1, Math.floor(allocation.rps / 2 / connections));
    const atHalf = summary(await cannon({ ...allocateRelease(`http://127.0.0.1:${apiPort}`), connectionRate: halfRate }));
    const scriptOps = await rawScripts(redis.url, 'benchraw:');

    const row = (name, s) => `| ${name} | ${s.rps.toFixed(0)} | ${s.p50} | ${s.p99} | ${s.errors} |`;
    console.log(`\n${seconds}s per run, ${connections} connections, ${pods} pods, node ${process.version}\n`);
    console.log('| run | req/s | p50 ms | p99 ms | errors |');
    console.log('|---|---|---|---|---|');
    console.log(row('hello-world (same bootstrap)', baseline));
    console.log(row('allocate+release (each request)', allocation));
    console.log(row(`allocate+release at half of peak (${halfRate * connections} req/s)`, atHalf));
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
