// Benchmark (not a test) of "wait instead of refuse" (SPEC 9.1): 20 exclusive
// pods behind the built allocation-api (dist/) on a private redis-server; a
// burst of 2x capacity (40 calls at once), each call served holds its pod
// 1-3 s (uniform) and then releases it. The share of calls served with
// wait_ms 3000 is measured against wait_ms 0 in the same run, alternating
// rounds so both see the same machine load.
//
// Usage: node tools/bench/wait.mjs [--rounds 3] [--pods 20] [--wait-ms 3000]
//   (build first: node tools/scripts/build.mjs)
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { lib, option, root } from './bench-env.mjs';

const testing = lib('testing');
const rounds = option('rounds', 3);
const pods = option('pods', 20);
const waitMs = option('wait-ms', 3000);
const TIERS = JSON.stringify({ standard: { type: 'exclusive', target: pods } });

const redis = await testing.RedisServer.start();
const prefix = 'benchwait:';
const fixture = await testing.createPoolFixture({ url: redis.url, prefix, pods: Array.from({ length: pods }, (_, i) => `voice-agent-${i}`), tierConfig: TIERS });
const port = await testing.freePort();
const base = `http://127.0.0.1:${port}`;
const api = spawn(process.execPath, [join(root, 'dist', 'apps', 'allocation-api', 'src', 'main.js')], {
  env: { ...process.env, REDIS_URL: redis.url, REDIS_PREFIX: prefix, HTTP_PORT: String(port), LOG_LEVEL: 'error', TIER_CONFIG: TIERS, TOMBSTONE_TTL_SECONDS: '0', ALLOW_UNAUTHENTICATED: 'true' },
  stdio: ['ignore', 'ignore', 'inherit'],
});

const post = async (path, body) => {
  const response = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
};

let sequence = 0;
/** One burst: 2x capacity at once; returns the share served and the waits of the served calls. */
async function burst(wait) {
  const holds = [];
  const results = await Promise.all(Array.from({ length: pods * 2 }, async () => {
    sequence += 1;
    const sid = `bw-${sequence}`;
    const sent = performance.now();
    const answer = await post('/api/v1/allocate', { call_sid: sid, wait_ms: wait });
    const waited = performance.now() - sent;
    if (answer.status === 200) {
      holds.push(new Promise((resolve) => setTimeout(resolve, 1000 + Math.random() * 2000))
        .then(() => post('/api/v1/release', { call_sid: sid }))
        .then((release) => {
          if (release.status !== 200) console.error(`release ${sid}: ${release.status} ${JSON.stringify(release.body)}`);
        }));
    }
    if (answer.status !== 200 && answer.body.code !== 'NO_POD_AVAILABLE') console.error(`allocate ${sid}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return { served: answer.status === 200, waited };
  }));
  await Promise.all(holds);
  // A call the script allocated while its request failed (e.g. a command timeout) would hold a pod forever here.
  const stranded = await fixture.redis.zrange(fixture.keys.activeCalls(), 0, -1);
  if (stranded.length > 0) {
    console.error(`${stranded.length} call(s) still allocated after every served call was released: ${stranded.join(', ')}`);
    for (const sid of stranded) await post('/api/v1/release', { call_sid: sid });
  }
  await testing.waitFor(async () => (await fixture.redis.scard(fixture.keys.poolAvailable('standard'))) === pods, { what: 'every pod free again' });
  const served = results.filter((result) => result.served);
  const waits = served.map((result) => result.waited).sort((a, b) => a - b);
  return { share: served.length / results.length, p50: waits[Math.floor(waits.length / 2)], max: waits[waits.length - 1] };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const pct = (value) => `${(value * 100).toFixed(1)} %`;
try {
  await testing.waitFor(async () => (await fetch(`${base}/ready`).catch(() => null))?.status === 200, { timeoutMs: 20000, what: 'allocation-api ready' });
  const refuse = [];
  const waiting = [];
  for (let round = 1; round <= rounds; round += 1) {
    refuse.push(await burst(0));
    waiting.push(await burst(waitMs));
    console.log(`round ${round}: wait_ms 0 served ${pct(refuse.at(-1).share)} | wait_ms ${waitMs} served ${pct(waiting.at(-1).share)} (served calls waited p50 ${waiting.at(-1).p50.toFixed(0)} ms, max ${waiting.at(-1).max.toFixed(0)} ms)`);
  }
  const withWait = median(waiting.map((result) => result.share));
  const without = median(refuse.map((result) => result.share));
  console.log(`\n${pods} pods, bursts of ${pods * 2} calls holding 1-3 s, ${rounds} rounds (medians):`);
  console.log(`  served with wait_ms ${waitMs}: ${pct(withWait)} (range ${pct(Math.min(...waiting.map((r) => r.share)))}-${pct(Math.max(...waiting.map((r) => r.share)))})`);
  console.log(`  served with wait_ms 0 (baseline, same run): ${pct(without)} (range ${pct(Math.min(...refuse.map((r) => r.share)))}-${pct(Math.max(...refuse.map((r) => r.share)))})`);
  console.log(`  ratio: ${(withWait / without).toFixed(2)}x; goal >= 95 % served with waiting: ${withWait >= 0.95 ? 'met' : 'NOT met'}`);
  const violations = await fixture.scripts.checkInvariants();
  console.log(`  invariants after the run: ${violations.length === 0 ? 'ok' : JSON.stringify(violations)}`);
} finally {
  api.kill('SIGTERM');
  await new Promise((resolve) => api.once('exit', resolve));
  await fixture.close();
  await redis.dispose();
}
