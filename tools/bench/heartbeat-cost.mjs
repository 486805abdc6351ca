// The cost of voice-agent heartbeats (SPEC 11, issue 20), two parts, each with
// a baseline measured in the same run (the machine is noisy: the ratios are the figures).
//
// (a) Redis: the real recordHeartbeat script (LivenessScripts, the real loader,
//     EVALSHA) on a fresh redis-server, 100 pods: half idle (`calls: []`), half
//     holding one call (listed with its allocation_id and advancing counters).
//     Baselines, same server, alternating rounds: a plain `GET` of one key, and
//     the allocate script (allocateCall, 1,000 exclusive standard pods; the
//     releases that free them run outside the measurement). Two readings:
//     Redis's own time per command (INFO commandstats usec_per_call) and
//     redis-server CPU per operation (INFO cpu used_cpu_sys+user: also counts
//     reading the request and writing the reply).
// (b) allocation-api: the stack as `npm start` runs it (allocation-api,
//     pod-watcher, reconciler; 100 simulated pods; the agents' own heartbeats
//     off so the bench controls them, silence thresholds out of reach) receiving `POST /api/v1/heartbeat` for 100 pods x 1
//     every 2 s (50/s, evenly spread, half the pods listing one call), against
//     the same allocation-api idle, and against the plain NestJS 11 + Fastify
//     hello app of `npm run bench` (tools/bench/src/hello-app.ts) receiving the
//     very same bodies at the same rate on `POST /hello`. Process CPU from
//     /proc/PID/stat. Rounds alternate idle, heartbeats, hello.
//
// Usage: node tools/bench/heartbeat-cost.mjs [--part redis|api|both] [--ops 5000] [--rounds 3] [--seconds 8] [--pods 100] [--rate 50]
// (build first: node tools/scripts/build.mjs)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lib, option, require, root } from './bench-env.mjs';

const Redis = require(join(root, 'node_modules', 'ioredis'));
const testing = lib('testing');
const { LivenessScripts } = lib('redis-scripts');
const { LocalStack, FREE_PORTS } = lib('stack');
const { SmartRouterClient } = lib('client');

const ops = option('ops', 5000);
const rounds = option('rounds', 3);
const seconds = option('seconds', 8);
const pods = option('pods', 100);
const rate = option('rate', 50); // heartbeats per second: 100 pods x 1 / 2 s
const CONCURRENCY = 20;
const ALLOCATE_PODS = 1000;

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];
const podNames = (count) => Array.from({ length: count }, (_, i) => `voice-agent-${i}`);

/** CPU time (user + system) a process has used, ms (/proc/PID/stat, 100 ticks/s). */
const cpuMs = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
};

/** redis-server's CPU (used_cpu_sys + used_cpu_user), ms. */
async function redisCpuMs(redis) {
  const info = await redis.info('cpu');
  const value = (field) => Number(new RegExp(`${field}:([\\d.]+)`).exec(info)[1]);
  return (value('used_cpu_sys') + value('used_cpu_user')) * 1000;
}

/** { calls, usec } of one command since the last RESETSTAT. */
async function commandStats(redis, command) {
  const line = (await redis.info('commandstats')).split('\n').find((row) => row.startsWith(`cmdstat_${command}:`));
  if (!line) return { calls: 0, usec: 0 };
  return { calls: Number(/calls=(\d+)/.exec(line)[1]), usec: Number(/usec=(\d+)/.exec(line)[1]) };
}

/** Runs `count` operations with CONCURRENCY callers; `operation(i)` does the i-th. */
async function runOps(count, operation) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next;
      next += 1;
      await operation(index);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

