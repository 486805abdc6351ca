import { ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisServer, RedisServerSecurity, freePort, redisCliFlags } from './redis-server';
import type { TlsFiles } from './test-certificates';
import { waitFor } from './wait-for';

/** `flags`: redis-cli's connection flags (RedisServer.cliFlags, redisCliFlags). */
function redisCli(flags: string[], ...args: string[]): string {
  return execFileSync('redis-cli', [...flags, ...args], { encoding: 'utf8', timeout: 3000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
}

/** The same, without blocking the event loop (the failover test drives load meanwhile). */
async function redisCliAsync(flags: string[], ...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)('redis-cli', [...flags, ...args], { encoding: 'utf8', timeout: 3000 });
  return stdout.trim();
}

/** Options that make a restarted, empty node catch up at once (diskless, no 5 s delay). */
const FAST_SYNC = ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0', '--repl-ping-replica-period', '1'];

/** `redis-sentinel` when installed as its own binary (Debian), else `redis-server --sentinel`. */
export function sentinelCommand(): [string, string[]] {
  if (spawnSync('sh', ['-c', 'command -v redis-sentinel'], { stdio: 'ignore' }).status === 0) return ['redis-sentinel', []];
  return ['redis-server', ['--sentinel']];
}

/**
 * A primary with replicas watched by real redis-sentinel processes, all on
 * free loopback ports. Timings are short so a failover takes ~1-2 s.
 */
export class SentinelGroup {
  readonly masterName = 'smart-router';
  private readonly sentinelProcesses: ChildProcess[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), 'sr-sentinel-'));

  private constructor(
    readonly nodes: RedisServer[],
    readonly sentinelPorts: number[],
    readonly downAfterMs: number,
    /** TLS of every node and sentinel (replication and the sentinels' links too). */
    readonly security: RedisServerSecurity,
  ) {}

  /** `tls`: every node and sentinel speaks TLS only (SPEC 10.1). */
  static async start(options: { replicas?: number; sentinels?: number; downAfterMs?: number; failoverTimeoutMs?: number; tls?: TlsFiles } = {}): Promise<SentinelGroup> {
    const downAfterMs = options.downAfterMs ?? 1000;
    const security: RedisServerSecurity = options.tls ? { tls: { ...options.tls, replication: true } } : {};
    const primary = await RedisServer.start(undefined, FAST_SYNC, { security });
    const nodes = [primary];
    const sentinelPorts: number[] = [];
    try {
      for (let i = 0; i < (options.replicas ?? 2); i += 1) {
        nodes.push(await RedisServer.start(undefined, [...FAST_SYNC, '--replicaof', '127.0.0.1', String(primary.port)], { security }));
      }
      for (let i = 0; i < (options.sentinels ?? 3); i += 1) sentinelPorts.push(await freePort());
      const group = new SentinelGroup(nodes, sentinelPorts, downAfterMs, security);
      await waitFor(async () => (await group.linkedReplicas(primary.port)) === nodes.length - 1, { timeoutMs: 10000, what: 'replicas linked to the primary' });
      for (const port of sentinelPorts) group.launchSentinel(port, primary.port, downAfterMs, options.failoverTimeoutMs ?? 3000);
      await waitFor(async () => (await Promise.all(sentinelPorts.map((port) => group.sentinelKnows(port, nodes.length - 1, sentinelPorts.length - 1)))).every(Boolean), {
        timeoutMs: 15000,
        what: 'sentinels seeing every replica and each other',
      });
      return group;
    } catch (error) {
      await Promise.all(nodes.map((node) => node.dispose()));
      throw error;
    }
  }

  /** `host:port,…` for REDIS_SENTINELS. */
  get sentinelsSetting(): string {
    return this.sentinelPorts.map((port) => `127.0.0.1:${port}`).join(',');
  }

  private launchSentinel(port: number, primaryPort: number, downAfterMs: number, failoverTimeoutMs: number): void {
    const file = join(this.dir, `sentinel-${port}.conf`);
    const tls = this.security.tls;
    writeFileSync(file, [
      ...(tls
        ? ['port 0', `tls-port ${port}`, `tls-cert-file ${tls.cert}`, `tls-key-file ${tls.key}`, `tls-ca-cert-file ${tls.ca}`, 'tls-auth-clients no', 'tls-replication yes']
        : [`port ${port}`]),
      'bind 127.0.0.1',
      `dir ${this.dir}`,
      `sentinel monitor ${this.masterName} 127.0.0.1 ${primaryPort} 2`,
      `sentinel down-after-milliseconds ${this.masterName} ${downAfterMs}`,
      `sentinel failover-timeout ${this.masterName} ${failoverTimeoutMs}`,
      `sentinel parallel-syncs ${this.masterName} 2`,
      '',
    ].join('\n'));
    const [command, args] = sentinelCommand();
    this.sentinelProcesses.push(spawn(command, [file, ...args], { stdio: 'ignore' }));
  }

  private async linkedReplicas(primaryPort: number): Promise<number> {
    try {
      const info = await redisCliAsync(this.cli(primaryPort), 'info', 'replication');
      return [...info.matchAll(/^slave\d+:.*state=online/gm)].length;
    } catch {
      return 0;
    }
  }

  private async sentinelKnows(port: number, replicas: number, otherSentinels: number): Promise<boolean> {
    try {
      const master = (await redisCliAsync(this.cli(port), 'sentinel', 'master', this.masterName)).split('\n');
      const field = (name: string) => Number(master[master.indexOf(name) + 1]);
      return field('num-slaves') >= replicas && field('num-other-sentinels') >= otherSentinels;
    } catch {
      return false;
    }
  }

  /** The primary's port as the sentinels' majority reports it. */
  async primaryPort(): Promise<number | null> {
    const votes = new Map<number, number>();
    const answers = await Promise.all(this.sentinelPorts.map((port) =>
      redisCliAsync(this.cli(port), 'sentinel', 'get-master-addr-by-name', this.masterName).then((text) => Number(text.split('\n')[1]), () => null)));
    // a sentinel that does not answer has no vote
    for (const port of answers) if (port !== null) votes.set(port, (votes.get(port) ?? 0) + 1);
    for (const [port, count] of votes) if (count > this.sentinelPorts.length / 2) return port;
    return null;
  }

  /** redis-cli's flags for a node or sentinel of the group. */
  private cli(port: number): string[] {
    return redisCliFlags(port, this.security);
  }

  node(port: number): RedisServer {
    const node = this.nodes.find((candidate) => candidate.port === port);
    if (!node) throw new Error(`no node on port ${port}`);
    return node;
  }

  /**
   * SIGKILLs the primary and waits for the sentinels to promote a replica;
   * then restarts the killed node empty as a replica of the new primary (a
   * crashed primary without persistence must not come back as a primary).
   * Returns the milliseconds from the kill until the majority named the new primary.
   *
   * `replicaStallMs`: first freeze every replica (SIGSTOP) and drop its link,
   * for that long, while the primary keeps taking writes; then kill the
   * primary and thaw them: the replicas lag behind at the moment of the
   * crash, as across a slow or broken network.
   * The stall is the injected fault's length, not a wait for a condition.
   */
  async killPrimary(options: { timeoutMs?: number; replicaStallMs?: number; beforeKill?: () => void } = {}): Promise<{ killedPort: number; newPrimaryPort: number; killedAt: number; switchMs: number }> {
    const killedPort = await this.primaryPort();
    if (killedPort === null) throw new Error('no primary agreed by the sentinels');
    const replicas = this.nodes.filter((node) => node.port !== killedPort);
    if (options.replicaStallMs) {
      for (const replica of replicas) replica.pause();
      // Frozen replicas alone would still find every byte in their loopback
      // socket buffers on waking; dropping the links makes the primary keep
      // the stall's writes to itself (frozen, the replicas cannot reconnect).
      await redisCliAsync(this.cli(killedPort), 'client', 'kill', 'type', 'replica');
      await new Promise((resolve) => setTimeout(resolve, options.replicaStallMs));
    }
    options.beforeKill?.();
    const killedAt = Date.now();
    await this.node(killedPort).kill();
    for (const replica of replicas) replica.resume();
    const newPrimaryPort = await waitFor(async () => {
      const port = await this.primaryPort();
      return port !== null && port !== killedPort ? port : null;
    }, { timeoutMs: options.timeoutMs ?? 30000, intervalMs: 50, what: 'the sentinels to promote a replica' });
    const switchMs = Date.now() - killedAt;
    await this.node(killedPort).restart([...FAST_SYNC, '--replicaof', '127.0.0.1', String(newPrimaryPort)]);
    return { killedPort, newPrimaryPort, killedAt, switchMs };
  }

  /** Waits until every other node replicates the current primary and is in sync. */
  async waitSettled(timeoutMs = 20000): Promise<void> {
    await waitFor(async () => {
      const primary = await this.primaryPort();
      return primary !== null && (await this.linkedReplicas(primary)) === this.nodes.length - 1;
    }, { timeoutMs, what: 'every replica online with the new primary' });
  }

  async dispose(): Promise<void> {
    await Promise.all(this.sentinelProcesses.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    })));
    await Promise.all(this.nodes.map((node) => node.dispose()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A real Redis Cluster of `primaries` primaries (no replicas) on free loopback ports. */
export class RedisClusterNodes {
  private constructor(readonly nodes: RedisServer[]) {}

  /** `tls`: the nodes, their bus and replication speak TLS only (SPEC 10.1). */
  static async start(primaries = 3, options: { tls?: TlsFiles } = {}): Promise<RedisClusterNodes> {
    const nodes: RedisServer[] = [];
    const security: RedisServerSecurity = options.tls ? { tls: { ...options.tls, replication: true, cluster: true } } : {};
    try {
      for (let i = 0; i < primaries; i += 1) {
        // A cluster node also binds its bus port, port + 10000.
        nodes.push(await RedisServer.start(await freePort([10000]), ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'], { security }));
      }
      execFileSync('redis-cli', [...nodes[0].cliFlags.slice(2), '--cluster', 'create', ...nodes.map((node) => `127.0.0.1:${node.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
        stdio: 'ignore',
        timeout: 20000,
      });
      const cluster = new RedisClusterNodes(nodes);
      await waitFor(() => nodes.every((node) => redisCli(node.cliFlags, 'cluster', 'info').includes('cluster_state:ok')), {
        timeoutMs: 15000,
        what: 'cluster_state:ok on every node',
      });
      return cluster;
    } catch (error) {
      await Promise.all(nodes.map((node) => node.dispose()));
      throw error;
    }
  }

  /** `host:port,…` for REDIS_CLUSTER_NODES. */
  get nodesSetting(): string {
    return this.nodes.map((node) => `127.0.0.1:${node.port}`).join(',');
  }

  /** The port of the primary that owns the slot of `key`. */
  ownerOf(key: string): number {
    const slot = Number(redisCli(this.nodes[0].cliFlags, 'cluster', 'keyslot', key));
    for (const line of redisCli(this.nodes[0].cliFlags, 'cluster', 'nodes').split('\n')) {
      const fields = line.split(' ');
      const port = Number(fields[1].split(':')[1].split('@')[0]);
      for (const range of fields.slice(8)) {
        const [from, to] = range.split('-').map(Number);
        if (slot >= from && slot <= (to ?? from)) return port;
      }
    }
    throw new Error(`no node owns slot ${slot}`);
  }

  async dispose(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.dispose()));
  }
}
