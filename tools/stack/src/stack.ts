import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, rmSync, writeFileSync, WriteStream } from 'node:fs';
import { join } from 'node:path';
import Redis from 'ioredis';
import { EnvReader } from '@smart-router/config';
import { Gateway, readEdgeLimits } from '@smart-router/gateway';
import { ACL_APPS, ACL_EXTRA_USERS, AclUser, RedisKeys, redisAclFile } from '@smart-router/redis-keys';
import { AGENT_TOKEN_AUDIENCE, ClusterTimings, PodTokenSource, SimCarrier, SimCluster, SimulatedVoiceAgents, callOwnerInRedis, carrierOptions } from '@smart-router/sim';
import { RedisServer, freePort, waitFor } from '@smart-router/testing';
import { DEFAULT_RESTART_POLICY, ProcessExit, RestartPolicy, Supervisor } from './supervisor';

export const APPS = ['allocation-api', 'webhooks', 'admin', 'pod-watcher', 'reconciler'] as const;
export type AppName = (typeof APPS)[number];
/**
 * The listeners that face clients besides the apps: the simulated cluster
 * (Kubernetes API and voice agents, one process) and the gateway.
 */
export const LISTENERS = ['sim', 'gateway'] as const;
export type ListenerName = (typeof LISTENERS)[number];
/** Every kind of child process the stack supervises. */
export type StackProcess = AppName | ListenerName;

export interface StackPorts {
  gateway: number;
  sim: number;
  voiceAgents: number;
  apps: Record<AppName, number>;
}

/** Every port 0: each server takes a free one (tests, benchmarks). */
export const FREE_PORTS: StackPorts = {
  gateway: 0,
  sim: 0,
  voiceAgents: 0,
  apps: { 'allocation-api': 0, webhooks: 0, admin: 0, 'pod-watcher': 0, reconciler: 0 },
};

/**
 * SPEC 10.1 on a developer's machine: the apps start without tokens (open mode; a
 * token or provider secret that is given is still enforced), and they believe the
 * X-Forwarded-* headers of the gateway, which runs on loopback. `options.env` (or,
 * under `npm start`, the shell) overrides both.
 */
export const LOCAL_ACCESS = { ALLOW_UNAUTHENTICATED: 'true', TRUSTED_PROXIES: '127.0.0.0/8,::1/128' } as const;

/** The local defaults (SPEC section 8). */
export const DEFAULT_PORTS: StackPorts = {
  gateway: 8000,
  sim: 8001,
  voiceAgents: 8090,
  apps: { 'allocation-api': 8080, webhooks: 8081, admin: 8082, 'pod-watcher': 8083, reconciler: 8084 },
};

export interface StackOptions {
  root: string;
  ports?: StackPorts;
  /** Use this Redis instead of starting one. */
  redisUrl?: string;
  redisPort?: number;
  /** Extra environment for every app (e.g. TIER_CONFIG, tokens, short job intervals). */
  env?: Record<string, string>;
  replicas?: number;
  /** Directory for the apps' logs (stdout+stderr, one file per process). */
  logDir: string;
  /** Mirror app logs to this process's stdout. */
  echo?: boolean;
  /** Which apps to run (default: all five). */
  apps?: readonly AppName[];
  /** Simulated cluster timings (tests shorten them). */
  simTimings?: Partial<ClusterTimings>;
  /**
   * Run Redis and the apps in their own process groups (`npm start`): a
   * terminal's Ctrl-C then reaches only this process, which stops them in
   * reverse dependency order instead of all at once.
   */
  ownProcessGroups?: boolean;
  /** How an app that dies on its own is restarted (default DEFAULT_RESTART_POLICY). */
  restartPolicy?: Partial<RestartPolicy>;
  /** Where the stack says what happened to its apps (a crash, a restart); also kept in `events`. */
  log?: (line: string) => void;
  /**
   * Run the simulated cluster (with its voice agents) and the gateway as
   * supervised child processes like the apps (`npm start`, SPEC 10.2): no
   * listener that faces clients runs in the process that restarts the others.
   * Off (the end-to-end tests), they run in this process, where tests reach
   * `sim`, `agents` and `gateway` directly.
   */
  listenersApart?: boolean;
  /**
   * Start Redis with the ACL users of libs/redis-keys (SPEC 10.1) and give
   * each app its own user in REDIS_URL, as compose and k8s do; no default user.
   * Ignored with `redisUrl`.
   */
  redisAcl?: boolean;
}