/** Part (a): Redis per heartbeat against GET and allocate, alternating rounds. */
async function redisPart() {
  const server = await testing.RedisServer.start();
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
  try {
    const tiers = '{"standard":{"type":"exclusive","target":0}}';
    const hb = await testing.createPoolFixture({ url: server.url, prefix: 'hb:', pods: podNames(pods), tierConfig: tiers });
    const alloc = await testing.createPoolFixture({ url: server.url, prefix: 'alloc:', pods: podNames(ALLOCATE_PODS), tierConfig: tiers });
    const liveness = new LivenessScripts(hb.redis, hb.keys, 10000);
    // Half the pods hold one call each (a busy fleet heartbeats with its calls' counters).
    const busy = new Map();
    for (let i = 0; i < pods / 2; i += 1) {
      const result = await hb.scripts.allocate({ callSid: `hb-call-${i}`, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false });
      if (!result.ok) throw new Error(`allocate refused: ${result.code}`);
      busy.set(result.allocation.podName, { callSid: `hb-call-${i}`, allocationId: result.allocation.allocationId });
    }
    const names = podNames(pods);
    let frames = 0;
    const heartbeat = async (index) => {
      const pod = names[index % names.length];
      const call = busy.get(pod);
      frames += 1;
      const result = await liveness.recordHeartbeat(pod, call ? [{ ...call, mediaIn: frames, mediaOut: frames }] : []);
      if (!result.ok || result.liveness !== 'live' || result.unknownCalls.length > 0) throw new Error(`heartbeat of ${pod}: ${JSON.stringify(result)}`);
    };
    await hb.redis.set('bench:key', 'x'.repeat(64));
    const get = async () => {
      if ((await hb.redis.get('bench:key')) === null) throw new Error('GET missed');
    };
    let serial = 0;
    const allocateRound = async () => {
      // Batches of ALLOCATE_PODS allocations (measured), each followed by its releases (not measured).
      let usec = 0;
      let cpu = 0;
      let done = 0;
      while (done < ops) {
        const batch = Math.min(ALLOCATE_PODS, ops - done);
        const sids = [];
        await admin.config('RESETSTAT');
        const before = await redisCpuMs(admin);
        await runOps(batch, async () => {
          serial += 1;
          const sid = `alloc-${serial}`;
          const result = await alloc.scripts.allocate({ callSid: sid, merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false });
          if (!result.ok) throw new Error(`allocate refused: ${result.code}`);
          sids.push(sid);
        });
        cpu += (await redisCpuMs(admin)) - before;
        const stats = await commandStats(admin, 'evalsha');
        if (stats.calls !== batch) throw new Error(`${stats.calls} EVALSHA for ${batch} allocations`);
        usec += stats.usec;
        await runOps(sids.length, (i) => alloc.scripts.release(sids[i], 'bench'));
        done += batch;
      }
      return { usecPerOp: usec / ops, cpuUsPerOp: (cpu * 1000) / ops };
    };
    const measure = async (command, operation) => {
      await admin.config('RESETSTAT');
      const before = await redisCpuMs(admin);
      await runOps(ops, operation);
      const cpu = (await redisCpuMs(admin)) - before;
      const stats = await commandStats(admin, command);
      if (stats.calls !== ops) throw new Error(`${stats.calls} ${command} for ${ops} operations`);
      return { usecPerOp: stats.usec / ops, cpuUsPerOp: (cpu * 1000) / ops };
    };
    const kinds = {
      get: () => measure('get', get),
      heartbeat: () => measure('evalsha', heartbeat),
      allocate: allocateRound,
    };
    // Load the scripts (the first EVALSHA of each misses the cache), then warm up (JIT, connections).
    await heartbeat(0);
    const first = await alloc.scripts.allocate({ callSid: 'alloc-first', merchantId: '', provider: 'twilio', metadata: '', refuseTombstoned: false });
    if (first.ok) await alloc.scripts.release('alloc-first', 'bench');
    for (const run of Object.values(kinds)) await run();
    const results = { get: [], heartbeat: [], allocate: [] };
    for (let round = 0; round < rounds; round += 1) {
      for (const [kind, run] of Object.entries(kinds)) results[kind].push(await run());
    }
    await hb.close();
    await alloc.close();
    return results;
  } finally {
    await admin.quit();
    await server.stop();
  }
}

