import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { redactUrl } from '@smart-router/config';
import { shellOverrides } from './shell-env';
import { startRehomeEnv } from './start-env';
import { DEFAULT_PORTS, LOCAL_ACCESS, LocalStack } from './stack';

/**
 * `npm start`: the whole stack on the default ports until Ctrl-C.
 * REDIS_URL set = use that Redis; otherwise a local redis-server is started
 * (port REDIS_PORT, default 6379, data under .local/). REDIS_SENTINELS (+
 * REDIS_SENTINEL_MASTER) or REDIS_CLUSTER_NODES, and REDIS_REPLICA_ACKS, are
 * passed to the apps as set in the shell.
 */
/**
 * The connect deadline under `npm start` (SPEC 9.2); a value in the shell wins
 * (0 turns it off). Apps default to 0 elsewhere.
 */
const START_CONNECT_TIMEOUT_SECONDS = '20';

/**
 * Signed media URLs are on under `npm start` (SPEC 10.1) with a secret made for
 * this run: ws_urls issued before a restart stop working, as after a rotation.
 * A MEDIA_URL_SECRET given in the shell is used instead.
 */
const startMediaUrlSecret = () => randomBytes(32).toString('base64url');

/**
 * The simulated voice agents heartbeat every 2 s under `npm start` (SPEC 11),
 * so the reconciler's liveness job watches them; a value in the shell wins
 * (0 turns heartbeats off). The stack run by tests leaves them off unless asked.
 */
const START_HEARTBEAT_INTERVAL_MS = '2000';

async function main(): Promise<void> {
  // A closed terminal or pipe (EPIPE) must not end the supervisor and leave its children unsupervised.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  const connectTimeout = process.env.CONNECT_TIMEOUT_SECONDS || START_CONNECT_TIMEOUT_SECONDS;
  const root = join(__dirname, '..', '..', '..', '..');
  const stackEnv: Record<string, string> = { CONNECT_TIMEOUT_SECONDS: connectTimeout, MEDIA_URL_SECRET: startMediaUrlSecret(), HEARTBEAT_INTERVAL_MS: START_HEARTBEAT_INTERVAL_MS, ...startRehomeEnv(), ...shellOverrides(process.env) };
  const logDir = join(root, '.local');
  const stack = await LocalStack.start({
    root,
    ports: DEFAULT_PORTS,
    redisUrl: process.env.REDIS_URL || undefined,
    redisPort: Number(process.env.REDIS_PORT ?? 6379),
    logDir,
    // A crashed app is restarted with backoff (supervisor.ts); these lines say which and how.
    log: (line) => process.stdout.write(`${line}\n`),
    // New pods of a scale-up become Ready after SIM_READY_DELAY_MS (the sim's default otherwise).
    simTimings: process.env.SIM_READY_DELAY_MS ? { readyDelayMs: Number(process.env.SIM_READY_DELAY_MS) } : undefined,
    // npm start's own default first; any value from the shell wins (SPEC section 8).
    env: stackEnv,
    ownProcessGroups: true,
    // SPEC 10.2: the simulated cluster and the gateway run as supervised children too; this process listens on nothing.
    listenersApart: true,
  });
  const base = stack.url('gateway');
  const access = { ...LOCAL_ACCESS, ...shellOverrides(process.env) };
  const open = /^(1|true|yes|on)$/i.test(access.ALLOW_UNAUTHENTICATED);
  process.stdout.write(
    [
      '',
      'Smart Router is running.',
      `  base URL (gateway)     ${base}`,
      `  allocation-api         ${stack.url('allocation-api')}`,
      `  webhooks               ${stack.url('webhooks')}`,
      `  admin                  ${stack.url('admin')}`,
      `  dashboard              ${base}/dashboard/`,
      `  pod-watcher            ${stack.url('pod-watcher')}`,
      `  reconciler             ${stack.url('reconciler')}`,
      `  simulated Kubernetes   http://127.0.0.1:${stack.ports.sim}   (kubectl --kubeconfig .local/kubeconfig get pods)`,
      `  redis                  ${redactUrl(stack.redisUrl)}`,
      `  logs                   .local/*.log`,
      `  media URLs             signed (MEDIA_URL_SECRET ${process.env.MEDIA_URL_SECRET ? 'from the shell' : 'random for this run'}); the gateway checks each /ws/pod upgrade`,
      `  re-homing              ${/^(1|true|yes|on)$/i.test(stackEnv.REHOME_ENABLED) ? 'on (REHOME_ENABLED): a frozen or crashed agent\'s carrier calls move to a new pod; REST credentials random for this run' : 'off (REHOME_ENABLED from the shell)'}`,
      '',
      open
        ? `ALLOW_UNAUTHENTICATED=${access.ALLOW_UNAUTHENTICATED}: apps start without tokens and serve routes whose credential is unset to anyone (local only; each app logs which). Tokens or provider secrets set in the shell are enforced.`
        : `ALLOW_UNAUTHENTICATED=${access.ALLOW_UNAUTHENTICATED}: every app needs its credentials (API_TOKENS or AGENT_TOKEN_AUDIENCE, ADMIN_*_TOKENS, provider secrets) or it refuses to start.`,
      `TRUSTED_PROXIES=${access.TRUSTED_PROXIES}: forwarded headers are believed only from these addresses (the gateway).`,
      '',
      'Try:',
      `  curl -s -X POST ${base}/api/v1/allocate -H 'Content-Type: application/json' -d '{"call_sid":"test-001"}'`,
      connectTimeout === '0'
        ? '  # CONNECT_TIMEOUT_SECONDS=0: the call keeps its pod until released'
        : `  # released after ${connectTimeout} s (CONNECT_TIMEOUT_SECONDS, reason connect_timeout) unless connected:`,
      `  curl -s -X POST ${base}/api/v1/connected -H 'Content-Type: application/json' -d '{"call_sid":"test-001"}'`,
      `  curl -s ${base}/api/v1/status`,
      `  curl -s -X POST ${base}/api/v1/release -H 'Content-Type: application/json' -d '{"call_sid":"test-001"}'`,
      '',
      'A phone call through the simulated carrier (Twilio or Plivo, signed when their tokens are set; README "The simulated carrier"):',
      `  curl -s -X POST http://127.0.0.1:${stack.ports.sim}/sim/carrier/calls -H 'Content-Type: application/json' -d '{"provider":"twilio"}'`,
      `  curl -s http://127.0.0.1:${stack.ports.sim}/sim/carrier/calls/{call_sid}      # DELETE hangs up`,
      '',
      'The fleet autoscaler is disabled; to enable it (keep 2 free pods, 3 to 10 replicas):',
      `  curl -s -X PUT ${base}/api/v1/admin/autoscaler -H 'Content-Type: application/json' -d '{"enabled":true,"min_replicas":3,"max_replicas":10,"buffer":2,"scale_down_delay_seconds":60}'`,
      `  curl -s ${base}/api/v1/admin/fleet`,
      '',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('stopping...\n');
    void stack.stop().finally(() => process.exit(0));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  // Redis and the apps run in their own process groups: never leave them behind.
  process.on('exit', () => stack.killAll());
}

main().catch((error: unknown) => {
  process.stderr.write(`npm start failed: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
