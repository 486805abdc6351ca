// Benchmark (not a test): what REDIS_REPLICA_ACKS=1 costs. A primary with one
// replica on loopback; two allocation-api processes on it, one with
// REDIS_REPLICA_ACKS=0 and one with =1 (WAIT 1 pipelined after every
// allocate/release script); allocate+release load through each, interleaved
// rounds in the same run; plus the raw scripts with and without WAIT.
// Usage: node tools/bench/replica-acks.mjs [--seconds 5 --connections 50 --rounds 3]
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'dist', 'package.json'));
const autocannon = require(join(root, 'node_modules', 'autocannon'));
const testing = require(join(root, 'dist', 'node_modules', '@smart-router', 'testing'));

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? Number(args[index + 1]) : fallback;
};
const seconds = option('seconds', 5);
const connections = option('connections', 50);
const rounds = option('rounds', 3);
const pods = 400;
const TIERS = '{"standard":{"type":"exclusive","target":0}}';

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
        context.sid = `acks-${process.pid}-${counter}`;
        return { ...request, body: JSON.stringify({ call_sid: context.sid }) };
      },
    },
    {
      method: 'POST', path: '/api/v1/release', headers: { 'content-type': 'application/json' },
      setupRequest: (request, context) => ({ ...request, body: JSON.stringify({ call_sid: context.sid, reason: 'bench' }) }),
    },
  ],
});

async function rawScripts(url, prefix, replicaAcks) {
  const fixture = await testing.createPoolFixture({
    url, prefix, tierConfig: TIERS, pods: Array.from({ length: pods }, (_, i) => `raw-pod-${i}`), limits: { replicaAcks, waitTimeoutMs: 1000 },
  });
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

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function main() {
  const primary = await testing.RedisServer.start();
  const replica = await testing.RedisServer.start(undefined, ['--replicaof', '127.0.0.1', String(primary.port)]);
  const apps = [];
  try {
    await testing.waitFor(() => {
      try {
        return require('node:child_process').execFileSync('redis-cli', ['-p', String(primary.port), 'info', 'replication'], { encoding: 'utf8' }).includes('state=online');
      } catch {
        return false;
      }
    }, { what: 'replica online' });
    const runs = {};
    for (const acks of [0, 1]) {
      const prefix = `acks${acks}:`;
      const fixture = await testing.createPoolFixture({ url: primary.url, prefix, tierConfig: TIERS, pods: Array.from({ length: pods }, (_, i) => `voice-agent-${i}`) });
      await fixture.close();
      const port = await testing.freePort();
      apps.push(spawn(process.execPath, [join(root, 'dist', 'apps', 'allocation-api', 'src', 'main.js')], {
        env: { ...process.env, REDIS_URL: primary.url, REDIS_PREFIX: prefix, HTTP_PORT: String(port), LOG_LEVEL: 'error', TIER_CONFIG: TIERS, TOMBSTONE_TTL_SECONDS: '0', REDIS_REPLICA_ACKS: String(acks), REDIS_WAIT_TIMEOUT_MS: '1000', ALLOW_UNAUTHENTICATED: 'true' },
        stdio: ['ignore', 'ignore', 'inherit'],
      }));
      const base = `http://127.0.0.1:${port}`;
      await testing.waitFor(async () => (await fetch(`${base}/ready`).catch(() => null))?.status === 200, { timeoutMs: 20000, what: `allocation-api (acks ${acks})` });
      await cannon({ ...allocateRelease(base), duration: 2 });
      runs[acks] = { base, rps: [], p99: [], errors: 0 };
    }
    for (let round = 0; round < rounds; round += 1) {
      for (const acks of [0, 1]) {
        const result = await cannon(allocateRelease(runs[acks].base));
        runs[acks].rps.push(result.requests.average);
        runs[acks].p99.push(result.latency.p99);
        runs[acks].errors += result.errors + result.non2xx;
      }
    }
    const raw0 = await rawScripts(primary.url, 'raw0:', 0);
    const raw1 = await rawScripts(primary.url, 'raw1:', 1);

    console.log(`\n${rounds} interleaved rounds of ${seconds}s, ${connections} connections, primary + 1 replica on loopback, node ${process.version}\n`);
    console.log('| REDIS_REPLICA_ACKS | allocate+release req/s (each round) | median | p99 ms (median) | errors |');
    console.log('|---|---|---|---|---|');
    for (const acks of [0, 1]) {
      const run = runs[acks];
      console.log(`| ${acks} | ${run.rps.map((v) => v.toFixed(0)).join(', ')} | ${median(run.rps).toFixed(0)} | ${median(run.p99)} | ${run.errors} |`);
    }
    console.log(`\nHTTP throughput with WAIT 1 / without: ${(median(runs[1].rps) / median(runs[0].rps)).toFixed(2)}`);
    console.log(`raw scripts (${connections} callers): ${raw0.toFixed(0)} scripts/s without WAIT, ${raw1.toFixed(0)} with WAIT 1 pipelined: ${(raw1 / raw0).toFixed(2)}`);
  } finally {
    for (const app of apps) app.kill('SIGTERM');
    await replica.dispose();
    await primary.dispose();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
