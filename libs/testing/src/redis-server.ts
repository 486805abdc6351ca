import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TlsFiles } from './test-certificates';
import { waitFor } from './wait-for';

/**
 * TLS and ACL for a test server (SPEC 10.1): TLS only (`--port 0`,
 * `--tls-port`), certificates from TestCertificates; an ACL file; and the
 * credentials this helper uses for its own commands (PING, cluster create).
 */
export interface RedisServerSecurity {
  tls?: TlsFiles & {
    /** Require a client certificate (mutual TLS); default false. */
    authClients?: boolean;
    /** Replicas (and sentinels) talk TLS to the primary. */
    replication?: boolean;
    /** The cluster bus talks TLS. */
    cluster?: boolean;
  };
  aclFile?: string;
  auth?: { user: string; password: string };
}

/** redis-cli's connection flags for a server with these settings. */
export function redisCliFlags(port: number, security: RedisServerSecurity = {}): string[] {
  const flags = ['-p', String(port)];
  const tls = security.tls;
  if (tls) flags.push('--tls', '--cacert', tls.ca, ...(tls.authClients ? ['--cert', tls.clientCert, '--key', tls.clientKey] : []));
  if (security.auth) flags.push('--user', security.auth.user, '--pass', security.auth.password, '--no-auth-warning');
  return flags;
}

/** redis-server's options for these settings (the port is TLS-only when TLS is on). */
export function redisServerSecurityArgs(port: number, security: RedisServerSecurity = {}): string[] {
  const tls = security.tls;
  const args = tls
    ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca,
      '--tls-auth-clients', tls.authClients ? 'yes' : 'no', '--tls-replication', tls.replication ? 'yes' : 'no', '--tls-cluster', tls.cluster ? 'yes' : 'no']
    : ['--port', String(port)];
  if (security.aclFile) args.push('--aclfile', security.aclFile);
  return args;
}

/** Binds `port` (0 = any) on loopback and frees it again; resolves the port bound, or null when taken. */
function tryPort(port: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' || error.code === 'EACCES' ? resolve(null) : reject(error)));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : null));
    });
  });
}

/** The lowest port the kernel hands to outgoing connections and to bind(0). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : 0;
  } catch {
    return 0;
  }
}

/** Ports this process has handed out: free when checked, perhaps not bound yet by their server. */
const handedOut = new Set<number>();

/**
 * The part of [from, to) this process picks from: each Jest worker its own
 * quarter (JEST_WORKER_ID), so two test files running at once never draw the
 * same port between one's check and its server's bind; the whole range outside Jest.
 */
function portSlice(from: number, to: number): { from: number; size: number } {
  const worker = Number(process.env.JEST_WORKER_ID ?? 0);
  if (!Number.isInteger(worker) || worker < 1) return { from, size: to - from };
  const size = Math.floor((to - from) / 4);
  return { from: from + ((worker - 1) % 4) * size, size };
}

/**
 * A loopback port free now, for a server that binds it a little later. Chosen
 * at random below the kernel's ephemeral range where there is room: a port
 * from bind(0) can be taken by any outgoing connection (a load generator, a
 * Redis client) before the server binds it. `companionOffsets`: ports the
 * server binds beside it (a cluster node's bus at +10000), kept free and below
 * that range too.
 */
export async function freePort(companionOffsets: number[] = []): Promise<number> {
  const low = ephemeralLow();
  const reach = Math.max(0, ...companionOffsets);
  if (low - reach > 12000) {
    const { from, size } = portSlice(10000, low - reach);
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const candidate = from + Math.floor(Math.random() * size);
      const wanted = [candidate, ...companionOffsets.map((offset) => candidate + offset)];
      // A port handed out earlier may not be bound yet: never hand it out twice.
      if (wanted.some((port) => handedOut.has(port))) continue;
      const port = await tryPort(candidate);
      if (port === null) continue;
      const companions = await Promise.all(companionOffsets.map((offset) => tryPort(port + offset)));
      if (companions.every((companion) => companion !== null)) {
        for (const taken of wanted) handedOut.add(taken);
        return port;
      }
    }
  }
  if (companionOffsets.length > 0) throw new Error('no free loopback port with its companion ports');
  const port = await tryPort(0);
  if (port === null) throw new Error('no free loopback port');
  return port;
}

export function redisServerBinary(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('redis-server is not installed: run `npm test` (its bootstrap installs it) or apt-get install -y redis-server');
  }
}

/**
 * A real redis-server on a free loopback port, owned by one test file (or the
 * whole run). Nothing is persisted, so `restart()` comes back empty, like a
 * crashed Redis without AOF.
 */
export class RedisServer {
  private process: ChildProcess | null = null;
  private readonly dir = mkdtempSync(join(tmpdir(), 'sr-redis-'));

  private constructor(
    readonly port: number,
    private args: string[],
    private readonly ownProcessGroup: boolean,
    readonly security: RedisServerSecurity,
  ) {}

  /**
   * `args`: extra redis-server options (replication, cluster mode), kept across restarts.
   * `ownProcessGroup`: out of the caller's process group, so a terminal's Ctrl-C
   * reaches only the caller, which then stops Redis last (`npm start`).
   * `security`: TLS and ACL users (RedisServerSecurity).
   */
  static async start(port?: number, args: string[] = [], options: { ownProcessGroup?: boolean; security?: RedisServerSecurity } = {}): Promise<RedisServer> {
    const server = new RedisServer(port ?? (await freePort()), args, options.ownProcessGroup ?? false, options.security ?? {});
    await server.launch();
    return server;
  }

  get directory(): string {
    return this.dir;
  }

  /** Without credentials: add them for a server with ACL users. */
  get url(): string {
    return `${this.security.tls ? 'rediss' : 'redis'}://127.0.0.1:${this.port}`;
  }

  /** redis-cli's flags for this server (TLS, the helper's credentials). */
  get cliFlags(): string[] {
    return redisCliFlags(this.port, this.security);
  }

  private async launch(): Promise<void> {
    this.process = spawn(redisServerBinary(), [
      ...redisServerSecurityArgs(this.port, this.security), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--enable-debug-command', 'local', '--maxmemory-policy', 'noeviction',
      ...this.args,
    ], { stdio: 'ignore', detached: this.ownProcessGroup });
    await waitFor(() => this.ping(), { timeoutMs: 10000, what: `redis-server on port ${this.port}` });
  }

  ping(): boolean {
    try {
      return execFileSync('redis-cli', [...this.cliFlags, 'ping'], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] }).trim() === 'PONG';
    } catch {
      return false;
    }
  }

  /** Synchronous SIGKILL, for process 'exit' handlers. */
  killNow(): void {
    this.process?.kill('SIGKILL');
  }

  /** SIGSTOP: the server keeps its socket but answers nothing (a hung Redis). */
  pause(): void {
    this.process?.kill('SIGSTOP');
  }

  resume(): void {
    this.process?.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    const child = this.process;
    if (!child) return;
    this.process = null;
    child.kill('SIGCONT');
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }

  /** Stops the server and starts an empty one on the same port (with other extra options when given). */
  async restart(args?: string[]): Promise<void> {
    await this.stop();
    if (args) this.args = args;
    await this.launch();
  }

  /** SIGKILL, no restart: a crashed server. */
  async kill(): Promise<void> {
    await this.stop();
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
