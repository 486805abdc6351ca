// Dead air per recovered call (SPEC 11, issue 20): the stack with re-homing on
// (REHOME_ENABLED=true, the simulated agents heartbeating every 2 s, the SPEC's
// suspect 4 s / dead 6 s, the reconciler's jobs at their shipped pace, provider
// signatures and signed media URLs on, the simulated carrier and providers'
// REST APIs). Places `--calls` calls through the carrier (alternately Twilio
// and Plivo; each on its own exclusive pod), waits until every one streams,
// then:
//   freeze  freezes every agent holding them (process up, pod Ready, loop silent)
//   crash   crashes every agent holding them (sockets closed)
// and reads, from the carrier (GET /sim/carrier/calls/{sid}), each call's new
// stream on another pod. Dead air per call = new stream's first_media_at - the
// time of the fault; for crash also from the old stream's closed_at. Prints
// p50/p99/max per fault and provider (from the stream that finally carries
// media), how many calls needed a second re-home, and how many were not
// recovered (ended after REHOME_MAX, or not back within 30 s). All the agents
// fault at once: a crashed agent's pod whose call was just re-homed is back in
// its pool until it is declared dead (6 s), so another re-homed call can land
// on it and need a second re-home. A third round crashes the agents of
// `--calls` new calls one after the other, each once the previous call is
// back (a single crash, the end-to-end test's case, repeated).
// Clocks: the carrier runs in this process.
//
// Usage: node tools/bench/dead-air.mjs [--calls 20]
// (build first: node tools/scripts/build.mjs)
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lib, option, require, root } from './bench-env.mjs';

const Redis = require(join(root, 'node_modules', 'ioredis'));
const testing = lib('testing');
const { LocalStack, FREE_PORTS } = lib('stack');

const calls = option('calls', 20);
// Each round: the calls' pods + as many to move to (frozen pods rejoin late, crashed ones never); a few spare.
const replicas = calls * 5 + 4;

const percentile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] : NaN;
};

const progress = (message) => process.stderr.write(`dead-air: ${message}\n`);
progress(`starting the stack with ${replicas} pods`);
const stack = await LocalStack.start({
  root,
  ports: FREE_PORTS,
  logDir: mkdtempSync(join(tmpdir(), 'sr-bench-dead-air-')),
  replicas,
  simTimings: { readyDelayMs: 200, terminationDelayMs: 200, recreateDelayMs: 50 },
  env: {
    TWILIO_AUTH_TOKENS: 'dead-air-bench-twilio-token', PLIVO_AUTH_TOKENS: 'dead-air-bench-plivo-token',
    TWILIO_ACCOUNT_SID: 'ACdeadairbench000000000000000000', PLIVO_AUTH_ID: 'MADEADAIRBENCH000000',
    MEDIA_URL_SECRET: 'dead-air-bench-media-secret-0001',
    HEARTBEAT_INTERVAL_MS: '2000', REHOME_ENABLED: 'true',
  },
});
const sim = `http://127.0.0.1:${stack.ports.sim}`;
const json = async (response) => {
  if (!response.ok) throw new Error(`${response.url}: ${response.status} ${await response.text()}`);
  return response.json();
};
const view = async (sid) => json(await fetch(`${sim}/sim/carrier/calls/${sid}`));
const fault = async (pod, action) => json(await fetch(`${sim}/sim/agents/${pod}/${action}`, { method: 'POST' }));

async function place(provider) {
  const response = await fetch(`${sim}/sim/carrier/calls`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ provider }) });
  return (await json(response)).call_sid;
}

/** Places the calls and waits until each streams media; answers [{ sid, provider, pod }]. */
async function placeAll(tag) {
  const placed = [];
  for (let i = 0; i < calls; i += 1) {
    const provider = i % 2 === 0 ? 'twilio' : 'plivo';
    placed.push({ sid: await place(provider), provider });
  }
  for (const call of placed) {
    const current = await testing.waitFor(async () => {
      const state = await view(call.sid);
      return state.state === 'in-progress' && state.streams[0]?.first_media_at ? state : null;
    }, { timeoutMs: 20000, what: `${tag} call ${call.sid} streaming` });
    call.pod = current.streams[0].pod;
  }
  return placed;
}

/**
 * Applies the fault to every pod holding a call, then waits for each call's new stream
 * elsewhere. `oneAtATime`: one agent after the other, each after the previous call is back.
 */
