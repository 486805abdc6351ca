// Benchmark (not a test) of the pod pipeline: Kubernetes -> pod-watcher ->
// stream:pods -> reconciler -> pools, on the built apps (dist/) against a
// private redis-server and the simulated Kubernetes API (in this process).
//
// Usage: node tools/bench/pipeline.mjs [--part all|reconcile|latency] [--pods 10000]
//                                      [--samples 200] [--latency-pods 50]
//   (build first: node tools/scripts/build.mjs)
//
// Part "reconcile" (--pods simulated pods, default 10,000; TIER_CONFIG standard 90% / basic shared 10%):
//   - wall time from starting reconciler + pod-watcher until every pod is in its pool's available set
//   - startup full reconcile (duration_ms of `reconcile:last`) and a steady-state one forced through BullMQ
//   - initial upsert events: watcher publish rate, and time until the group has read and acked them all
//   - event-pipeline throughput: flip Ready of every pod in the sim (false, then true) and time until
//     the watcher has published, the reconciler has applied (entries-read, pending 0) and the pools agree
//   - baselines in the same run and Redis: pipelined XADD, XREADGROUP+XACK, HSET of the same counts,
//     and the upsertPod script called sequentially once per pod (the reconciler's per-pod floor)
//   The reconciler runs with JOB_INTERVAL_SCALE=100 so scheduled jobs stay out of the timed phases.
// Part "latency" (the local stack with --latency-pods pods, normal job intervals):
//   - ready-to-allocatable: set a pod not-ready, wait until it left its pool, then set it ready and
//     time from the sim flipping Ready=True until the pod is in its pool's available set (keyspace
//     notifications, with a 2 ms poll as fallback); p50/p99 over --samples samples (target p99 < 100 ms).
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'dist', 'package.json'));
const Redis = require(join(root, 'node_modules', 'ioredis'));
const { Queue } = require(join(root, 'node_modules', 'bullmq'));
const lib = (name) => require(join(root, 'dist', 'node_modules', '@smart-router', name));
const testing = lib('testing');
const { SimCluster } = lib('sim');
const { LocalStack } = lib('stack');
const { POD_STREAM_GROUP, RECONCILER_QUEUE, JOBS } = lib('events');
const { RedisKeys } = lib('redis-keys');
const { PoolScripts } = lib('redis-scripts');
const { toTierDocument } = lib('allocation');
const { parseTierConfig, DEFAULT_CHAIN } = lib('config');

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  const { readFileSync } = await import('node:fs');
  const header = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
  console.log(header.slice(0, header.findIndex((line) => !line.startsWith('//'))).map((line) => line.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? args[index + 1] : fallback;
};
const part = option('part', 'all');
const podCount = Number(option('pods', 10000));
const samples = Number(option('samples', 200));
const latencyPods = Number(option('latency-pods', 50));
const PREFIX = 'voice:';
const keys = new RedisKeys(PREFIX);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.now();
const fmt = (ms) => (ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);
const rate = (n, ms) => `${Math.round(n / (ms / 1000)).toLocaleString('en-US')}/s`;
const pct = (values, q) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] : NaN;
};
const toMap = (flat) => {
  const map = new Map();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), flat[i + 1]);
  return map;
};
const cleanups = [];
async function cleanup() {
  while (cleanups.length) await cleanups.pop()().catch(() => undefined);
}

/** An app from dist/ as a child process, logging to a file; returns a stop function. */
function startApp(app, env, logDir) {
  const log = createWriteStream(join(logDir, `${app}.log`), { flags: 'a' });
  const child = spawn(process.execPath, [join(root, 'dist', 'apps', app, 'src', 'main.js')], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(timer);
    }
    log.end();
  };
  cleanups.push(stop);
  return { child, stop, exited };
}