/**
 * Stop order, the reverse of the dependencies: the gateway first (no new
 * traffic), then the request-serving apps, the watcher, the reconciler (which
 * needs Redis until it has finished its jobs), the simulated cluster, and
 * Redis last.
 */
export const STOP_ORDER: readonly (readonly AppName[])[] = [['admin', 'webhooks', 'allocation-api'], ['pod-watcher'], ['reconciler']];

/**
 * How an app ended. After a graceful SIGTERM Nest re-raises the signal once its
 * shutdown hooks are done, so a clean stop reads `{ code: null, signal: 'SIGTERM' }`
 * (or code 0 when the 9 s shutdown deadline exited).
 */
export type AppExit = ProcessExit;

export function exitedCleanly(exit: AppExit | null): boolean {
  return exit !== null && (exit.code === 0 || (exit.code === null && exit.signal === 'SIGTERM'));
}

interface AppStart {
  instance?: string;
  port?: number;
  env?: Record<string, string>;
  /** Node options before the script (e.g. `--cpu-prof` for the benchmark). */
  nodeArgs?: string[];
}

interface RunningApp {
  app: StackProcess;
  child: ChildProcess;
  log: WriteStream;
  exited: Promise<AppExit>;
}

async function pickPort(port: number): Promise<number> {
  return port === 0 ? freePort() : port;
}

/**
 * The whole system on one machine: redis-server, the simulated Kubernetes
 * API with its voice-agent StatefulSet, the simulated pods' WebSocket
 * endpoint, the five apps as separate processes (built output, as deployed)
 * and the gateway. `npm start` and the end-to-end tests both use it.
 */
export class LocalStack {
  readonly running = new Map<string, RunningApp>();
  private redisServer: RedisServer | null = null;
  private redis: Redis | null = null;
  /** In this process only without `listenersApart`. */
  sim!: SimCluster;
  /** In this process only without `listenersApart`. */
  agents!: SimulatedVoiceAgents;
  /** In this process only without `listenersApart`. */
  gateway!: Gateway;
  /** The simulated carrier (in-process stacks): places Twilio and Plivo calls through the gateway (SPEC 11). */
  carrier!: SimCarrier;
  ports!: StackPorts;
  redisUrl!: string;
  keys!: RedisKeys;
  private instanceCounter = 0;
  /** Instances (and 'redis') in the order they were stopped. */
  readonly stopped: string[] = [];
  /** POD_IDENTITY (lease holder / consumer name) of each running instance. */
  readonly identities = new Map<string, string>();
  /** What the stack said about its apps (crashes, restarts, give-ups), oldest first. */
  readonly events: string[] = [];
  private readonly supervisor: Supervisor;
  private readonly restarts = new Map<string, NodeJS.Timeout>();
  private stopping = false;
  /** Passwords of the ACL users when `redisAcl` is on. */
  private aclPasswords: Partial<Record<AclUser, string>> = {};

  private constructor(private readonly options: StackOptions) {
    this.supervisor = new Supervisor({ ...DEFAULT_RESTART_POLICY, ...options.restartPolicy });
  }

  private say(line: string): void {
    this.events.push(line);
    this.options.log?.(line);
  }

  static async start(options: StackOptions): Promise<LocalStack> {
    const stack = new LocalStack(options);
    try {
      await stack.boot();
    } catch (error) {
      await stack.stop();
      throw error;
    }
    return stack;
  }

  get kubeconfigPath(): string {
    return join(this.options.logDir, 'kubeconfig');
  }

  url(app: AppName | 'gateway'): string {
    return `http://127.0.0.1:${app === 'gateway' ? this.ports.gateway : this.ports.apps[app]}`;
  }

