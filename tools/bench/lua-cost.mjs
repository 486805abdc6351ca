// Redis's side of the hot path: what allocateCall + releaseCall cost inside
// redis-server. Runs allocate+release (the bench's mix: 100 standard pods, the
// `npm start` connect deadline) with N callers straight on the scripts, then
// prints Redis CPU per script call (INFO cpu) and `INFO commandstats`: calls
// and usec_per_call of EVALSHA and of every command the scripts run.
//
// Usage: node tools/bench/lua-cost.mjs [--seconds 5] [--connections 50] [--pods 100]
import { lib, option } from './bench-env.mjs';

const testing = lib('testing');
const seconds = option('seconds', 5);
const connections = option('connections', 50);
const pods = option('pods', 100);

const server = await testing.RedisServer.start();
try {
  const fixture = await testing.createPoolFixture({
    url: server.url, prefix: 'voice:', pods: Array.from({ length: pods }, (_, i) => `voice-agent-${i}`),
    tierConfig: '{"standard":{"type":"exclusive","target":0}}', connectTimeoutMs: 20000,
  });
  const redis = fixture.redis;
  const cpu = async () => {
    const info = await redis.info('cpu');
    const value = (field) => Number(new RegExp(`${field}:([\\d.]+)`).exec(info)[1]);
    return (value('used_cpu_sys') + value('used_cpu_user')) * 1000;
  };
  let counter = 0;
  const round = async (duration) => {
    const deadline = Date.now() + duration * 1000;
    let scripts = 0;
    const worker = async () => {
      while (Date.now() < deadline) {
        counter += 1;
        const sid = `lua-cost-${counter}`;
        await fixture.scripts.allocate({ callSid: sid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
        await fixture.scripts.release(sid, 'bench');
        scripts += 2;
      }
    };
    await Promise.all(Array.from({ length: connections }, worker));
    return scripts;
  };
  await round(1); // warm up: script cache, stream
  await redis.config('RESETSTAT');
  const before = await cpu();
  const started = Date.now();
  const scripts = await round(seconds);
  const elapsed = (Date.now() - started) / 1000;
  const used = (await cpu()) - before;
  const stats = (await redis.info('commandstats')).split('\n').filter((line) => line.startsWith('cmdstat_'));
  console.log(`${scripts} scripts in ${elapsed.toFixed(1)} s (${(scripts / elapsed).toFixed(0)}/s), ${connections} callers, ${pods} pods`);
  console.log(`redis-server CPU per script call: ${(used / scripts).toFixed(4)} ms (allocate+release pair: ${((2 * used) / scripts).toFixed(4)} ms)\n`);
  console.log('| command | calls per script | usec per call | usec per script |');
  console.log('|---|---|---|---|');
  const rows = stats.map((line) => {
    const [, name, fields] = /^cmdstat_([^:]+):(.*)$/.exec(line.trim());
    const calls = Number(/calls=(\d+)/.exec(fields)[1]);
    const usec = Number(/usec=(\d+)/.exec(fields)[1]);
    return { name, calls, usec };
  }).filter((row) => row.calls > 0).sort((a, b) => b.usec - a.usec);
  for (const row of rows) console.log(`| ${row.name} | ${(row.calls / scripts).toFixed(2)} | ${(row.usec / row.calls).toFixed(2)} | ${(row.usec / scripts).toFixed(2)} |`);
  await fixture.close();
} finally {
  await server.stop();
}
