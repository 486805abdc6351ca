import { createServer, IncomingHttpHeaders, request as httpRequest, Server } from 'node:http';
import { connect, Socket } from 'node:net';
import { EnvReader } from '@smart-router/config';
import { freePort, waitFor, websocketUpgradeRequest } from '@smart-router/testing';
import { DEFAULT_EDGE_LIMITS, EdgeLimits, MediaSocketBudget, RateLimiter, readEdgeLimits } from './edge-limits';
import { Gateway } from './gateway';

// SPEC 10.2 (issue 19): rate and connection limits at the edge, the same in the
// local gateway as in nginx. 127.0.0.2 is a second client address on loopback.

const RATE_LIMITED = { error: 'rate limited', code: 'RATE_LIMITED' };

interface Answer {
  status: number;
  body: unknown;
}

/** One HTTP request from `localAddress`, on a fresh connection. */
function send(port: number, method: string, path: string, options: { localAddress?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest({ host: '127.0.0.1', port, method, path, localAddress: options.localAddress, headers: { connection: 'close', ...options.headers }, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: compared as text
        }
        resolve({ status: response.statusCode ?? 0, body });
      });
    });
    outgoing.on('error', reject);
    outgoing.end(method === 'POST' ? 'CallSid=CA1' : undefined);
  });
}

interface Upgrade {
  status: number;
  body: unknown;
  socket: Socket;
  closed: Promise<void>;
}

/** A WebSocket handshake; resolves with the status once the answer's head (101) or whole answer (refusal) is in. */
function upgrade(port: number, path: string, localAddress?: string): Promise<Upgrade> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress }, () => socket.write(websocketUpgradeRequest(path)));
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    let text = '';
    const settle = () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const split = text.indexOf('\r\n\r\n');
      const raw = split < 0 ? '' : text.slice(split + 4);
      let body: unknown = raw;
      try {
        body = JSON.parse(raw);
      } catch {
        // an upgraded socket has no body
      }
      resolve({ status, body, socket, closed });
    };
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      if (text.startsWith('HTTP/1.1 101') && text.includes('\r\n\r\n')) settle();
    });
    socket.on('end', settle);
    socket.on('error', reject);
  });
}

