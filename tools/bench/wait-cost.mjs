// Redis's cost of a release with waiters queued (SPEC 10.2: "with 10,000 waiters
// whose chains cannot use the freed pod, a release costs at most 2x a release
// with an empty queue"). Straight on the scripts against a private redis-server:
// `--pods` gold pods are taken by calls and released, and only the releases run
// while Redis's INFO commandstats is read (usec_per_call of EVALSHA = Redis CPU
// per release script). Scenarios, same run, alternating rounds:
//   empty      no waiter
//   unusable   `--waiters` waiters whose chain (standard, overflow, basic) has no gold
//   usable-few at most `--pods` waiters whose chain is gold: every release hands its pod on
//   usable     `--waiters` such waiters: every release hands its pod on
// WAIT_QUEUE_MAX is raised to fit (the scripts' limit, as the apps pass it).
// `--before-lua DIR` also runs every scenario with the Lua scripts of DIR (e.g. main's
// libs/redis-scripts/src/lua, extracted with `git archive`), for a before/after in the same run.
//
// Usage: node tools/bench/wait-cost.mjs [--waiters 10000] [--pods 200] [--rounds 3] [--before-lua DIR]
// (build first: node tools/scripts/build.mjs)
import { join } from 'node:path';
import { lib, option, require, root } from './bench-env.mjs';

const Redis = require(join(root, 'node_modules', 'ioredis'));

const testing = lib('testing');
const redisScripts = lib('redis-scripts');
const waiters = option('waiters', 10000);
const pods = option('pods', 200);
const rounds = option('rounds', 3);
const beforeIndex = process.argv.indexOf('--before-lua');
const beforeLua = beforeIndex >= 0 ? process.argv[beforeIndex + 1] : null;

const TIERS = JSON.stringify({ gold: { type: 'exclusive', target: pods }, standard: { type: 'exclusive', target: 1 } });
const PODS = Array.from({ length: pods + 1 }, (_, index) => `voice-agent-${index}`);
const WAIT_MS = 600000; // the scripts take any wait; the API's 10 s would expire waiters mid-bench
const SCENARIOS = ['empty', 'unusable', 'usable-few', 'usable'];

const server = await testing.RedisServer.start();
const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });

/** Redis's own time per EVALSHA (µs) since the last RESETSTAT, and how many ran. */
async function evalshaStats() {
  const line = (await admin.info('commandstats')).split('\n').find((row) => row.startsWith('cmdstat_evalsha:'));
  if (!line) return { calls: 0, usecPerCall: 0 };
  return { calls: Number(/calls=(\d+)/.exec(line)[1]), usecPerCall: Number(/usec_per_call=([\d.]+)/.exec(line)[1]) };
}

