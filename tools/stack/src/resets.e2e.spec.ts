import { mkdtempSync } from 'node:fs';
import Redis from 'ioredis';
import { connect, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '@smart-router/testing';
import { FREE_PORTS, LocalStack } from './stack';

/**
 * SPEC 10.2 "No listener dies of its client" (issue 19: one TCP reset after a
 * refused WebSocket upgrade ended `npm start`). The stack runs as `npm start`
 * runs it (`listenersApart`: the simulated cluster with its voice agents and
 * the gateway are supervised children like the apps; this process listens on
 * nothing). Clients reset their connections (RST, `resetAndDestroy`) at every
 * point of a request against every listener, hundreds of times; afterwards
 * every listener answers, a call still streams, the invariants hold, and every
 * child is the process it was (nothing crashed and was restarted quietly).
 */

const ROOT = join(__dirname, '..', '..', '..');
const REPEAT = 6;

let stack: LocalStack;
let pidsBefore: [string, number | undefined][];

function pids(): [string, number | undefined][] {
  return [...stack.running.entries()].map(([instance, running]) => [instance, running.child.pid] as [string, number | undefined]).sort(([a], [b]) => a.localeCompare(b));
}

function gatewayUrl(): string {
  return stack.url('gateway');
}

/** When the client resets: right after its bytes left, or once the server has answered something. */
type ResetWhen = 'sent' | 'answered';

/**
 * Connects, writes `request` (as is: possibly cut mid-line, mid-headers or
 * mid-body), then resets the connection (RST, not FIN) at `when`. `then`
 * writes more once answered (e.g. garbage frames after a 101) before the reset.
 * Resolves with what the server had sent by then.
 */
function resetting(port: number, request: string, when: ResetWhen, then?: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    const reset = () => {
      if (!socket.destroyed) socket.resetAndDestroy();
    };
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Buffer.concat(received).toString('latin1')));
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      if (when !== 'answered' || received.length > 1) return;
      if (then) socket.write(then, reset);
      else reset();
    });
    socket.once('connect', () => socket.write(request, () => (when === 'sent' ? reset() : undefined)));
    // A server that never answers is reset anyway (and the listener checks below tell whether it is still alive).
    setTimeout(reset, 10000).unref();
  });
}

function upgrade(path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
}

/** Every way to leave a plain request: mid request line, mid headers, mid body, before and after the answer, and mid upgrade. */
function plainAttacks(path: string): [string, ResetWhen][] {
  return [
    [`GET ${path.slice(0, Math.max(2, path.length >> 1))}`, 'sent'],
    [`GET ${path} HTTP/1.1\r\nHost: x\r\nX-Half: abc`, 'sent'],
    [`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{"call_sid":"reset-`, 'sent'],
    // Mid-body once the server has taken the headers (it says so with a 100 Continue).
    [`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\nExpect: 100-continue\r\n\r\n{"call_sid":"reset-`, 'answered'],
    [`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, 'sent'],
    [`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, 'answered'],
    [upgrade(path), 'sent'],
    [upgrade(path), 'answered'],
  ];
}

async function hammer(port: number, attacks: [string, ResetWhen][]): Promise<number> {
  let count = 0;
  for (let round = 0; round < REPEAT; round += 1) {
    await Promise.all(attacks.map(([request, when]) => resetting(port, request, when)));
    count += attacks.length;
  }
  return count;
}