/** Stream and consumer-group counters of stream:pods (0s before the stream exists). */
async function streamState(redis) {
  const state = { added: 0, read: 0, pending: 0, lag: 0, group: false };
  try {
    const info = toMap(await redis.xinfo('STREAM', keys.podStream()));
    state.added = Number(info.get('entries-added') ?? 0);
    for (const group of await redis.xinfo('GROUPS', keys.podStream())) {
      const g = toMap(group);
      if (g.get('name') === POD_STREAM_GROUP) {
        state.group = true;
        state.read = Number(g.get('entries-read') ?? 0);
        state.pending = Number(g.get('pending') ?? 0);
        state.lag = g.get('lag') === null ? NaN : Number(g.get('lag'));
      }
    }
  } catch {
    // no stream yet
  }
  return state;
}

// ---------------------------------------------------------------- part A --

function tierConfigFor(pods) {
  const standard = Math.ceil(pods * 0.9);
  return JSON.stringify({ standard: { type: 'exclusive', target: standard }, basic: { type: 'shared', target: pods - standard, max_concurrent: 3 } });
}

async function poolCounts(redis) {
  const [[, standard], [, basic]] = await redis.multi().scard(keys.poolAvailable('standard')).zcard(keys.poolAvailable('basic')).exec();
  return Number(standard) + Number(basic);
}

/** Every full reconcile seen in `reconcile:last` while tracking, by its `at`. */
const reconciles = new Map();

