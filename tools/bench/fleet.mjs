// Benchmark (not a test) of the fleet autoscaler's time to capacity (SPEC 9.1):
// the built apps (dist/) on a private redis-server and the simulated cluster
// whose new pods become Ready after --ready-delay-ms (2000). 2 pods, all free
// (the autoscaler's buffer is 2); a demand step of 4 calls at once with
// wait_ms 10000: 2 are served at once, 2 wait until the autoscaler's new pods
// are allocatable. Measured: demand step -> last waiting call served. Baseline
// in the same run: `kubectl scale` by hand (a PATCH of the scale subresource)
// -> the first new pod allocatable, i.e. the sim's readiness delay plus the
// watcher pipeline, with no autoscaler in the loop. Alternating rounds.
//
// Usage: node tools/bench/fleet.mjs [--rounds 3] [--ready-delay-ms 2000]
//   (build first: node tools/scripts/build.mjs)
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { option, require, root } from './bench-env.mjs';

const { LocalStack, FREE_PORTS } = require(join(root, 'dist', 'tools', 'stack', 'src', 'stack.js'));
const rounds = option('rounds', 3);
const readyDelayMs = option('ready-delay-ms', 2000);

const stack = await LocalStack.start({
  root,
  ports: FREE_PORTS,
  logDir: mkdtempSync(join(tmpdir(), 'sr-bench-fleet-')),
  replicas: 2,
  apps: ['allocation-api', 'admin', 'pod-watcher', 'reconciler'],
  simTimings: { readyDelayMs },
  env: {
    TIER_CONFIG: JSON.stringify({ standard: { type: 'exclusive', target: 1 } }),
    AUTOSCALER_MIN_REPLICAS: '2', AUTOSCALER_MAX_REPLICAS: '10', AUTOSCALER_BUFFER: '2', AUTOSCALER_SCALE_DOWN_DELAY_SECONDS: '1',
    LOG_LEVEL: 'warn',
  },
});

const call = async (base, method, path, body) => {
  const response = await fetch(base + path, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
};
const api = (path, body) => call(stack.url('allocation-api'), 'POST', path, body);
const admin = (method, path, body) => call(stack.url('admin'), method, path, body);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const replicas = () => stack.sim.state.getStatefulSet(stack.sim.statefulSetName).spec.replicas;
const freePods = async () => Object.values((await admin('GET', '/api/v1/status')).body.pools).reduce((sum, pool) => sum + pool.available.length, 0);

async function settle(size) {
  const deadline = Date.now() + 60000;
  for (;;) {
    const fleet = (await admin('GET', '/api/v1/admin/fleet')).body;
    if (replicas() === size && fleet.replicas === size && fleet.pending_removal.length === 0 && (await freePods()) === size) return;
    if (Date.now() > deadline) throw new Error(`fleet did not settle at ${size}`);
    await sleep(100);
  }
}

let sequence = 0;
async function autoscalerRound() {
  await admin('PUT', '/api/v1/admin/autoscaler', { enabled: true });
  await sleep(2500); // a tick or two of steady state
  const started = performance.now();
  const sids = Array.from({ length: 4 }, () => `fl-${++sequence}`);
  const served = await Promise.all(sids.map(async (sid) => {
    const answer = await api('/api/v1/allocate', { call_sid: sid, wait_ms: 10000 });
    if (answer.status !== 200) throw new Error(`allocate ${sid}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return performance.now() - started;
  }));
  const ms = Math.max(...served);
  for (const sid of sids) await api('/api/v1/release', { call_sid: sid });
  await admin('PUT', '/api/v1/admin/autoscaler', { enabled: false });
  await admin('POST', '/api/v1/admin/fleet/scale', { replicas: 2 });
  await settle(2);
  return ms;
}

async function manualRound() {
  const started = performance.now();
  stack.sim.scale(3);
  while ((await freePods()) < 3) await sleep(10);
  const ms = performance.now() - started;
  stack.sim.scale(2);
  await settle(2);
  return ms;
}

await settle(2);
const auto = [];
const manual = [];
for (let round = 0; round < rounds; round += 1) {
  manual.push(await manualRound());
  auto.push(await autoscalerRound());
  console.log(`round ${round + 1}: autoscaler step -> capacity ${auto.at(-1).toFixed(0)} ms; manual scale -> capacity ${manual.at(-1).toFixed(0)} ms`);
}
const range = (values) => `${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)} ms`;
console.log(`\nready delay ${readyDelayMs} ms; goal: autoscaler <= delay + 3000 = ${readyDelayMs + 3000} ms`);
console.log(`demand step -> new capacity allocatable (autoscaler): ${range(auto)}`);
console.log(`manual scale-subresource PATCH -> new pod allocatable (baseline): ${range(manual)}`);
console.log(`ratio autoscaler / baseline (medians): ${(auto.sort((a, b) => a - b)[Math.floor(auto.length / 2)] / manual.sort((a, b) => a - b)[Math.floor(manual.length / 2)]).toFixed(2)}`);
console.log(`goal met: ${Math.max(...auto) <= readyDelayMs + 3000 ? 'yes' : 'no'}`);
await stack.stop();
process.exit(0);