/** Part (b): allocation-api CPU at `rate` heartbeats/s against idle and against the hello app. */
async function apiPart() {
  const logDir = mkdtempSync(join(tmpdir(), 'sr-bench-heartbeat-'));
  const stack = await LocalStack.start({
    root, ports: FREE_PORTS, logDir, replicas: pods, apps: ['allocation-api', 'pod-watcher', 'reconciler'],
    simTimings: { readyDelayMs: 200, terminationDelayMs: 200, recreateDelayMs: 50 },
    // The agents' own heartbeats off (the bench sends them); silence thresholds out of reach, so
    // the idle rounds declare no pod suspect or dead (the reconciler's liveness job is not measured).
    env: { HEARTBEAT_INTERVAL_MS: '0', HEARTBEAT_SUSPECT_MS: '3600000', HEARTBEAT_DEAD_MS: '3600001' },
  });
  const helloPort = await testing.freePort();
  const helloApp = spawn(process.execPath, [join(root, 'dist', 'tools', 'bench', 'src', 'hello-app.js')], { env: { ...process.env, HTTP_PORT: String(helloPort) }, stdio: ['ignore', 'ignore', 'inherit'] });
  const helloBase = `http://127.0.0.1:${helloPort}`;
  try {
    const api = stack.url('allocation-api');
    const client = new SmartRouterClient(api);
    const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
    await testing.waitFor(async () => (await redis.scard(stack.keys.pods())) === pods, { timeoutMs: 60000, what: `${pods} pods known` });
    const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))[1]);
    await redis.quit();
    await testing.waitFor(async () => (await fetch(`${helloBase}/hello`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).catch(() => null))?.status === 200, { timeoutMs: 20000, what: 'hello app' });

    // Half the pods hold one call; each heartbeat lists its pod's calls with advancing counters.
    const held = new Map();
    for (let i = 0; i < pods / 2; i += 1) {
      const answer = await client.allocate({ call_sid: `hb-bench-${i}` });
      if (answer.status !== 200) throw new Error(`allocate answered ${answer.status}`);
      held.set(answer.body.pod_name, { call_sid: `hb-bench-${i}`, allocation_id: answer.body.allocation_id });
    }
    const names = podNames(pods);
    let frames = 0;
    const body = (index) => {
      const pod = names[index % names.length];
      const call = held.get(pod);
      frames += 50; // 25 frames/s each way for 2 s
      return JSON.stringify({ pod_name: pod, calls: call ? [{ ...call, media_in: frames, media_out: frames }] : [] });
    };

    /** Sends `rate` POSTs/s (evenly spread) to `url` for `duration` s; returns { sent, failed }. */
    const drive = async (url, duration) => {
      const count = Math.round(rate * duration);
      const started = performance.now();
      const pending = [];
      let failed = 0;
      for (let index = 0; index < count; index += 1) {
        const due = started + (index * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        pending.push(fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(index) })
          .then(async (response) => {
            await response.arrayBuffer();
            if (response.status !== 200) failed += 1;
          }, () => void (failed += 1)));
      }
      await Promise.all(pending);
      return { sent: count, failed, elapsed: (performance.now() - started) / 1000 };
    };
    const apiPid = stack.running.get('allocation-api').child.pid;
    const watched = { api: apiPid, hello: helloApp.pid, redis: redisPid };
    const round = async (work) => {
      const before = Object.fromEntries(Object.entries(watched).map(([name, pid]) => [name, cpuMs(pid)]));
      const started = performance.now();
      const load = await work();
      const elapsed = (performance.now() - started) / 1000;
      const percent = Object.fromEntries(Object.entries(watched).map(([name, pid]) => [name, ((cpuMs(pid) - before[name]) / (elapsed * 1000)) * 100]));
      return { percent, elapsed, load };
    };
    const idle = () => round(async () => {
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      return { sent: 0, failed: 0 };
    });
    const heartbeats = () => round(() => drive(`${api}${client.paths.heartbeat}`, seconds));
    const hello = () => round(() => drive(`${helloBase}/hello`, seconds));
    // Warm up both (JIT, connections, script cache).
    await drive(`${api}${client.paths.heartbeat}`, 3);
    await drive(`${helloBase}/hello`, 3);
    const results = { idle: [], heartbeats: [], hello: [] };
    for (let r = 0; r < rounds; r += 1) {
      results.idle.push(await idle());
      results.heartbeats.push(await heartbeats());
      results.hello.push(await hello());
    }
    const failed = results.heartbeats.reduce((sum, row) => sum + row.load.failed, 0) + results.hello.reduce((sum, row) => sum + row.load.failed, 0);
    if (failed > 0) throw new Error(`${failed} heartbeat or hello requests failed`);
    return results;
  } finally {
    helloApp.kill('SIGTERM');
    await stack.stop();
  }
}

const f1 = (value) => value.toFixed(1);
const f2 = (value) => value.toFixed(2);
const f3 = (value) => value.toFixed(3);