/** Polls until every named condition has held once; returns the first time each did. */
async function track(redis, conditions, { timeoutMs = 600000, intervalMs = 10, started = now() } = {}) {
  const at = {};
  for (;;) {
    const sample = { ...(await streamState(redis)), available: await poolCounts(redis) };
    const last = await redis.hgetall(keys.lastReconcile());
    if (last.at && !reconciles.has(last.at)) reconciles.set(last.at, { ...last, seenAt: now() - started });
    const t = now();
    for (const [name, condition] of Object.entries(conditions)) if (at[name] === undefined && condition(sample)) at[name] = t - started;
    if (Object.keys(conditions).every((name) => at[name] !== undefined)) return { at, sample };
    if (t - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms; reached ${JSON.stringify(at)}; last ${JSON.stringify(sample)}`);
    await sleep(intervalMs);
  }
}

async function baselines(url, sampleFields, n) {
  const redis = new Redis(url);
  const stream = 'baseline:stream';
  const result = {};
  // Pipelined XADD of n entries shaped like the watcher's.
  let t = now();
  for (let i = 0; i < n; i += 500) {
    const pipe = redis.pipeline();
    for (let j = i; j < Math.min(n, i + 500); j += 1) pipe.xadd(stream, 'MAXLEN', '~', 100000, '*', ...sampleFields);
    await pipe.exec();
  }
  result.xadd = now() - t;
  // Consumer group: XREADGROUP COUNT 100, then the batch's XACKs in one pipeline.
  await redis.xgroup('CREATE', stream, 'g', '0');
  t = now();
  let consumed = 0;
  while (consumed < n) {
    const reply = await redis.xreadgroup('GROUP', 'g', 'c', 'COUNT', 100, 'STREAMS', stream, '>');
    if (!reply) break;
    const pipe = redis.pipeline();
    for (const [id] of reply[0][1]) pipe.xack(stream, 'g', id);
    await pipe.exec();
    consumed += reply[0][1].length;
  }
  result.consume = now() - t;
  // Sequential XADD, one round trip each (how the watcher publishes).
  t = now();
  for (let i = 0; i < n; i += 1) await redis.xadd('baseline:seq', 'MAXLEN', '~', 100000, '*', ...sampleFields);
  result.xaddSequential = now() - t;
  // Pipelined HSET of podCount pod hashes.
  t = now();
  for (let i = 0; i < podCount; i += 500) {
    const pipe = redis.pipeline();
    for (let j = i; j < Math.min(podCount, i + 500); j += 1) {
      pipe.hset(`baseline:pod:voice-agent-${j}`, { status: 'available', uid: randomUUID(), ready: '1', terminating: '0', source_pool: 'standard', allocated_call_sid: '' });
    }
    await pipe.exec();
  }
  result.hset = now() - t;
  // The upsertPod script once per pod, sequentially, into an empty state (what a full reconcile does).
  const bkeys = new RedisKeys('baseline:');
  const tiers = parseTierConfig(tierConfigFor(podCount));
  const scripts = new PoolScripts(redis, bkeys, { callTtlSeconds: 3600, tombstoneTtlSeconds: 60, streamMaxLen: 100000 });
  await redis.set(bkeys.tierConfig(), JSON.stringify(toTierDocument(tiers, 'standard', DEFAULT_CHAIN)));
  const names = Array.from({ length: podCount }, (_, i) => `voice-agent-${i}`);
  const upsertAll = async () => {
    const started = now();
    for (const name of names) {
      await scripts.upsertPod({ name, uid: `uid-${name}`, ready: true, terminating: false, metadata: { labels: { app: 'voice-agent' }, resourceVersion: '1' }, pinnedTier: '', term: null });
    }
    return now() - started;
  };
  result.upsertEmpty = await upsertAll();
  result.upsertSteady = await upsertAll();
  await redis.quit();
  return result;
}

async function partReconcile() {
  const dir = mkdtempSync(join(tmpdir(), 'sr-pipeline-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const server = await testing.RedisServer.start();
  cleanups.push(() => server.dispose());
  const redis = new Redis(server.url);
  cleanups.push(() => redis.quit());

  console.log(`\n# Part A: ${podCount.toLocaleString('en-US')} simulated pods`);
  let t = now();
  const sim = await SimCluster.start({
    replicas: podCount, kubeconfigPath: join(dir, 'kubeconfig'), historyLimit: podCount * 5,
    timings: { readyDelayMs: 5, terminationDelayMs: 50, recreateDelayMs: 10 },
  });
  cleanups.push(() => sim.stop());
  await testing.waitFor(() => sim.state.getStatefulSet(sim.statefulSetName).status.readyReplicas === podCount, { timeoutMs: 120000, intervalMs: 50, what: 'sim pods ready' });
  console.log(`sim: ${podCount} pods Ready in ${fmt(now() - t)}`);
  let simEvents = 0;
  sim.state.on('pod', () => void (simEvents += 1));

  const env = (app, port) => ({
    REDIS_URL: server.url, KUBECONFIG: join(dir, 'kubeconfig'), HTTP_PORT: String(port), HOST: '127.0.0.1',
    NAMESPACE: 'voice-system', POD_LABEL_SELECTOR: 'app=voice-agent', TIER_CONFIG: tierConfigFor(podCount),
    POD_IDENTITY: `bench-${app}`, LOG_LEVEL: 'warn', JOB_INTERVAL_SCALE: '100',
  });
  const reconcilerPort = await testing.freePort();
  const watcherPort = await testing.freePort();
  const started = now();
  const startedWall = Date.now();
  const reconciler = startApp('reconciler', env('reconciler', reconcilerPort), dir);
  const watcher = startApp('pod-watcher', env('pod-watcher', watcherPort), dir);
  for (const app of [reconciler, watcher]) app.exited.then((code) => code !== 0 && code !== null && console.error(`an app exited with ${code}; logs in ${dir}`));

  // 1. Cold start: empty Redis, every pod Ready in Kubernetes.
  const boot = await track(redis, {
    allInPools: (s) => s.available === podCount,
    published: (s) => s.added >= podCount,
    applied: (s) => s.group && s.read >= podCount && s.pending === 0,
  }, { started });
  const first = await redis.xrange(keys.podStream(), '-', '+', 'COUNT', 1);
  const last = await redis.xrevrange(keys.podStream(), '+', '-', 'COUNT', 1);
  const firstMs = Number(first[0][0].split('-')[0]) - startedWall;
  const lastMs = Number(last[0][0].split('-')[0]) - startedWall;
  const startup = [...reconciles.values()].find((r) => r.reason === 'startup');
  if (!startup) throw new Error(`startup reconcile not observed: ${JSON.stringify([...reconciles.values()])}`);
  const startupMs = Number(startup.duration_ms);
  const startupBegan = Number(startup.at) - startupMs - startedWall;
  const startupToPools = boot.at.allInPools - startupBegan;
  const sampleFields = last[0][1];
  await testing.waitFor(async () => (await fetch(`http://127.0.0.1:${reconcilerPort}/ready`).catch(() => null))?.status === 200, { timeoutMs: 60000, what: 'reconciler ready' });

  // 2. Steady-state full reconcile (same pods, all already in Redis), through the job queue,
  //    once the jobs the schedulers fire at start (full reconcile, zombie sweep, ...) are done.
  const queue = new Queue(RECONCILER_QUEUE, { connection: { host: '127.0.0.1', port: server.port }, prefix: keys.bullPrefix() });
  const idle = async () => {
    const counts = await queue.getJobCounts('active', 'waiting', 'prioritized');
    return counts.active + counts.waiting + counts.prioritized === 0;
  };
  await testing.waitFor(idle, { timeoutMs: 300000, intervalMs: 50, what: 'start-up jobs to finish' });
  const forced = await queue.add(JOBS.fullReconcile.name, {}, { removeOnComplete: 100, removeOnFail: 100 });
  const steady = await testing.waitFor(async () => (await queue.getJob(forced.id))?.returnvalue, { timeoutMs: 300000, intervalMs: 20, what: 'forced full reconcile' });
  const steadyMs = Number(steady.durationMs);
  await queue.close();

  // 3. Event pipeline: flip Ready of every pod, twice.
  const flips = [];
  for (const ready of [false, true]) {
    const before = await streamState(redis);
    const eventsBefore = simEvents;
    const flipStarted = now();
    for (let i = 0; i < podCount; i += 1) sim.setReady(`${sim.statefulSetName}-${i}`, ready);
    const flipLoop = now() - flipStarted;
    const expected = simEvents - eventsBefore;
    const result = await track(redis, {
      published: (s) => s.added - before.added >= expected,
      applied: (s) => s.read - before.read >= expected && s.pending === 0,
      pools: (s) => s.available === (ready ? podCount : 0),
    }, { started: flipStarted });
    flips.push({ ready, expected, flipLoop, ...result.at });
  }

  await reconciler.stop();
  await watcher.stop();

  // 4. Baselines on the same redis-server, apps stopped.
  const n = flips[0].expected;
  const base = await baselines(server.url, sampleFields, n);

  const pipelineRate = Math.min(...flips.map((f) => f.expected / (f.applied / 1000)));
  const rawRate = n / ((base.xadd + base.consume) / 1000);
  const rows = [
    ['cold start: reconciler + pod-watcher spawned until all pods in pools (wall)', fmt(boot.at.allInPools), `${rate(podCount, boot.at.allInPools)} pods`],
    [`startup full reconcile (reconcile:last duration_ms; began ${fmt(startupBegan)} after spawn)`, fmt(startupMs), `${rate(podCount, startupMs)} pods`],
    ['startup full reconcile began -> all pods in pools', fmt(startupToPools), ''],
    ['steady-state full reconcile (forced via BullMQ; pods unchanged)', fmt(steadyMs), `${rate(podCount, steadyMs)} pods`],
    [`initial ${podCount} upsert events: watcher published (stream ids ${fmt(firstMs)}..${fmt(lastMs)} after spawn)`, fmt(lastMs - firstMs), `${rate(podCount, Math.max(1, lastMs - firstMs))} events`],
    ['initial upsert events: all read + acked by the group (since spawn)', fmt(boot.at.applied), ''],
  ];
  for (const f of flips) {
    const label = f.ready ? 'not-ready -> ready' : 'ready -> not-ready';
    rows.push([`flip ${label} of all pods (${f.expected} watch events; sim loop ${fmt(f.flipLoop)}): watcher published`, fmt(f.published), `${rate(f.expected, f.published)} events`]);
    rows.push([`  same flip: reconciler applied + acked all (end to end)`, fmt(f.applied), `${rate(f.expected, f.applied)} events`]);
    rows.push([`  same flip: pools reflect it (${f.ready ? podCount : 0} available)`, fmt(f.pools), `${rate(podCount, f.pools)} pods`]);
  }
  rows.push([`baseline: XADD ${n} entries, pipelined (500/batch)`, fmt(base.xadd), `${rate(n, base.xadd)} entries`]);
  rows.push([`baseline: XADD ${n} entries, sequential (1 round trip each, as the watcher)`, fmt(base.xaddSequential), `${rate(n, base.xaddSequential)} entries`]);
  rows.push([`baseline: XREADGROUP COUNT 100 + pipelined XACK of ${n}`, fmt(base.consume), `${rate(n, base.consume)} entries`]);
  rows.push([`baseline: HSET ${podCount} pod hashes, pipelined`, fmt(base.hset), `${rate(podCount, base.hset)} pods`]);
  rows.push([`baseline: upsertPod script x ${podCount}, sequential, empty state`, fmt(base.upsertEmpty), `${rate(podCount, base.upsertEmpty)} pods`]);
  rows.push([`baseline: upsertPod script x ${podCount}, sequential, unchanged pods`, fmt(base.upsertSteady), `${rate(podCount, base.upsertSteady)} pods`]);
  console.log('\n| measure | time | rate |');
  console.log('|---|---|---|');
  for (const [what, time, r] of rows) console.log(`| ${what} | ${time} | ${r} |`);
  console.log('\nratios:');
  console.log(`  event pipeline (slowest flip, end to end) / raw pipelined XADD then XREADGROUP+XACK: ${(pipelineRate / rawRate).toFixed(3)} (${Math.round(pipelineRate)} vs ${Math.round(rawRate)} events/s)`);
  console.log(`  event pipeline / raw sequential XADD (one round trip per event): ${(pipelineRate / (n / (base.xaddSequential / 1000))).toFixed(2)}`);
  console.log(`  steady full reconcile / pipelined HSET of ${podCount} hashes: ${(steadyMs / base.hset).toFixed(1)}x the time`);
  console.log(`  steady full reconcile / sequential upsertPod script floor (unchanged pods): ${(steadyMs / base.upsertSteady).toFixed(2)}x the time`);
  console.log(`  startup full reconcile / sequential upsertPod script floor (empty state): ${(startupMs / base.upsertEmpty).toFixed(2)}x the time`);
  await cleanup();
}

// ---------------------------------------------------------------- part B --

async function partLatency() {
  const logDir = mkdtempSync(join(tmpdir(), 'sr-latency-'));
  cleanups.push(async () => rmSync(logDir, { recursive: true, force: true }));
  console.log(`\n# Part B: ready-to-allocatable latency, local stack with ${latencyPods} pods, ${samples} samples`);
  const zero = { gateway: 0, sim: 0, voiceAgents: 0, apps: { 'allocation-api': 0, webhooks: 0, admin: 0, 'pod-watcher': 0, reconciler: 0 } };
  const stack = await LocalStack.start({
    root, ports: zero, logDir, replicas: latencyPods, apps: ['reconciler', 'pod-watcher'],
    simTimings: { readyDelayMs: 20, terminationDelayMs: 50, recreateDelayMs: 10 }, env: { LOG_LEVEL: 'warn' },
  });
  cleanups.push(() => stack.stop());
  const redis = new Redis(stack.redisUrl);
  const subscriber = new Redis(stack.redisUrl);
  cleanups.push(() => redis.quit());
  cleanups.push(() => subscriber.quit());
  const poolType = new Map();
  const inPool = async (pod) => {
    const tier = await redis.get(keys.podTier(pod));
    if (!tier) return false;
    const key = keys.poolAvailable(tier);
    if (!poolType.has(key)) poolType.set(key, await redis.type(key));
    return poolType.get(key) === 'zset' ? (await redis.zscore(key, pod)) !== null : (await redis.sismember(key, pod)) === 1;
  };
  const names = Array.from({ length: latencyPods }, (_, i) => `voice-agent-${i}`);
  await testing.waitFor(async () => (await Promise.all(names.map(inPool))).every(Boolean), { timeoutMs: 60000, intervalMs: 50, what: 'all pods in pools' });

  await redis.config('SET', 'notify-keyspace-events', 'Ksz');
  let waiter = null;
  subscriber.on('pmessage', () => {
    if (!waiter) return;
    const at = now();
    const current = waiter;
    void inPool(current.pod).then((yes) => yes && current.resolve(at));
  });
  await subscriber.psubscribe(`__keyspace@0__:${PREFIX}pool:*`);

  const total = [];
  const published = [];
  const applied = [];
  for (let i = 0; i < samples; i += 1) {
    const pod = names[(i * 7) % latencyPods];
    stack.sim.setReady(pod, false);
    await testing.waitFor(async () => !(await inPool(pod)), { timeoutMs: 10000, intervalMs: 2, what: `${pod} out of its pool` });
    await sleep(5 + Math.random() * 20);
    let resolve;
    const reached = new Promise((r) => (resolve = r));
    waiter = { pod, resolve };
    const poll = async () => {
      while (waiter?.pod === pod) {
        const at = now();
        if (await inPool(pod)) return resolve(at);
        await sleep(2);
      }
    };
    const flippedWall = Date.now();
    const flipped = now();
    stack.sim.setReady(pod, true);
    void poll();
    const timeout = setTimeout(() => resolve(NaN), 10000);
    const at = await reached;
    clearTimeout(timeout);
    waiter = null;
    if (Number.isNaN(at)) throw new Error(`${pod} did not come back within 10 s`);
    total.push(at - flipped);
    // Split at the watcher's XADD (stream id = Redis clock, ms; same machine clock).
    const entries = await redis.xrevrange(keys.podStream(), '+', '-', 'COUNT', 10);
    const entry = entries.find(([, fields]) => { const f = toMap(fields); return f.get('name') === pod && f.get('ready') === '1'; });
    if (entry) {
      const idMs = Number(entry[0].split('-')[0]);
      published.push(idMs - flippedWall);
      applied.push(at - flipped - (idMs - flippedWall));
    }
  }
  const f = (v) => v.toFixed(1);
  console.log('\n| ready-to-allocatable | p50 ms | p90 ms | p99 ms | max ms | samples |');
  console.log('|---|---|---|---|---|---|');
  console.log(`| sim Ready=True -> pod in available set | ${f(pct(total, 0.5))} | ${f(pct(total, 0.9))} | ${f(pct(total, 0.99))} | ${f(Math.max(...total))} | ${total.length} |`);
  console.log(`| of which: sim -> watcher XADD (ms clock) | ${f(pct(published, 0.5))} | ${f(pct(published, 0.9))} | ${f(pct(published, 0.99))} | ${f(Math.max(...published))} | ${published.length} |`);
  console.log(`| of which: XADD -> reconciler applied (ms clock) | ${f(pct(applied, 0.5))} | ${f(pct(applied, 0.9))} | ${f(pct(applied, 0.99))} | ${f(Math.max(...applied))} | ${applied.length} |`);
  console.log(`\np99 ${f(pct(total, 0.99))} ms: target p99 < 100 ms ${pct(total, 0.99) < 100 ? 'met' : 'NOT met'}`);
  await cleanup();
}

async function main() {
  console.log(`pipeline benchmark: node ${process.version}, part=${part}`);
  if (part === 'all' || part === 'reconcile') await partReconcile();
  if (part === 'all' || part === 'latency') await partLatency();
}

for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => void cleanup().finally(() => process.exit(130)));
main().then(() => process.exit(0), async (error) => {
  console.error(error);
  await cleanup();
  process.exit(1);
});
