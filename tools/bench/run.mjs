// `npm run bench` (not a test): allocation-api as `npm start` runs it (the local
// stack, tracing as shipped, LOG_LEVEL info) against a plain NestJS 11 + Fastify
// hello app (tools/bench/src/hello-app.ts) started beside it. 50 connections
// alternate allocate and release straight to allocation-api; the hello round
// posts the very same bodies, built the same way, to the hello app, so the load
// generator's work per request is the same in both. Rounds against the two apps
// alternate in one run, so both see the same machine noise. Reports throughput
// and allocate-p99 ratios, CPU per request of every process in the loop (the load
// generator included: on a CPU-bound machine that budget sets the ratio), 503
// NO_POD_AVAILABLE speed against successful allocations, and every app's RSS
// idle and after the load.
//
// Usage: npm run bench [-- --seconds 5 --rounds 3 --connections 50 --pods 100 --raw --profile DIR --node-args '...' --against DIST --against-node-args '...']
//   --raw      also measure raw Lua allocate+release on Redis (no HTTP)
//   --profile  run allocation-api under `node --cpu-prof` (profile written to DIR)
//   --against  also run allocation-api from another build's dist directory (e.g. main's, copied
//              under .local/ so its node_modules resolve) on the same Redis, in the same
//              alternation: a same-run baseline for a change
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'dist', 'package.json'));
const autocannon = require(join(root, 'node_modules', 'autocannon'));
const testing = require(join(root, 'dist', 'node_modules', '@smart-router', 'testing'));
const { LocalStack, FREE_PORTS, APPS } = require(join(root, 'dist', 'node_modules', '@smart-router', 'stack'));
const { SmartRouterClient } = require(join(root, 'dist', 'node_modules', '@smart-router', 'client'));
const Redis = require(join(root, 'node_modules', 'ioredis'));

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? args[index + 1] : fallback;
};
const seconds = Number(option('seconds', 5));
const rounds = Number(option('rounds', 3));
const connections = Number(option('connections', 50));
const pods = Number(option('pods', 100));
const profileDir = option('profile', '');
/** Extra node options for allocation-api (e.g. `--node-args --max-semi-space-size=4`, space-separated). */
const nodeArgs = option('node-args', '').split(' ').filter(Boolean);
const raw = args.includes('--raw');
const againstDist = option('against', '');
const againstNodeArgs = option('against-node-args', '').split(' ').filter(Boolean);

const median = (values) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : NaN;
};
const percentile = (values, q) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] : NaN;
};
const rssMb = (pid) => {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
};

/** CPU time (user + system) a process has used, ms (/proc/PID/stat, 100 ticks/s). */
const cpuMs = (pid) => {
  if (pid === process.pid) {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1000;
  }
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
};

/** Runs `work` and adds each watched process's CPU ms per request to its result. */
async function withCpu(pids, work) {
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMs(pid)]));
  const result = await work();
  const requests = result.rps * seconds;
  result.cpuPerRequest = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, (cpuMs(pid) - before[name]) / requests]));
  return result;
}