/** One scenario on a fresh keyspace; returns Redis µs per release, one value per round. */
async function run(scenario, luaDir) {
  await admin.flushall();
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  // Scripts defined first are kept: PoolScripts then calls these (older) sources.
  if (luaDir) redisScripts.defineScripts(client, redisScripts.readScripts(luaDir));
  const fixture = await testing.createPoolFixture({ url: server.url, client, tierConfig: TIERS, pods: PODS, limits: { waitQueueMax: waiters * 2 + pods } });
  const { scripts, redis, keys } = fixture;
  await redis.hset(keys.merchantConfig(), 'only-gold', JSON.stringify({ tier: 'gold', fallback: ['gold'] }));
  let serial = 0;
  const allocate = (callSid, merchantId, waitMs = 0) => scripts.allocate({ callSid, merchantId, provider: '', metadata: '', refuseTombstoned: false, waitMs });
  const queue = async (count, merchantId) => {
    for (let done = 0; done < count; done += 1000) {
      const batch = Array.from({ length: Math.min(1000, count - done) }, () => allocate(`${scenario}-w-${(serial += 1)}`, merchantId, WAIT_MS));
      for (const result of await Promise.all(batch)) if (result.ok || result.code !== -9) throw new Error(`${scenario}: a waiter was not queued (${JSON.stringify(result)})`);
    }
  };
  const take = async () => {
    const holders = [];
    for (let index = 0; index < pods; index += 1) {
      const sid = `${scenario}-c-${(serial += 1)}`;
      const result = await allocate(sid, 'only-gold');
      if (!result.ok) throw new Error(`${scenario}: gold call ${sid} refused (${result.code})`);
      holders.push(sid);
    }
    return holders;
  };
  const busy = await allocate('standard-busy', ''); // the plain chains' only pod
  if (!busy.ok) throw new Error('standard pod refused');
  if (scenario === 'unusable') await queue(waiters, '');
  let holders = await take();
  const level = scenario === 'usable' ? waiters : scenario === 'usable-few' ? pods : 0;
  const samples = [];
  for (let round = 0; round <= rounds; round += 1) {
    const queued = await redis.zcard(keys.waitQueue());
    if (level > queued) await queue(level - queued, 'only-gold');
    if (scenario === 'empty' || scenario === 'unusable') {
      if (round > 0) holders = await take();
    }
    await admin.config('RESETSTAT');
    const next = [];
    for (const sid of holders) {
      const released = await scripts.release(sid, 'bench');
      if (!released.ok) throw new Error(`${scenario}: release of ${sid} failed`);
      if (level > 0) next.push(released.release.podName);
    }
    const stats = await evalshaStats();
    if (round > 0 && stats.calls !== holders.length) throw new Error(`${scenario}: ${stats.calls} EVALSHA for ${holders.length} releases`);
    if (level > 0) {
      // Each release handed its pod to a waiter: those are the next round's holders.
      holders = [];
      for (const pod of next) {
        const [holder] = await redis.smembers(keys.podCalls(pod));
        if (!holder) throw new Error(`${scenario}: ${pod} was not handed to a waiter`);
        holders.push(holder);
      }
    }
    if (round > 0) samples.push(stats.usecPerCall); // round 0 warms the script cache up
  }
  const left = await redis.zcard(keys.waitQueue());
  const violations = await scripts.checkInvariants();
  if (violations.length > 0) throw new Error(`${scenario}: invariants ${JSON.stringify(violations.slice(0, 3))}`);
  await fixture.close();
  return { samples, left };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const versions = beforeLua ? [['this branch', undefined], ['before', beforeLua]] : [['this branch', undefined]];
const results = new Map();
try {
  // Alternating: every scenario once per pass, so machine load spreads over all of them.
  for (const [label, dir] of versions) {
    for (const scenario of SCENARIOS) results.set(`${label}/${scenario}`, await run(scenario, dir));
  }
  console.log(`Redis CPU per release script (INFO commandstats usec_per_call of EVALSHA), ${pods} releases per round, median of ${rounds} rounds\n`);
  console.log('| scripts | queue when the pod is freed | µs per release (rounds) | ratio vs empty queue, same scripts |');
  console.log('|---|---|---|---|');
  const describe = {
    empty: 'empty',
    unusable: `${waiters.toLocaleString('en')} waiters whose chain cannot use the pod`,
    'usable-few': `≤ ${pods} waiters that can (each release hands its pod on)`,
    usable: `${waiters.toLocaleString('en')} waiters that can (each release hands its pod on)`,
  };
  for (const [label] of versions) {
    const base = median(results.get(`${label}/empty`).samples);
    for (const scenario of SCENARIOS) {
      const { samples } = results.get(`${label}/${scenario}`);
      const value = median(samples);
      console.log(`| ${label} | ${describe[scenario]} | ${value.toFixed(2)} (${samples.map((sample) => sample.toFixed(1)).join(', ')}) | **${(value / base).toFixed(2)}** |`);
    }
  }
} finally {
  await admin.quit();
  await server.stop();
}