const partIndex = process.argv.indexOf('--part');
const part = partIndex >= 0 ? process.argv[partIndex + 1] : 'both';
if (part !== 'api') {
const redisResults = await redisPart();
const m = (kind, field) => median(redisResults[kind].map((row) => row[field]));
console.log(`(a) Redis per operation, ${ops} operations per round (${CONCURRENCY} callers), median of ${rounds} alternating rounds; heartbeats over ${pods} pods, half listing one call\n`);
console.log('| operation | usec per call, commandstats (rounds) | redis-server CPU per op, µs (rounds) | heartbeat / this (commandstats) | heartbeat / this (redis-server CPU) |');
console.log('|---|---|---|---|---|');
for (const [kind, label] of [['heartbeat', 'recordHeartbeat script (EVALSHA)'], ['get', 'plain GET of one key'], ['allocate', 'allocate script (allocateCall, EVALSHA)']]) {
  const rows = redisResults[kind];
  console.log(`| ${label} | ${f2(m(kind, 'usecPerOp'))} (${rows.map((row) => f2(row.usecPerOp)).join(', ')}) | ${f1(m(kind, 'cpuUsPerOp'))} (${rows.map((row) => f1(row.cpuUsPerOp)).join(', ')}) | **${f2(m('heartbeat', 'usecPerOp') / m(kind, 'usecPerOp'))}** | **${f2(m('heartbeat', 'cpuUsPerOp') / m(kind, 'cpuUsPerOp'))}** |`);
}

}

if (part !== 'redis') {
const apiResults = await apiPart();
console.log(`\n(b) process CPU, % of one core: ${pods} pods x 1 heartbeat / ${f1(pods / rate)} s = ${rate}/s for ${seconds} s per round, ${rounds} alternating rounds (idle, heartbeats to allocation-api, the same bodies to the hello app)\n`);
console.log('| round | allocation-api idle | allocation-api at heartbeats | redis-server idle | redis-server at heartbeats | hello app idle | hello app at the same rate | heartbeats sent/s |');
console.log('|---|---|---|---|---|---|---|---|');
for (let r = 0; r < rounds; r += 1) {
  const [i, h, w] = [apiResults.idle[r], apiResults.heartbeats[r], apiResults.hello[r]];
  console.log(`| ${r + 1} | ${f2(i.percent.api)} | ${f2(h.percent.api)} | ${f2(i.percent.redis)} | ${f2(h.percent.redis)} | ${f2(i.percent.hello)} | ${f2(w.percent.hello)} | ${f1(h.load.sent / h.load.elapsed)} |`);
}
const pm = (kind, name) => median(apiResults[kind].map((row) => row.percent[name]));
const apiIdle = pm('idle', 'api');
const apiLoad = pm('heartbeats', 'api');
const helloIdle = pm('idle', 'hello');
const helloLoad = pm('hello', 'hello');
const perRequest = (load, idleValue) => ((load - idleValue) / 100) * 1000 / rate; // ms CPU per request above idle
// /proc counts 10 ms ticks: an idle process may show none in a round (ratio then stated as a bound).
const tick = (10 / (seconds * 1000)) * 100;
const idleRatio = apiIdle > 0 ? f2(apiLoad / apiIdle) : `> ${f2(apiLoad / tick)} (idle under one 10 ms tick per round)`;
console.log(`\nmedians: allocation-api ${f2(apiLoad)} % of one core at ${rate} heartbeats/s vs ${f2(apiIdle)} % idle: ratio to idle **${idleRatio}**`);
console.log(`allocation-api at heartbeats / hello app at the same rate: **${f2(apiLoad / helloLoad)}** (hello ${f2(helloLoad)} %, idle ${f2(helloIdle)} %)`);
console.log(`CPU per request above idle: allocation-api ${f3(perRequest(apiLoad, apiIdle))} ms per heartbeat, hello ${f3(perRequest(helloLoad, helloIdle))} ms per POST: ratio **${f2(perRequest(apiLoad, apiIdle) / perRequest(helloLoad, helloIdle))}**`);
console.log(`redis-server: ${f2(pm('heartbeats', 'redis'))} % at heartbeats vs ${f2(pm('idle', 'redis'))} % idle (${f3(perRequest(pm('heartbeats', 'redis'), pm('idle', 'redis')))} ms per heartbeat through the route)`);
}