async function run(action, oneAtATime = false) {
  const placed = await placeAll(action);
  progress(`${action}${oneAtATime ? ' (one at a time)' : ''}: ${placed.length} calls streaming`);
  const pods = [...new Set(placed.map((call) => call.pod))];
  const rows = [];
  const lost = [];
  const recovered = async (call, at) => {
    // Recovered: streaming from another pod. Lost: ended (REHOME_MAX spent) or not back within 30 s.
    const state = await testing.waitFor(async () => {
      const current = await view(call.sid);
      const last = current.streams[current.streams.length - 1];
      if (current.state === 'completed') return current;
      return current.state === 'in-progress' && current.streams.length >= 2 && last.pod && last.pod !== call.pod && last.first_media_at ? current : null;
    }, { timeoutMs: 30000, intervalMs: 20, what: `${action}: ${call.sid} streaming from a pod other than ${call.pod}` }).catch(() => null);
    if (!state || state.state === 'completed') {
      lost.push({ ...call, streams: state?.streams.length ?? 0 });
      return;
    }
    const first = state.streams[0];
    const last = state.streams[state.streams.length - 1];
    rows.push({ ...call, rehomes: state.streams.length - 1, fromFault: last.first_media_at - at, fromClose: first.closed_at ? last.first_media_at - first.closed_at : NaN });
  };
  if (oneAtATime) {
    for (const call of placed) {
      const at = Date.now();
      await fault(call.pod, action);
      await recovered(call, at);
    }
  } else {
    const at = Date.now();
    await Promise.all(pods.map((pod) => fault(pod, action)));
    await Promise.all(placed.map((call) => recovered(call, at)));
  }
  if (lost.length > 0) progress(`${action}: ${lost.length} call(s) not recovered: ${lost.map((call) => `${call.sid} (${call.provider}, ${call.streams} streams)`).join(', ')}`);
  return { rows, pods, lost };
}

async function hangUp(rows) {
  for (const row of rows) await fetch(`${sim}/sim/carrier/calls/${row.sid}`, { method: 'DELETE' });
}

const f0 = (value) => (Number.isNaN(value) ? '-' : value.toFixed(0));
function report(results) {
  console.log(`\nDead air per recovered call, ms: ${calls} calls per fault (Twilio and Plivo alternately, one per pod), ${replicas} pods, heartbeats every 2 s, suspect 4 s, dead 6 s, REHOME_ENABLED=true, jobs at the shipped pace\n`);
  console.log('| fault | calls recovered | re-homed twice | measured from | p50 | p99 | max | SPEC bound |');
  console.log('|---|---|---|---|---|---|---|---|');
  const line = (label, rows, lost, field, from, bound) => {
    const values = rows.map((row) => row[field]).filter((value) => !Number.isNaN(value));
    console.log(`| ${label} | ${rows.length}/${rows.length + lost.length} | ${rows.filter((row) => row.rehomes > 1).length} | ${from} | ${f0(percentile(values, 0.5))} | ${f0(percentile(values, 0.99))} | ${f0(Math.max(...values))} | ${bound} |`);
  };
  for (const [label, action, bound] of [['freeze', 'freeze', '< 10000 from the freeze'], ['crash', 'crash', '< 3000 from the crash'], ['crash, one agent at a time', 'crash', '< 3000 from the crash']]) {
    if (!results[label]) continue;
    const { rows, lost } = results[label];
    line(label, rows, lost, 'fromFault', `the ${action}`, bound);
    for (const provider of ['twilio', 'plivo']) line(`${label} (${provider})`, rows.filter((row) => row.provider === provider), lost.filter((row) => row.provider === provider), 'fromFault', `the ${action}`, bound);
    if (action === 'crash') line(label, rows, lost, 'fromClose', "the old stream's closed_at", '');
  }
}

const results = {};
let failed = false;
try {
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  try {
    await testing.waitFor(async () => (await redis.zcard(stack.keys.heartbeats())) === replicas, { timeoutMs: 60000, what: 'every pod enrolled by its heartbeats' });
    progress('every pod enrolled');
  } finally {
    await redis.quit();
  }
  const frozen = await run('freeze');
  results.freeze = frozen;
  await hangUp([...frozen.rows, ...frozen.lost]);
  // The thawed agents release late (409 STALE_ALLOCATION) and rejoin after a clean heartbeat.
  for (const pod of frozen.pods) await fault(pod, 'thaw');
  const crashed = await run('crash');
  results.crash = crashed;
  await hangUp([...crashed.rows, ...crashed.lost]);
  // Crashed pods whose calls moved are back in their pool until declared dead: wait for that, or
  // the next round's calls would be placed on silent agents.
  const admin = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  try {
    await testing.waitFor(async () => {
      for (const pod of crashed.pods) if ((await admin.hget(stack.keys.pod(pod), 'liveness')) !== 'dead') return false;
      return true;
    }, { timeoutMs: 20000, what: 'the crashed pods declared dead' });
  } finally {
    await admin.quit();
  }
  const one = await run('crash', true);
  results['crash, one agent at a time'] = one;
  await hangUp([...one.rows, ...one.lost]);
  const invariants = await json(await fetch(`${stack.url('gateway')}/api/v1/admin/invariants`));
  if (!invariants.ok) console.log(`invariants: ${JSON.stringify(invariants.violations.slice(0, 3))}`);
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  if (Object.keys(results).length > 0) report(results);
  progress('stopping');
  // Crashed agents stay silent (no pod is deleted) and their streams may keep the stop waiting:
  // after 30 s every child the stack still runs is killed, so none outlives the bench.
  const stopped = await Promise.race([stack.stop().then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 30000).unref())]);
  if (!stopped) {
    progress('the stack did not stop within 30 s: killing its processes');
    stack.killAll();
  }
}
process.exit(failed ? 1 : 0);
