import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { PoolFixture, createPoolFixture, freePort, uniquePrefix, waitFor } from '@smart-router/testing';
import { FREE_PORTS, LocalStack } from './stack';

/**
 * Issue 14 on a real stack (free ports, built apps): an app killed under
 * `npm start` comes back and serves, and the log names it; an app that cannot
 * start is given up after a crash loop; a voice agent's release outlives an
 * allocation-api outage of several seconds.
 */

const ROOT = join(__dirname, '..', '..', '..');
const PREFIX = uniquePrefix('sup');

let stack: LocalStack;
let pool: PoolFixture;
let logDir: string;

async function allocate(callSid: string): Promise<{ status: number; body: { pod_name?: string; ws_url?: string } }> {
  const response = await fetch(`${stack.url('gateway')}/api/v1/allocate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ call_sid: callSid }) });
  return { status: response.status, body: (await response.json()) as { pod_name?: string; ws_url?: string } };
}

beforeAll(async () => {
  logDir = mkdtempSync(join(tmpdir(), 'sr-supervisor-'));
  // Only allocation-api runs; the pools are registered the reconciler's way, with the sim's pod names.
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir,
    apps: ['allocation-api'],
    env: { REDIS_PREFIX: PREFIX },
    restartPolicy: { firstDelayMs: 200, maxDelayMs: 400 },
  });
  // The pods' real UIDs: the simulated agents authenticate as their pods, and allocation-api checks the UID it recorded.
  pool = await createPoolFixture({ url: stack.redisUrl, prefix: PREFIX, uidOf: (name) => stack.sim.getPod(name)?.metadata.uid });
}, 90000);

afterAll(async () => {
  await pool?.close();
  await stack?.stop();
}, 60000);

describe('npm start keeps its apps running', () => {
  it('restarts an app killed with SIGKILL, logs which app died and how, and it serves again', async () => {
    expect((await allocate('before-kill')).status).toBe(200);
    const victim = stack.running.get('allocation-api')!.child;
    victim.kill('SIGKILL');
    await waitFor(() => stack.events.some((line) => line.startsWith('stack: allocation-api died (killed by SIGKILL)')), { timeoutMs: 10000, what: 'the crash to be logged' });
    await waitFor(() => stack.events.includes('stack: starting allocation-api again'), { timeoutMs: 10000, what: 'the restart' });
    await stack.waitReady('allocation-api');
    expect(stack.running.get('allocation-api')!.child.pid).not.toBe(victim.pid);
    expect(await allocate('after-kill')).toMatchObject({ status: 200, body: { pod_name: expect.stringMatching(/^voice-agent-/) } });
    expect(readFileSync(join(logDir, 'allocation-api.log'), 'utf8')).toContain('stack: allocation-api died (killed by SIGKILL)');
  }, 60000);

  it('gives up on an app that crashes in a loop, and says so', async () => {
    const instance = await stack.startApp('allocation-api', { instance: 'broken-api', port: await freePort(), env: { CALL_TTL_SECONDS: 'not-a-number' } });
    await waitFor(() => stack.events.some((line) => line.startsWith(`stack: ${instance} died (exit code 1); it crashed 5 times within 60 s, so it is NOT restarted again`)), {
      timeoutMs: 45000,
      intervalMs: 100,
      what: 'the crash loop to be given up',
    });
    expect(stack.events.filter((line) => line.startsWith(`stack: ${instance} died (exit code 1)`))).toHaveLength(5);
    expect(stack.events.filter((line) => line === `stack: starting ${instance} again`)).toHaveLength(4);
    expect(stack.running.has(instance)).toBe(false);
    expect(readFileSync(join(logDir, `${instance}.log`), 'utf8')).toContain('CALL_TTL_SECONDS');
  }, 60000);

  it('a graceful stop is not a crash: nothing is restarted', async () => {
    const events = stack.events.length;
    const port = await freePort();
    const instance = await stack.startApp('allocation-api', { instance: 'spare-api', port });
    await stack.waitReady('allocation-api', port);
    expect(await stack.stopApp(instance)).toBeTruthy();
    expect(stack.events.slice(events)).toEqual([]);
    expect(stack.running.has(instance)).toBe(false);
  }, 60000);

  it("Ctrl-C (SIGINT from the terminal, straight to every app of its process group) is not a crash either", async () => {
    const events = stack.events.length;
    const port = await freePort();
    const instance = await stack.startApp('allocation-api', { instance: 'interrupted-api', port });
    await stack.waitReady('allocation-api', port);
    stack.running.get(instance)!.child.kill('SIGINT');
    await waitFor(() => !stack.running.has(instance), { timeoutMs: 15000, what: 'the interrupted app to exit' });
    expect(stack.events.slice(events)).toEqual([]);
  }, 60000);

  it("a voice agent's release outlives several seconds of allocation-api outage", async () => {
    const allocated = await allocate('outage-call');
    expect(allocated.status).toBe(200);
    const socket = new WebSocket(allocated.body.ws_url!);
    await new Promise((resolve, reject) => socket.once('message', resolve).once('error', reject));
    await stack.stopApp('allocation-api');
    const retriesBefore = stack.agents.releaseRetries;
    const down = Date.now();
    socket.close();
    // 0.25 + 0.5 + 1 + 2 s of backoff: past the old 3 s of retries, and still trying.
    await waitFor(() => stack.agents.releaseRetries >= retriesBefore + 5, { timeoutMs: 20000, intervalMs: 100, what: 'release retries during the outage' });
    expect(Date.now() - down).toBeGreaterThan(3000);
    expect(await pool.redis.hget(pool.keys.call('outage-call'), 'pod_name')).toBe(allocated.body.pod_name);
    await stack.startApp('allocation-api');
    await waitFor(async () => (await pool.redis.exists(pool.keys.call('outage-call'))) === 0, { timeoutMs: 30000, intervalMs: 100, what: 'the call to be released once allocation-api is back' });
    expect(stack.events.filter((line) => line.includes('allocation-api died'))).toHaveLength(1);
  }, 60000);
});