function cannon(options) {
  return new Promise((resolve, reject) => {
    autocannon({ connections, duration: seconds, ...options }, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

let counter = 0;
const nextSid = (tag) => {
  counter += 1;
  return `${tag}-${process.pid}-${counter}`;
};

/**
 * Each connection sends allocate, then release of the same call_sid, in turn.
 * Responses on a connection come back in order, so every other response time
 * is an allocate: that is the allocate latency the p99 target is about.
 * `paths` sends the same two bodies elsewhere: the hello round posts them to
 * the plain app's /hello, so the load generator does the same work per request
 * (a fresh call_sid, the typed client's encoding, per-response bookkeeping) in
 * both rounds and only the server differs.
 */
async function alternate(base, client, paths = client.paths) {
  const allocate = [];
  const release = [];
  const statuses = new Map();
  const open = new Set();
  const result = await cannon({
    url: base,
    requests: [
      { method: 'POST', path: paths.allocate, headers: { 'content-type': 'application/json' },
        setupRequest: (request, context) => {
          context.sid = nextSid('bench');
          open.add(context.sid);
          return { ...request, body: client.encode.allocate({ call_sid: context.sid }) };
        } },
      { method: 'POST', path: paths.release, headers: { 'content-type': 'application/json' },
        setupRequest: (request, context) => {
          open.delete(context.sid);
          return { ...request, body: client.encode.release({ call_sid: context.sid, reason: 'bench' }) };
        } },
    ],
    setupClient: (c) => {
      let n = 0;
      c.on('response', (status, _bytes, ms) => {
        (n % 2 === 0 ? allocate : release).push(ms);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        n += 1;
      });
    },
  });
  return { result, open, allocate, release, statuses };
}

async function allocateRelease(base, client) {
  const { result, open, allocate, statuses } = await alternate(base, client);
  // A round that ends between the two requests of a connection leaves these held.
  await Promise.all([...open].map((sid) => client.release({ call_sid: sid })));
  return { rps: result.requests.average, p99: result.latency.p99, allocateP50: percentile(allocate, 0.5), allocateP99: percentile(allocate, 0.99), errors: result.errors + result.non2xx, statuses };
}

async function hello(base, client) {
  const { result, allocate, release } = await alternate(base, client, { allocate: '/hello', release: '/hello' });
  // From every response's own time, like the allocate p99 (autocannon's summary rounds to whole ms).
  const all = allocate.concat(release);
  return { rps: result.requests.average, p50: percentile(all, 0.5), p99: percentile(all, 0.99), errors: result.errors + result.non2xx };
}

/** Allocations with fresh call_sids while every pod is taken: each answer is 503 NO_POD_AVAILABLE. */
async function refusals(base, client) {
  const latencies = [];
  const statuses = new Map();
  const result = await cannon({
    url: base,
    requests: [{ method: 'POST', path: client.paths.allocate, headers: { 'content-type': 'application/json' },
      setupRequest: (request) => ({ ...request, body: client.encode.allocate({ call_sid: nextSid('refused') }) }) }],
    setupClient: (c) => c.on('response', (status, _bytes, ms) => {
      latencies.push(ms);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }),
  });
  return { rps: result.requests.average, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), statuses };
}

async function rawScripts(url) {
  const fixture = await testing.createPoolFixture({ url, prefix: 'benchraw:', pods: Array.from({ length: 400 }, (_, i) => `bench-pod-${i}`), tierConfig: '{"standard":{"type":"exclusive","target":0}}' });
  const deadline = Date.now() + seconds * 1000;
  let operations = 0;
  const worker = async () => {
    while (Date.now() < deadline) {
      const sid = nextSid('raw');
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
  const logDir = mkdtempSync(join(tmpdir(), 'sr-bench-'));
  // The `npm start` stack on free ports, with enough pods that 50 connections never run out.
  const stack = await LocalStack.start({ root, ports: FREE_PORTS, logDir, replicas: pods });
  const helloPort = await testing.freePort();
  const helloApp = spawn(process.execPath, [join(root, 'dist', 'tools', 'bench', 'src', 'hello-app.js')], { env: { ...process.env, HTTP_PORT: String(helloPort) }, stdio: ['ignore', 'ignore', 'inherit'] });
  const helloBase = `http://127.0.0.1:${helloPort}`;
  let against = null;
  try {
    if (profileDir || nodeArgs.length) {
      await stack.stopApp('allocation-api');
      await stack.startApp('allocation-api', { nodeArgs: [...nodeArgs, ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])] });
      await stack.waitReady('allocation-api');
    }
    const api = stack.url('allocation-api');
    const client = new SmartRouterClient(api);
    await testing.waitFor(async () => (await fetch(`${helloBase}/hello`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).catch(() => null))?.status === 200, { timeoutMs: 20000, what: 'hello app' });
    const redis = new Redis(stack.redisUrl);
    await testing.waitFor(async () => (await redis.scard(stack.keys.poolAvailable('standard'))) >= pods - 3, { timeoutMs: 30000, what: `${pods} pods in their pools` });
    await redis.quit();

    // The other build's allocation-api, same environment and Redis, its own port.
    if (againstDist) {
      const port = await testing.freePort();
      const child = spawn(process.execPath, [...againstNodeArgs, join(againstDist, 'apps', 'allocation-api', 'src', 'main.js')], { env: stack.appEnv('allocation-api', port), stdio: ['ignore', 'ignore', 'inherit'] });
      against = { child, base: `http://127.0.0.1:${port}` };
      await testing.waitFor(async () => (await fetch(`${against.base}/ready`).catch(() => null))?.status === 200, { timeoutMs: 30000, what: 'allocation-api of --against' });
    }
    const pidOf = (app) => stack.running.get(app).child.pid;
    const idle = Object.fromEntries(APPS.map((app) => [app, rssMb(pidOf(app))]));
    idle['bench-hello'] = rssMb(helloApp.pid);

    // Warm up both (JIT, connections, script cache), then alternate rounds.
    await cannon({ url: `${helloBase}/hello`, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}', duration: 2 });
    // (allocateRelease releases what a round leaves held, so warm-ups never eat the pools).
    for (const url of [api, ...(against ? [against.base] : [])]) await allocateRelease(url, new SmartRouterClient(url));
    const info = new Redis(stack.redisUrl);
    const redisPid = Number(/process_id:(\d+)/.exec(await info.info('server'))[1]);
    await info.quit();
    const others = APPS.filter((app) => app !== 'allocation-api');
    const helloRounds = [];
    const allocationRounds = [];
    const againstRounds = [];
    for (let round = 0; round < rounds; round += 1) {
      helloRounds.push(await withCpu({ app: helloApp.pid, load: process.pid }, () => hello(helloBase, client)));
      allocationRounds.push(await withCpu({ app: pidOf('allocation-api'), redis: redisPid, load: process.pid, ...Object.fromEntries(others.map((name) => [name, pidOf(name)])) }, () => allocateRelease(api, client)));
      if (against) againstRounds.push(await withCpu({ app: against.child.pid, redis: redisPid, load: process.pid, ...Object.fromEntries(others.map((name) => [name, pidOf(name)])) }, () => allocateRelease(against.base, new SmartRouterClient(against.base))));
    }

    // Refusals: hold every pod, then allocate fresh call_sids (all 503 NO_POD_AVAILABLE).
    const successCpu = median(allocationRounds.map((a) => a.cpuPerRequest.app));
    const held = [];
    for (;;) {
      const sid = nextSid('hold');
      if ((await client.allocate({ call_sid: sid })).status !== 200) break;
      held.push(sid);
    }
    const logBefore = readFileSync(join(logDir, 'allocation-api.log'), 'utf8').split('\n').length;
    const refused = await withCpu({ app: pidOf('allocation-api') }, () => refusals(api, client));
    const refusalLogLines = readFileSync(join(logDir, 'allocation-api.log'), 'utf8').split('\n').length - logBefore;
    await Promise.all(held.map((sid) => client.release({ call_sid: sid })));
    const after = Object.fromEntries(APPS.map((app) => [app, rssMb(pidOf(app))]));
    after['bench-hello'] = rssMb(helloApp.pid);
    const scriptOps = raw ? await rawScripts(stack.redisUrl) : null;
    if (against) after['allocation-api (--against)'] = rssMb(against.child.pid);

    const f0 = (v) => v.toFixed(0);
    const f2 = (v) => v.toFixed(2);
    console.log(`\n${rounds} alternating rounds of ${seconds}s, ${connections} connections, ${pods} pods, node ${process.version}, allocation-api as npm start runs it (LOG_LEVEL info, tracing as shipped)\n`);
    console.log('| round | hello req/s | hello p99 ms | hello CPU ms/req | load generator CPU ms/req (hello) | allocate+release req/s | allocate p50 ms | allocate p99 ms | allocation-api CPU ms/req | redis CPU ms/req | other apps CPU ms/req | load generator CPU ms/req | non-2xx | ratio | p99 ratio |');
    console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (let round = 0; round < rounds; round += 1) {
      const h = helloRounds[round];
      const a = allocationRounds[round];
      const f3 = (v) => v.toFixed(3);
      const otherCpu = others.reduce((sum, name) => sum + a.cpuPerRequest[name], 0);
      console.log(`| ${round + 1} | ${f0(h.rps)} | ${f2(h.p99)} | ${f3(h.cpuPerRequest.app)} | ${f3(h.cpuPerRequest.load)} | ${f0(a.rps)} | ${f2(a.allocateP50)} | ${f2(a.allocateP99)} | ${f3(a.cpuPerRequest.app)} | ${f3(a.cpuPerRequest.redis)} | ${f3(otherCpu)} | ${f3(a.cpuPerRequest.load)} | ${[...a.statuses].filter(([s]) => s !== 200).map(([s, n]) => `${n}x${s}`).join(' ') || 0} | ${f2(a.rps / h.rps)} | ${f2(a.allocateP99 / h.p99)} |`);
    }
    const ratio = median(allocationRounds.map((a, i) => a.rps / helloRounds[i].rps));
    const p99Ratio = median(allocationRounds.map((a, i) => a.allocateP99 / helloRounds[i].p99));
    const successP50 = median(allocationRounds.map((a) => a.allocateP50));
    const successP99 = median(allocationRounds.map((a) => a.allocateP99));
    console.log(`\nthroughput allocate+release / hello (median of rounds): ${f2(ratio)}   target >= 0.70`);
    console.log(`allocate p99 / hello p99 (median of rounds): ${f2(p99Ratio)}   target <= 1.5`);
    console.log(`CPU per request, allocation-api / hello app (median of rounds): ${f2(median(allocationRounds.map((a, i) => a.cpuPerRequest.app / helloRounds[i].cpuPerRequest.app)))}`);
    // On a CPU-bound machine throughput is (cores x 1000 ms) / (CPU ms per request of every process
    // in the loop): the ratio those budgets allow, whatever the machine's noise.
    const helloTotal = median(helloRounds.map((h) => h.cpuPerRequest.app + h.cpuPerRequest.load));
    const allocationTotal = median(allocationRounds.map((a) => Object.values(a.cpuPerRequest).reduce((sum, v) => sum + v, 0)));
    console.log(`CPU budget per request, every process in the loop (median): hello ${helloTotal.toFixed(3)} ms (app + load generator), allocate+release ${allocationTotal.toFixed(3)} ms (allocation-api + redis + other apps + load generator): ratio the CPU allows ${f2(helloTotal / allocationTotal)}`);
    console.log(`503 NO_POD_AVAILABLE (${held.length} calls held, ${[...refused.statuses].map(([s, n]) => `${n}x${s}`).join(' ')}): ${f0(refused.rps)} req/s, p50 ${f2(refused.p50)} ms, p99 ${f2(refused.p99)} ms vs successful allocate p50 ${f2(successP50)} ms, p99 ${f2(successP99)} ms; allocation-api CPU ${refused.cpuPerRequest.app.toFixed(3)} ms per refusal vs ${successCpu.toFixed(3)} ms per allocate-or-release; log lines during it: ${refusalLogLines}`);
    if (against) {
      console.log(`\nallocation-api of this build against the one in ${againstDist}, same run (rounds alternate hello, this, that):\n`);
      console.log('| round | this req/s | that req/s | this allocate p99 ms | that allocate p99 ms | this CPU ms/req | that CPU ms/req | this redis CPU ms/req | that redis CPU ms/req | this ratio to hello | that ratio to hello |');
      console.log('|---|---|---|---|---|---|---|---|---|---|---|');
      for (let round = 0; round < rounds; round += 1) {
        const [a, b, h] = [allocationRounds[round], againstRounds[round], helloRounds[round]];
        const f3 = (v) => v.toFixed(3);
        console.log(`| ${round + 1} | ${f0(a.rps)} | ${f0(b.rps)} | ${f2(a.allocateP99)} | ${f2(b.allocateP99)} | ${f3(a.cpuPerRequest.app)} | ${f3(b.cpuPerRequest.app)} | ${f3(a.cpuPerRequest.redis)} | ${f3(b.cpuPerRequest.redis)} | ${f2(a.rps / h.rps)} | ${f2(b.rps / h.rps)} |`);
      }
      const m = (rows, pick) => median(rows.map(pick));
      console.log(`\nmedians, this / that: throughput ${f2(m(allocationRounds, (a) => a.rps) / m(againstRounds, (a) => a.rps))}, allocation-api CPU per request ${f2(m(allocationRounds, (a) => a.cpuPerRequest.app) / m(againstRounds, (a) => a.cpuPerRequest.app))}, redis CPU per request ${f2(m(allocationRounds, (a) => a.cpuPerRequest.redis) / m(againstRounds, (a) => a.cpuPerRequest.redis))}, allocate p99 ${f2(m(allocationRounds, (a) => a.allocateP99) / m(againstRounds, (a) => a.allocateP99))}`);
    }
    console.log('\n| app | RSS idle MB | RSS after MB |');
    console.log('|---|---|---|');
    for (const app of Object.keys(after)) console.log(`| ${app} | ${idle[app] === undefined ? '-' : f0(idle[app])} | ${f0(after[app])} |`);
    if (scriptOps !== null) console.log(`\nraw scripts on Redis (allocate+release, ${connections} callers): ${f0(scriptOps)} scripts/s`);
  } finally {
    helloApp.kill('SIGTERM');
    if (against) against.child.kill('SIGTERM');
    await stack.stop();
  }
  if (profileDir) console.log(`\nCPU profile of allocation-api in ${profileDir} (summarize: node tools/bench/profile-summary.mjs ${profileDir})`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
