import Redis from 'ioredis';
import { RedisKeys } from '@smart-router/redis-keys';
import { SimCluster, writeKubeconfig } from './sim-cluster';
import { SimulatedVoiceAgents, callOwnerInRedis } from './voice-agents';
import { AGENT_TOKEN_AUDIENCE, PodTokenSource } from './pod-tokens';

/**
 * The simulated cluster as its own process (docker-compose's `sim` service).
 * With ALLOCATION_API_URL and REDIS_URL set it also serves the voice-agent
 * pods' WebSockets on VOICE_AGENTS_PORT. `npm start` embeds it instead.
 */
async function main(): Promise<void> {
  const env = process.env;
  const cluster = await SimCluster.start({
    host: env.SIM_HOST ?? '127.0.0.1',
    port: Number(env.SIM_PORT ?? 8001),
    namespace: env.SIM_NAMESPACE ?? 'voice-system',
    replicas: Number(env.SIM_REPLICAS ?? 5),
    // How long a new or recreated pod takes to become Ready (scale-up time-to-capacity).
    timings: env.SIM_READY_DELAY_MS ? { readyDelayMs: Number(env.SIM_READY_DELAY_MS) } : undefined,
  });
  if (env.SIM_KUBECONFIG) writeKubeconfig(env.SIM_KUBECONFIG, env.SIM_PUBLIC_URL ?? cluster.url, cluster.namespace);
  let agents: SimulatedVoiceAgents | null = null;
  let redis: Redis | null = null;
  if (env.ALLOCATION_API_URL && env.REDIS_URL) {
    const keys = new RedisKeys(env.REDIS_PREFIX);
    const client = new Redis(env.REDIS_URL, { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    redis = client;
    // Each pod's projected ServiceAccount token, asked of this very API over HTTP as a kubelet would (SPEC 10.1).
    const listening = new URL(cluster.url);
    const podTokens = new PodTokenSource({
      apiUrl: listening.hostname === '0.0.0.0' ? `http://127.0.0.1:${listening.port}` : cluster.url,
      namespace: cluster.namespace,
      serviceAccount: cluster.statefulSetName,
      audience: env.AGENT_TOKEN_AUDIENCE ?? AGENT_TOKEN_AUDIENCE,
    });
    agents = new SimulatedVoiceAgents({
      agentToken: (pod) => podTokens.tokenFor(pod),
      host: env.SIM_HOST ?? '127.0.0.1',
      port: Number(env.VOICE_AGENTS_PORT ?? 8090),
      allocationApiUrl: env.ALLOCATION_API_URL,
      podOfCall: callOwnerInRedis(client, keys),
      podExists: (pod) => Boolean(cluster.getPod(pod)),
    });
    await agents.start();
  }
  process.stdout.write(`${JSON.stringify({ level: 'info', service: 'sim', message: 'simulated Kubernetes API listening', url: cluster.url, voiceAgents: Boolean(agents) })}\n`);
  const stop = () => {
    void Promise.all([cluster.stop(), agents?.stop(), redis?.quit().catch(() => undefined)]).finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`sim failed: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  });
}