  private async boot(): Promise<void> {
    mkdirSync(this.options.logDir, { recursive: true });
    const requested = this.options.ports ?? DEFAULT_PORTS;
    const apps = {} as Record<AppName, number>;
    for (const app of APPS) apps[app] = await pickPort(requested.apps[app]);
    this.ports = { gateway: await pickPort(requested.gateway), sim: await pickPort(requested.sim), voiceAgents: await pickPort(requested.voiceAgents), apps };

    if (this.options.redisUrl) {
      this.redisUrl = this.options.redisUrl;
    } else if (this.options.redisAcl) {
      for (const user of [...ACL_APPS, ...ACL_EXTRA_USERS]) this.aclPasswords[user] = randomBytes(24).toString('base64url');
      const aclFile = join(this.options.logDir, 'users.acl');
      const passwords = Object.fromEntries(Object.entries(this.aclPasswords).map(([user, password]) => [user, [password]]));
      writeFileSync(aclFile, redisAclFile(this.options.env?.REDIS_PREFIX ?? 'voice:', passwords, { hashed: true }), { mode: 0o600 });
      this.redisServer = await RedisServer.start(this.options.redisPort, [], {
        ownProcessGroup: this.options.ownProcessGroups,
        security: { aclFile, auth: { user: 'ops', password: this.aclPasswords.ops! } },
      });
      this.redisUrl = this.redisUrlFor('ops');
    } else {
      this.redisServer = await RedisServer.start(this.options.redisPort, [], { ownProcessGroup: this.options.ownProcessGroups });
      this.redisUrl = this.redisServer.url;
    }
    this.keys = new RedisKeys(this.options.env?.REDIS_PREFIX);
    // The simulated voice agents' lookups: under ACLs, as their own read-only user.
    this.redis = new Redis(this.options.redisAcl && !this.options.redisUrl ? this.redisUrlFor('voice-agents') : this.redisUrl, { maxRetriesPerRequest: 1, disableClientInfo: true });
    this.redis.on('error', () => undefined);

    if (this.options.listenersApart) {
      await this.startListener('sim');
      await this.startListener('gateway');
    } else {
      await this.startListenersHere();
    }

    const wanted = this.options.apps ?? APPS;
    for (const app of ['reconciler', 'pod-watcher', 'allocation-api', 'webhooks', 'admin'] as AppName[]) if (wanted.includes(app)) await this.startApp(app);
    await Promise.all(wanted.map((app) => this.waitReady(app)));
  }

  private async startListenersHere(): Promise<void> {
    const redis = this.redis!;
    this.sim = await SimCluster.start({ port: this.ports.sim, host: '127.0.0.1', replicas: this.options.replicas ?? 5, kubeconfigPath: this.kubeconfigPath, timings: this.options.simTimings });
    // Each simulated pod calls connected/release with its own ServiceAccount token (SPEC 10.1).
    const podTokens = new PodTokenSource({ apiUrl: this.sim.url, namespace: this.sim.namespace, serviceAccount: this.sim.statefulSetName });
    this.agents = new SimulatedVoiceAgents({
      agentToken: (pod) => podTokens.tokenFor(pod),
      host: '127.0.0.1',
      port: this.ports.voiceAgents,
      allocationApiUrl: this.url('allocation-api'),
      podOfCall: callOwnerInRedis(redis, this.keys),
      podExists: (pod) => Boolean(this.sim.getPod(pod)),
      // SPEC 11: heartbeats on (HEARTBEAT_INTERVAL_MS, 2000 by default here; 0 turns them off).
      heartbeatIntervalMs: heartbeatIntervalOf(this.options.env),
      pods: () => this.sim.listPods().filter((pod) => !pod.metadata.deletionTimestamp).map((pod) => pod.metadata.name),
      podUid: (pod) => this.sim.getPod(pod)?.metadata.uid,
    });
    this.sim.attachAgents(this.agents);
    await this.agents.start();
    // Every in-process listener binds before the (slow) app starts: a port picked free is taken at once.
    this.gateway = new Gateway({
      host: '127.0.0.1',
      port: this.ports.gateway,
      upstreams: {
        allocationApi: this.url('allocation-api'),
        webhooks: this.url('webhooks'),
        admin: this.url('admin'),
        voiceAgents: `http://127.0.0.1:${this.ports.voiceAgents}`,
      },
      // SPEC 10.2: on under `npm start` too; EDGE_* from the shell (or a test's env) tune them.
      limits: readEdgeLimits(new EnvReader(this.options.env ?? {})),
      // SPEC 10.1: the apps sign ws_urls with this secret, so the edge checks them (as nginx's auth_request does).
      mediaAuth: Boolean(this.options.env?.MEDIA_URL_SECRET),
    });
    await this.gateway.start();
    // The simulated carrier (SPEC 11) on the simulated cluster's port, signing with the stack's provider secrets.
    this.carrier = new SimCarrier(carrierOptions(this.options.env ?? {}, this.options.env?.PUBLIC_BASE_URL ?? this.url('gateway')));
    const carrier = this.carrier;
    this.sim.serve((request, response, url) => carrier.handle(request, response, url));
  }