/** A WebSocket frame a server must refuse: unmasked, reserved bits set, a bogus opcode. */
const GARBAGE_FRAME = Buffer.from([0xff, 0x7f, 0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);

async function allocate(callSid: string): Promise<{ pod_name: string; ws_url: string }> {
  return waitFor(
    async () => {
      const response = await fetch(`${stack.url('allocation-api')}/api/v1/allocate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ call_sid: callSid }) });
      return response.status === 200 ? ((await response.json()) as { pod_name: string; ws_url: string }) : null;
    },
    { timeoutMs: 15000, intervalMs: 50, what: `a pod for ${callSid}` },
  );
}

async function release(callSid: string): Promise<void> {
  await fetch(`${stack.url('allocation-api')}/api/v1/release`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ call_sid: callSid }) });
}

async function availableCount(): Promise<number> {
  const status = (await (await fetch(`${gatewayUrl()}/api/v1/status`)).json()) as { pools: Record<string, { available: string[] }> };
  return Object.values(status.pools).reduce((sum, pool) => sum + pool.available.length, 0);
}

beforeAll(async () => {
  stack = await LocalStack.start({
    root: ROOT,
    ports: FREE_PORTS,
    logDir: mkdtempSync(join(tmpdir(), 'sr-resets-')),
    listenersApart: true,
    simTimings: { readyDelayMs: 100 },
    // A call whose upgrade was reset before the pod accepted it is freed within seconds; a new
    // pod-watcher leader takes over within 2 s.
    env: { CONNECT_TIMEOUT_SECONDS: '2', JOB_INTERVAL_SCALE: '0.3', LEASE_DURATION_SECONDS: '2' },
  });
  await waitFor(async () => (await availableCount()) === 5, { timeoutMs: 20000, what: 'the 5 simulated pods to be allocatable' });
  pidsBefore = pids();
}, 90000);

afterAll(async () => {
  await stack?.stop();
}, 60000);

describe('no listener dies of its client (SPEC 10.2)', () => {
  it('runs the gateway and the simulated cluster as supervised children, as npm start does', () => {
    expect(pidsBefore.map(([instance]) => instance)).toEqual(['admin', 'allocation-api', 'gateway', 'pod-watcher', 'reconciler', 'sim', 'webhooks']);
    expect(pidsBefore.every(([, pid]) => typeof pid === 'number' && pid !== process.pid)).toBe(true);
  });

  it('survives hundreds of resets at every point of a request, an upgrade, a watch and an event stream', async () => {
    let resets = 0;
    const { sim, voiceAgents, gateway, apps } = stack.ports;

    // Plain requests, cut and reset everywhere, against every listener.
    resets += await hammer(apps['allocation-api'], plainAttacks('/api/v1/allocate'));
    resets += await hammer(apps.webhooks, plainAttacks('/api/v1/twilio/answer'));
    resets += await hammer(apps.admin, plainAttacks('/api/v1/status'));
    resets += await hammer(apps['pod-watcher'], plainAttacks('/ready'));
    resets += await hammer(apps.reconciler, plainAttacks('/ready'));
    resets += await hammer(sim, plainAttacks('/api/v1/namespaces/voice-system/pods'));
    // Through the gateway: refused upgrades (its own 404, and the pods' 404 relayed by the proxy: issue 19), proxied requests.
    resets += await hammer(gateway, [...plainAttacks('/api/v1/allocate'), ...plainAttacks('/api/v1/status'), ...plainAttacks('/ws/unknown'), ...plainAttacks('/ws/pod/voice-agent-99/CAnone')]);
    // The voice agents: unknown path, unknown pod, a real pod with no such call.
    resets += await hammer(voiceAgents, [...plainAttacks('/ws/unknown'), ...plainAttacks('/ws/pod/voice-agent-99/CAnone'), ...plainAttacks('/ws/pod/voice-agent-0/CAnone')]);

    // Upgrades of a call allocated to that pod, directly and through the gateway: reset during the
    // handshake, right after the 101, and after a frame the pod must refuse.
    for (let i = 0; i < 12; i += 1) {
      const callSid = `CAreset${i}`;
      const { ws_url: wsUrl } = await allocate(callSid);
      const path = new URL(wsUrl).pathname;
      const port = i % 2 === 0 ? gateway : voiceAgents;
      const answered = await resetting(port, upgrade(path), i % 3 === 0 ? 'sent' : 'answered', i % 3 === 2 ? GARBAGE_FRAME : undefined);
      if (i % 3 !== 0) expect(answered).toMatch(/^HTTP\/1\.1 101 /);
      resets += 1;
      await release(callSid);
    }

    // Mid-watch: the simulated Kubernetes API streams pod events while clients reset; pod changes keep it writing.
    const watchPath = '/api/v1/namespaces/voice-system/pods?watch=true';
    for (let round = 0; round < 4; round += 1) {
      const patch = fetch(`http://127.0.0.1:${sim}/api/v1/namespaces/voice-system/pods/voice-agent-${round}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/merge-patch+json' },
        body: JSON.stringify({ metadata: { annotations: { 'fuzz.smart-router.io/round': String(round) } } }),
      });
      const watches = await Promise.all(Array.from({ length: 8 }, () => resetting(sim, `GET ${watchPath} HTTP/1.1\r\nHost: x\r\n\r\n`, 'answered')));
      expect(watches.every((answer) => answer.startsWith('HTTP/1.1 200'))).toBe(true);
      expect((await patch).status).toBe(200);
      resets += watches.length;
    }

    // Mid-SSE: the admin event stream, directly and through the gateway, while calls make events.
    const ssePath = '/api/v1/admin/events/stream';
    for (let round = 0; round < 4; round += 1) {
      const events = allocate(`CAsse${round}`).then(() => release(`CAsse${round}`));
      const streams = await Promise.all(Array.from({ length: 6 }, (_, i) => resetting(i % 2 === 0 ? apps.admin : gateway, `GET ${ssePath} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`, 'answered')));
      expect(streams.every((answer) => answer.startsWith('HTTP/1.1 200'))).toBe(true);
      await events;
      resets += streams.length;
    }

    expect(resets).toBeGreaterThan(500);

    // Every listener still answers.
    for (const app of ['allocation-api', 'webhooks', 'admin', 'pod-watcher', 'reconciler'] as const) await stack.waitReady(app, apps[app], 10000);
    expect((await fetch(`${gatewayUrl()}/api/v1/status`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${sim}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${voiceAgents}/`)).status).toBe(426);

    // A call still streams end to end, through the gateway to its pod.
    const { ws_url: wsUrl } = await allocate('CAafter');
    const greeting = await resetting(gateway, upgrade(new URL(wsUrl).pathname), 'answered');
    expect(greeting).toMatch(/^HTTP\/1\.1 101 /);

    // Everything settles: released calls, pods back, the invariants hold.
    await waitFor(async () => (await availableCount()) === 5, { timeoutMs: 20000, what: 'every pod to be free again' });
    await waitFor(async () => ((await (await fetch(`${gatewayUrl()}/api/v1/admin/invariants`)).json()) as { ok: boolean }).ok, { timeoutMs: 10000, what: 'the invariants to hold' });

    // Nothing died and came back quietly: the same processes, and the supervisor recorded no crash.
    expect(pids()).toEqual(pidsBefore);
    expect(stack.events).toEqual([]);
  }, 100000);

  it('restarts a killed simulated cluster, and the router follows its new pods (leader terms kept, old watches relisted)', async () => {
    const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
    try {
      // A second pod-watcher term first: a restarted cluster that forgot its Lease would start the terms
      // over, and Redis would refuse the new leader's pod events as a deposed one's.
      stack.running.get('pod-watcher')!.child.kill('SIGKILL');
      await waitFor(() => stack.events.includes('stack: starting pod-watcher again'), { timeoutMs: 10000, what: 'the pod-watcher restart' });
      await waitFor(async () => Number(await redis.get(stack.keys.watcherTerm())) >= 1, { timeoutMs: 15000, what: 'a second pod-watcher term' });
      const termBefore = Number(await redis.get(stack.keys.watcherTerm()));

      const sim = `http://127.0.0.1:${stack.ports.sim}`;
      const uids = async () =>
        Object.fromEntries(((await (await fetch(`${sim}/api/v1/namespaces/voice-system/pods`)).json()) as { items: { metadata: { name: string; uid: string } }[] }).items.map((pod) => [pod.metadata.name, pod.metadata.uid]));
      const before = await uids();
      const victim = stack.running.get('sim')!.child;
      victim.kill('SIGKILL');
      await waitFor(() => stack.events.includes('stack: starting sim again'), { timeoutMs: 10000, what: 'the simulated cluster restart' });
      const restartedAt = Date.now();
      await stack.waitListening('sim');
      expect(stack.running.get('sim')!.child.pid).not.toBe(victim.pid);
      // The leader renews its Lease on the new cluster under the same term, never an earlier one.
      const leader = await waitFor(
        async () => {
          const heartbeat = await redis.hgetall(stack.keys.watcherLeader());
          return Number(heartbeat.renewed_at) > restartedAt ? heartbeat : null;
        },
        { timeoutMs: 15000, what: 'the pod-watcher leader to renew on the restarted cluster' },
      );
      expect(Number(leader.term)).toBeGreaterThanOrEqual(termBefore);

      // Same StatefulSet, new pods (new UIDs): the router replaces every pod and offers the new ones.
      const after = await uids();
      expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());
      expect(Object.entries(after).every(([name, uid]) => uid !== before[name])).toBe(true);
      await waitFor(async () => (await Promise.all(Object.entries(after).map(async ([name, uid]) => (await redis.hget(stack.keys.pod(name), 'uid')) === uid))).every(Boolean), {
        timeoutMs: 20000,
        what: 'Redis to hold the new pods',
      });
      await waitFor(async () => (await availableCount()) === 5, { timeoutMs: 20000, what: 'the new pods to be allocatable' });
      const { ws_url: wsUrl } = await allocate('CAafter-sim-restart');
      expect(await resetting(stack.ports.gateway, upgrade(new URL(wsUrl).pathname), 'answered')).toMatch(/^HTTP\/1\.1 101 /);
    } finally {
      redis.disconnect();
    }
  }, 60000);
});