/** Stand-ins for the apps (any path: 200 JSON) and the voice agents (accept every upgrade, hold it open). */
class Upstreams {
  readonly seen: IncomingHttpHeaders[] = [];
  readonly upgrades: IncomingHttpHeaders[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly apps: Server = createServer((request, response) => {
    this.seen.push(request.headers);
    request.resume();
    request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, path: request.url })));
  });
  private readonly agents: Server = createServer((_request, response) => response.writeHead(404).end());
  appsPort = 0;
  agentsPort = 0;

  async start(): Promise<this> {
    this.agents.on('upgrade', (request, socket: Socket) => {
      this.upgrades.push(request.headers);
      this.sockets.add(socket);
      socket.on('error', () => socket.destroy());
      // Like a real agent: the caller hanging up ends the socket (an upgraded socket is half-open otherwise).
      socket.on('end', () => socket.end());
      socket.on('close', () => this.sockets.delete(socket));
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    });
    this.appsPort = await freePort();
    this.agentsPort = await freePort();
    await new Promise<void>((resolve) => this.apps.listen(this.appsPort, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => this.agents.listen(this.agentsPort, '127.0.0.1', resolve));
    return this;
  }

  get openAgentSockets(): number {
    return this.sockets.size;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.apps.closeAllConnections();
    await Promise.all([this.apps, this.agents].map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

async function gatewayWith(upstreams: Upstreams, limits: Partial<EdgeLimits>): Promise<{ gateway: Gateway; port: number }> {
  const app = `http://127.0.0.1:${upstreams.appsPort}`;
  const gateway = new Gateway({
    host: '127.0.0.1',
    port: 0,
    upstreams: { allocationApi: app, webhooks: app, admin: app, voiceAgents: `http://127.0.0.1:${upstreams.agentsPort}` },
    limits: { ...DEFAULT_EDGE_LIMITS, ...limits },
  });
  return { gateway, port: await gateway.start() };
}

describe('edge limit settings', () => {
  it('default to what no legitimate burst reaches, and name a bad variable', () => {
    expect(readEdgeLimits(new EnvReader({}))).toEqual(DEFAULT_EDGE_LIMITS);
    expect(DEFAULT_EDGE_LIMITS.ratePerSecond).toBeGreaterThanOrEqual(200);
    expect(DEFAULT_EDGE_LIMITS.rateBurst).toBeGreaterThanOrEqual(500);
    expect(DEFAULT_EDGE_LIMITS.mediaSocketsPerAddress).toBeGreaterThanOrEqual(200);
    expect(DEFAULT_EDGE_LIMITS.mediaSocketsTotal).toBeGreaterThan(DEFAULT_EDGE_LIMITS.mediaSocketsPerAddress);
    expect(readEdgeLimits(new EnvReader({ EDGE_RATE_PER_SECOND: '50', EDGE_RATE_BURST: '0', EDGE_MEDIA_SOCKETS_PER_ADDRESS: '7', EDGE_MEDIA_SOCKETS_TOTAL: '9' }))).toEqual({
      ratePerSecond: 50,
      rateBurst: 0,
      mediaSocketsPerAddress: 7,
      mediaSocketsTotal: 9,
    });
    expect(() => readEdgeLimits(new EnvReader({ EDGE_RATE_BURST: 'lots' }))).toThrow(/EDGE_RATE_BURST/);
    expect(() => readEdgeLimits(new EnvReader({ EDGE_RATE_PER_SECOND: '0' }))).toThrow(/EDGE_RATE_PER_SECOND/);
    expect(() => readEdgeLimits(new EnvReader({ EDGE_MEDIA_SOCKETS_TOTAL: '-1' }))).toThrow(/EDGE_MEDIA_SOCKETS_TOTAL/);
  });
});

describe('RateLimiter (token bucket per address)', () => {
  it('admits burst + 1 at once, then one per 1/rate seconds, per address', () => {
    let now = 0;
    const limiter = new RateLimiter(10, 4, () => now);
    expect(Array.from({ length: 6 }, () => limiter.admit('a'))).toEqual([true, true, true, true, true, false]);
    expect(limiter.admit('b')).toBe(true);
    now += 100; // one token back at 10/s
    expect([limiter.admit('a'), limiter.admit('a')]).toEqual([true, false]);
    now += 60_000; // refilled, never beyond the burst
    expect(Array.from({ length: 6 }, () => limiter.admit('a'))).toEqual([true, true, true, true, true, false]);
  });

  it('tracks a bounded number of addresses, forgetting the least recently seen', () => {
    let now = 0;
    const limiter = new RateLimiter(1, 0, () => now, 3);
    for (const address of ['a', 'b', 'c']) expect(limiter.admit(address)).toBe(true);
    expect(limiter.admit('a')).toBe(false); // a is now the most recently seen
    for (let i = 0; i < 1000; i += 1) limiter.admit(`spoofed-${i}`);
    expect(limiter.tracked).toBe(3);
    now += 1;
    expect(limiter.admit('spoofed-999')).toBe(false);
  });
});

describe('MediaSocketBudget', () => {
  it('caps sockets per address and in all, and gives each back once', () => {
    const budget = new MediaSocketBudget({ mediaSocketsPerAddress: 2, mediaSocketsTotal: 3 });
    const first = budget.open('a');
    expect(first).not.toBeNull();
    expect(budget.open('a')).not.toBeNull();
    expect(budget.open('a')).toBeNull();
    expect(budget.open('b')).not.toBeNull();
    expect(budget.open('c')).toBeNull();
    first?.();
    first?.();
    expect(budget.openSockets).toBe(2);
    expect(budget.open('c')).not.toBeNull();
    expect(budget.open('c')).toBeNull();
  });
});

describe('the gateway at the edge', () => {
  let upstreams: Upstreams;
  beforeEach(async () => {
    upstreams = await new Upstreams().start();
  });
  afterEach(async () => {
    await upstreams.stop();
  });

  it('answers a burst above the limit with 429 RATE_LIMITED JSON, a burst within it not, each address on its own', async () => {
    // One token a second: the test's own pace cannot refill the bucket meaningfully.
    const { gateway, port } = await gatewayWith(upstreams, { ratePerSecond: 1, rateBurst: 29 });
    try {
      const started = Date.now();
      const within = await Promise.all(Array.from({ length: 30 }, (_, i) => send(port, 'POST', i % 2 ? '/api/v1/allocate' : '/api/v1/twilio/allocate')));
      expect(within.map((answer) => answer.status)).toEqual(Array(30).fill(200));
      const above = await Promise.all(Array.from({ length: 20 }, (_, i) => send(port, 'POST', i % 2 ? '/api/v1/release' : '/api/v1/plivo/allocate')));
      const refused = above.filter((answer) => answer.status === 429);
      // Only a token refilled while the test ran may let one through.
      expect(refused.length).toBeGreaterThanOrEqual(20 - Math.ceil((Date.now() - started) / 1000));
      for (const answer of refused) expect(answer.body).toEqual(RATE_LIMITED);
      // A refused request never reaches the app.
      expect(upstreams.seen.length).toBe(30 + (20 - refused.length));
      // Another address has its own bucket.
      expect((await send(port, 'POST', '/api/v1/allocate', { localAddress: '127.0.0.2' })).status).toBe(200);
      // A refused socket handshake gets the same answer.
      const socket = await upgrade(port, '/ws/pod/voice-agent-0/CA1');
      expect(socket).toMatchObject({ status: 429, body: RATE_LIMITED });
      await socket.closed;
      expect(upstreams.upgrades.length).toBe(0);
    } finally {
      await gateway.stop();
    }
  });

  it('overwrites forwarded headers with what it saw, on requests and upgrades', async () => {
    const { gateway, port } = await gatewayWith(upstreams, {});
    const spoofed = { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', 'x-forwarded-port': '443', 'x-real-ip': '203.0.113.9', forwarded: 'for=203.0.113.9;proto=https' };
    try {
      expect((await send(port, 'POST', '/api/v1/twilio/allocate', { localAddress: '127.0.0.2', headers: { ...spoofed, host: 'router.test:8000' } })).status).toBe(200);
      expect(upstreams.seen[0]).toMatchObject({ 'x-forwarded-for': '127.0.0.2', 'x-real-ip': '127.0.0.2', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'router.test:8000' });
      expect(upstreams.seen[0].forwarded).toBeUndefined();
      expect(upstreams.seen[0]['x-forwarded-port']).toBeUndefined();

      const socket = await new Promise<Socket>((resolve) => {
        const raw = connect({ port, host: '127.0.0.1' }, () => {
          const extra = Object.entries(spoofed).map(([name, value]) => `${name}: ${value}\r\n`).join('');
          raw.write(websocketUpgradeRequest('/ws/pod/voice-agent-0/CA1').replace('\r\n\r\n', `\r\n${extra}\r\n`));
          resolve(raw);
        });
      });
      await waitFor(() => upstreams.upgrades.length === 1, { what: 'the upgrade to reach the agent' });
      expect(upstreams.upgrades[0]).toMatchObject({ 'x-forwarded-for': '127.0.0.1', 'x-real-ip': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'x' });
      expect(upstreams.upgrades[0].forwarded).toBeUndefined();
      socket.destroy();
    } finally {
      await gateway.stop();
    }
  });

  it('caps open media sockets per address, and frees a place when one closes', async () => {
    const { gateway, port } = await gatewayWith(upstreams, { mediaSocketsPerAddress: 3, mediaSocketsTotal: 100 });
    const open: Upgrade[] = [];
    try {
      for (let i = 0; i < 3; i += 1) open.push(await upgrade(port, `/ws/pod/voice-agent-${i}/CA${i}`));
      expect(open.map((socket) => socket.status)).toEqual([101, 101, 101]);
      const refused = await upgrade(port, '/ws/pod/voice-agent-3/CA3');
      expect(refused).toMatchObject({ status: 429, body: RATE_LIMITED });
      await refused.closed;
      expect(upstreams.upgrades.length).toBe(3);
      // Another address is not held back by this one.
      const other = await upgrade(port, '/ws/pod/voice-agent-3/CA3', '127.0.0.2');
      expect(other.status).toBe(101);
      open.push(other);
      // A closed socket gives its place back.
      open[0].socket.destroy();
      await waitFor(() => gateway.mediaSockets.openSockets === 3, { what: 'the closed socket to be counted out' });
      const again = await upgrade(port, '/ws/pod/voice-agent-0/CA9');
      expect(again.status).toBe(101);
      open.push(again);
    } finally {
      for (const socket of open) socket.socket.destroy();
      await gateway.stop();
    }
  });

  it('survives clients that reset right after a refused or an accepted media handshake, and counts their places back', async () => {
    const { gateway, port } = await gatewayWith(upstreams, { mediaSocketsPerAddress: 2, mediaSocketsTotal: 100 });
    try {
      const resets = Array.from({ length: 20 }, (_, i) =>
        new Promise<void>((resolve) => {
          const socket = connect({ port, host: '127.0.0.1' }, () => {
            socket.write(websocketUpgradeRequest(`/ws/pod/voice-agent-0/CAreset${i}`));
            // Some before any answer, some after it (refused or upgraded).
            if (i % 2) socket.resetAndDestroy();
            else socket.once('data', () => socket.resetAndDestroy());
          });
          socket.on('error', () => undefined);
          socket.on('close', () => resolve());
        }),
      );
      await Promise.all(resets);
      await waitFor(() => gateway.mediaSockets.openSockets === 0, { what: 'every reset socket to be counted out' });
      const after = await upgrade(port, '/ws/pod/voice-agent-1/CA1');
      expect(after.status).toBe(101);
      after.socket.destroy();
      expect((await send(port, 'POST', '/api/v1/allocate')).status).toBe(200);
    } finally {
      await gateway.stop();
    }
  });

  it('answers webhooks and the API while the media socket budget is full', async () => {
    const { gateway, port } = await gatewayWith(upstreams, { mediaSocketsPerAddress: 200, mediaSocketsTotal: 4 });
    const open: Upgrade[] = [];
    try {
      for (let i = 0; i < 4; i += 1) open.push(await upgrade(port, `/ws/pod/voice-agent-${i}/CA${i}`, i % 2 ? '127.0.0.2' : '127.0.0.1'));
      expect(open.map((socket) => socket.status)).toEqual([101, 101, 101, 101]);
      const refused = await upgrade(port, '/ws/pod/voice-agent-5/CA5', '127.0.0.3');
      expect(refused).toMatchObject({ status: 429, body: RATE_LIMITED });
      expect(upstreams.openAgentSockets).toBe(4);
      expect(await send(port, 'POST', '/api/v1/twilio/allocate?merchant_id=')).toMatchObject({ status: 200, body: { ok: true } });
      expect(await send(port, 'POST', '/agent/voice/breeze-buddy/plivo/callback/t1', { localAddress: '127.0.0.3' })).toMatchObject({ status: 200 });
      expect(await send(port, 'POST', '/api/v1/allocate')).toMatchObject({ status: 200 });
    } finally {
      for (const socket of open) socket.socket.destroy();
      await gateway.stop();
    }
  });
});