  /** Where the simulated cluster keeps its Leases across its own restarts (`listenersApart`). */
  get simLeaseFile(): string {
    return join(this.options.logDir, 'sim-leases.json');
  }

  /** The environment of a listener's child process: its own wiring over the stack's extra env. */
  private listenerEnv(name: ListenerName): Record<string, string> {
    const base = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...this.options.env };
    if (name === 'gateway') {
      return {
        ...base,
        HOST: '127.0.0.1',
        HTTP_PORT: String(this.ports.gateway),
        UPSTREAM_ALLOCATION_API: this.url('allocation-api'),
        UPSTREAM_WEBHOOKS: this.url('webhooks'),
        UPSTREAM_ADMIN: this.url('admin'),
        UPSTREAM_VOICE_AGENTS: `http://127.0.0.1:${this.ports.voiceAgents}`,
      };
    }
    const readyDelayMs = this.options.simTimings?.readyDelayMs;
    return {
      ...base,
      SIM_HOST: '127.0.0.1',
      SIM_PORT: String(this.ports.sim),
      SIM_NAMESPACE: 'voice-system',
      SIM_REPLICAS: String(this.options.replicas ?? 5),
      SIM_KUBECONFIG: this.kubeconfigPath,
      SIM_LEASE_FILE: this.simLeaseFile,
      ...(readyDelayMs !== undefined ? { SIM_READY_DELAY_MS: String(readyDelayMs) } : {}),
      // The simulated carrier posts provider webhooks where the apps think providers call (SPEC 11).
      PUBLIC_BASE_URL: this.options.env?.PUBLIC_BASE_URL ?? this.url('gateway'),
      ALLOCATION_API_URL: this.url('allocation-api'),
      VOICE_AGENTS_PORT: String(this.ports.voiceAgents),
      HEARTBEAT_INTERVAL_MS: String(heartbeatIntervalOf(this.options.env)),
      // Its own read-only ACL user when Redis runs with ACLs (as in compose), never the operator's.
      REDIS_URL: this.options.redisAcl && !this.options.redisUrl ? this.redisUrlFor('voice-agents') : this.redisUrl,
    };
  }

  /** Starts the simulated cluster or the gateway as a supervised child and waits until it answers. */
  private async startListener(name: ListenerName): Promise<void> {
    // A fresh stack starts a fresh cluster: Leases of an earlier `npm start` are not this one's.
    if (name === 'sim') rmSync(this.simLeaseFile, { force: true });
    this.supervisor.forget(name);
    this.spawnListener(name);
    await this.waitListening(name);
  }

  private spawnListener(name: ListenerName): void {
    this.spawnProcess(name, name, join(this.options.root, 'dist', 'tools', name, 'src', 'main.js'), this.listenerEnv(name), [], () => this.spawnListener(name));
  }

  /** A listener is up once its ports answer HTTP, whatever the status (the gateway's upstreams may not be up yet). */
  async waitListening(name: ListenerName, timeoutMs = 30000): Promise<void> {
    const ports = name === 'sim' ? [this.ports.sim, this.ports.voiceAgents] : [this.ports.gateway];
    for (const port of ports) {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status > 0, { timeoutMs, intervalMs: 100, what: `${name} on port ${port} to answer` });
    }
  }

  appEnv(app: AppName, port: number, extra: Record<string, string> = {}): Record<string, string> {
    this.instanceCounter += 1;
    return {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      REDIS_URL: this.redisUrl,
      HTTP_PORT: String(port),
      HOST: '127.0.0.1',
      KUBECONFIG: this.kubeconfigPath,
      NAMESPACE: 'voice-system',
      POD_LABEL_SELECTOR: 'app=voice-agent',
      VOICE_AGENT_BASE_URL: `ws://127.0.0.1:${this.ports.gateway}`,
      // SPEC 11: the providers' REST APIs (live-call redirects) are the simulated carrier's.
      TWILIO_API_BASE_URL: `http://127.0.0.1:${this.ports.sim}`,
      PLIVO_API_BASE_URL: `http://127.0.0.1:${this.ports.sim}`,
      PUBLIC_BASE_URL: `http://127.0.0.1:${this.ports.gateway}`,
      POD_IDENTITY: `${app}-${this.instanceCounter}`,
      LOG_LEVEL: 'info',
      ...LOCAL_ACCESS,
      // Voice agents authenticate with their pods' tokens (SPEC 10.1).
      ...(app === 'allocation-api' ? { AGENT_TOKEN_AUDIENCE } : {}),
      ...this.options.env,
      // Under ACLs each app connects as itself, whatever the shared environment says.
      ...(this.aclPasswords[app] ? { REDIS_URL: this.redisUrlFor(app) } : {}),
      ...extra,
    };
  }

  /** `redis://<user>:<password>@…` of an ACL user (`redisAcl`); the plain URL otherwise. */
  redisUrlFor(user: AclUser): string {
    const password = this.aclPasswords[user];
    if (!this.redisServer || !password) return this.redisUrl;
    const url = new URL(this.redisServer.url);
    url.username = user;
    url.password = password;
    return url.toString();
  }

  /** Starts an app (or another instance of it under `instance`) as a child process. */
  async startApp(app: AppName, options: AppStart = {}): Promise<string> {
    const instance = options.instance ?? app;
    this.supervisor.forget(instance);
    this.spawnApp(app, instance, options);
    return instance;
  }

  private spawnApp(app: AppName, instance: string, options: AppStart): void {
    const port = options.port ?? this.ports.apps[app];
    const env = this.appEnv(app, port, options.env);
    this.identities.set(instance, env.POD_IDENTITY);
    const script = join(this.options.root, 'dist', 'apps', app, 'src', 'main.js');
    this.spawnProcess(app, instance, script, env, options.nodeArgs ?? [], () => this.spawnApp(app, instance, options));
  }

  /** Runs `script` as a supervised child: logged to `{instance}.log`, restarted by `respawn` when it dies on its own. */
  private spawnProcess(app: StackProcess, instance: string, script: string, env: Record<string, string>, nodeArgs: string[], respawn: () => void): void {
    const log = createWriteStream(join(this.options.logDir, `${instance}.log`), { flags: 'a' });
    // The supervisor's own streams must not end it either (a full disk, a vanished child).
    log.on('error', (error) => this.say(`stack: cannot write ${instance}.log: ${error.message}`));
    const child = spawn(process.execPath, [...nodeArgs, script], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: this.options.ownProcessGroups ?? false,
    });
    // A failed spawn (EAGAIN, ENOMEM) or signal is reported as 'error': said, never thrown at the supervisor.
    child.on('error', (error) => this.say(`stack: ${instance}: ${error.message}`));
    for (const stream of [child.stdout, child.stderr]) {
      stream?.on('error', () => undefined);
      stream?.pipe(log, { end: false });
      if (this.options.echo) stream?.on('data', (chunk: Buffer) => process.stdout.write(chunk));
    }
    const startedAt = Date.now();
    // 'close', not 'exit': the output is all in the log before the log is ended.
    const exited = new Promise<AppExit>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    const running = { app, child, log, exited };
    this.running.set(instance, running);
    void exited.then((exit) => {
      // stopApp removes an instance before signalling it: still listed here means it died on its own.
      if (this.running.get(instance) !== running) return;
      this.running.delete(instance);
      this.onCrash(instance, exit, Date.now() - startedAt, log, respawn);
    });
  }

  /**
   * An app that died on its own comes back after a backoff, like a container
   * under compose or Kubernetes (supervisor.ts). Ctrl-C reaches every app of the
   * terminal's process group as SIGINT: that is the stack stopping, not a crash.
   */
  private onCrash(instance: string, exit: AppExit, uptimeMs: number, log: WriteStream, respawn: () => void): void {
    if (this.stopping || exit.signal === 'SIGINT') {
      log.end();
      return;
    }
    const decision = this.supervisor.exited(instance, exit, uptimeMs);
    this.say(decision.message);
    log.end(`${decision.message}\n`);
    if (!decision.restart) return;
    const timer = setTimeout(() => {
      this.restarts.delete(instance);
      if (this.stopping) return;
      this.say(`stack: starting ${instance} again`);
      respawn();
    }, decision.delayMs);
    this.restarts.set(instance, timer);
  }

  async waitReady(app: AppName, port = this.ports.apps[app], timeoutMs = 30000): Promise<void> {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200, { timeoutMs, intervalMs: 100, what: `${app} on port ${port} to be ready` });
  }

  /** SIGTERM (or another signal) an instance and wait for it to exit. */
  async stopApp(instance: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<AppExit | null> {
    clearTimeout(this.restarts.get(instance));
    this.restarts.delete(instance);
    this.supervisor.forget(instance);
    const running = this.running.get(instance);
    if (!running) return null;
    this.running.delete(instance);
    running.child.kill(signal);
    const exit = await running.exited;
    running.log.end();
    this.stopped.push(instance);
    return exit;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const timer of this.restarts.values()) clearTimeout(timer);
    this.restarts.clear();
    await this.gateway?.stop().catch(() => undefined);
    await this.stopApp('gateway');
    for (const group of STOP_ORDER) {
      const instances = [...this.running.entries()].filter(([, running]) => (group as readonly StackProcess[]).includes(running.app)).map(([instance]) => instance);
      await Promise.all(instances.map((instance) => this.stopApp(instance)));
    }
    await Promise.all([...this.running.entries()].filter(([, running]) => running.app !== 'sim').map(([instance]) => this.stopApp(instance)));
    // The simulated cluster after the apps: the pod-watcher never sees the cluster vanish under it.
    await this.stopApp('sim');
    await this.carrier?.stop().catch(() => undefined);
    await this.agents?.stop().catch(() => undefined);
    await this.sim?.stop().catch(() => undefined);
    await this.redis?.quit().catch(() => undefined);
    if (this.redisServer) this.stopped.push('redis');
    await this.redisServer?.dispose();
  }

  /** Last resort when this process exits without stop() (own process groups would outlive it). */
  killAll(): void {
    for (const { child } of this.running.values()) child.kill('SIGKILL');
    this.redisServerHandle?.killNow();
  }

  get redisServerHandle(): RedisServer | null {
    return this.redisServer;
  }
}

/**
 * How often the simulated voice agents heartbeat (SPEC 11): `HEARTBEAT_INTERVAL_MS` from the
 * stack's env, else off (0). `npm start` (main.ts) turns it on at 2000 unless the shell says
 * otherwise; tests opt in, so a test that restarts allocation-api is not also a liveness test.
 */
export function heartbeatIntervalOf(env: Record<string, string> | undefined): number {
  const value = Number(env?.HEARTBEAT_INTERVAL_MS ?? 0);
  return Number.isFinite(value) && value > 0 ? value : 0;
}
