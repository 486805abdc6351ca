import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait-for';

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

/**
 * A loopback port free now, for a server that binds it a little later. Chosen
 * at random below the kernel's ephemeral range where there is room: a port
 * from bind(0) can be taken by any outgoing connection (a load generator, a
 * Redis client) before the server binds it.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  if (low > 12000) {
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const port = await tryPort(10000 + Math.floor(Math.random() * (low - 10000)));
      if (port !== null) return port;
    }
  }
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

  private constructor(readonly port: number, private args: string[], private readonly ownProcessGroup: boolean) {}

  /**
   * `args`: extra redis-server options (replication, cluster mode), kept across restarts.
   * `ownProcessGroup`: out of the caller's process group, so a terminal's Ctrl-C
   * reaches only the caller, which then stops Redis last (`npm start`).
   */
  static async start(port?: number, args: string[] = [], options: { ownProcessGroup?: boolean } = {}): Promise<RedisServer> {
    const server = new RedisServer(port ?? (await freePort()), args, options.ownProcessGroup ?? false);
    await server.launch();
    return server;
  }

  get directory(): string {
    return this.dir;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private async launch(): Promise<void> {
    this.process = spawn(redisServerBinary(), [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--enable-debug-command', 'local', '--maxmemory-policy', 'noeviction',
      ...this.args,
    ], { stdio: 'ignore', detached: this.ownProcessGroup });
    await waitFor(() => this.ping(), { timeoutMs: 10000, what: `redis-server on port ${this.port}` });
  }

  ping(): boolean {
    try {
      return execFileSync('redis-cli', ['-p', String(this.port), 'ping'], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] }).trim() === 'PONG';
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
