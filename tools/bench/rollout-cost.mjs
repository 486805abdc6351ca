// The cost of the version split (SPEC 12) inside allocateCall, in the same run:
// allocate+release straight on the scripts (as lua-cost.mjs: 100 exclusive
// standard pods, the `npm start` connect deadline), half the pods v1 and half
// v2, alternating rounds with no rollout and with a 2-version split (95/5,
// random). Prints Redis's usec per EVALSHA (INFO commandstats) and Redis CPU
// per allocate+release pair for each round, and the medians.
//
// Usage: node tools/bench/rollout-cost.mjs [--seconds 3] [--rounds 3] [--connections 20] [--pods 100]
import { lib, option } from './bench-env.mjs';

const testing = lib('testing');
const { RolloutScripts } = lib('redis-scripts');
const seconds = option('seconds', 3);
const rounds = option('rounds', 3);
const connections = option('connections', 20);
const pods = option('pods', 100);

const server = await testing.RedisServer.start();
try {
  const names = Array.from({ length: pods }, (_, i) => `voice-agent-${i}`);
  const fixture = await testing.createPoolFixture({
    url: server.url, prefix: 'voice:', pods: names, tierConfig: '{"standard":{"type":"exclusive","target":0}}', connectTimeoutMs: 20000,
  });
  const { redis, keys, scripts } = fixture;
  for (const [index, name] of names.entries()) {
    await scripts.upsertPod({ name, uid: fixture.uids.get(name), ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version: index % 2 === 0 ? 'v1' : 'v2' });
  }
  const rollouts = new RolloutScripts(redis, keys, 1000);
  const split = { targets: [{ version: 'v1', percent: 95 }, { version: 'v2', percent: 5 }], assignment: 'random', guardrail: null };
  const cpu = async () => {
    const info = await redis.info('cpu');
    const value = (field) => Number(new RegExp(`${field}:([\\d.]+)`).exec(info)[1]);
    return (value('used_cpu_sys') + value('used_cpu_user')) * 1000;
  };
  let counter = 0;
  const run = async (duration) => {
    const deadline = Date.now() + duration * 1000;
    let pairs = 0;
    const worker = async () => {
      while (Date.now() < deadline) {
        counter += 1;
        const sid = `rollout-cost-${counter}`;
        await scripts.allocate({ callSid: sid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
        await scripts.release(sid, 'bench');
        pairs += 1;
      }
    };
    await Promise.all(Array.from({ length: connections }, worker));
    return pairs;
  };
  const measure = async (withSplit) => {
    if (withSplit) await rollouts.set(split, 'bench');
    else await redis.del(keys.rollout());
    await run(0.5); // warm up with this setting
    await redis.config('RESETSTAT');
    const before = await cpu();
    const pairs = await run(seconds);
    const used = (await cpu()) - before;
    const evalsha = (await redis.info('commandstats')).split('\n').find((line) => line.startsWith('cmdstat_evalsha:')) ?? '';
    return { usecPerScript: Number(/usec_per_call=([\d.]+)/.exec(evalsha)?.[1] ?? NaN), cpuPerPairMs: used / pairs, pairs };
  };
  const results = { none: [], split: [] };
  for (let round = 0; round < rounds; round += 1) {
    results.none.push(await measure(false));
    results.split.push(await measure(true));
  }
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  console.log(`${rounds} alternating rounds of ${seconds} s, ${connections} callers, ${pods} pods (half v1, half v2)\n`);
  console.log('| allocation | usec per EVALSHA (rounds) | median | Redis CPU per allocate+release, ms (median) |');
  console.log('|---|---|---|---|');
  for (const [label, rows] of [['no rollout', results.none], ['2-version split 95/5', results.split]]) {
    const usec = rows.map((row) => row.usecPerScript);
    console.log(`| ${label} | ${usec.map((value) => value.toFixed(1)).join(', ')} | ${median(usec).toFixed(1)} | ${median(rows.map((row) => row.cpuPerPairMs)).toFixed(4)} |`);
  }
  const ratio = median(results.split.map((row) => row.usecPerScript)) / median(results.none.map((row) => row.usecPerScript));
  console.log(`\nsplit / none (usec per EVALSHA, medians): ${ratio.toFixed(2)}`);
  await fixture.close();
} finally {
  await server.stop();
}
