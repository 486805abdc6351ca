import type Redis from 'ioredis';
import { EnvReader, readRedisSettings } from '@smart-router/config';
import { RedisKeys } from '@smart-router/redis-keys';
import { createRedis } from '@smart-router/redis-scripts';
import { SimCluster, writeKubeconfig } from './sim-cluster';
import { SimulatedVoiceAgents, callOwnerInRedis } from './voice-agents';
import { AGENT_TOKEN_AUDIENCE, PodTokenSource } from './pod-tokens';
import { SimCarrier, carrierOptions } from './carrier';

/**
 * The simulated cluster as its own process (docker-compose's `sim` service,
 * and a supervised child of `npm start`). With ALLOCATION_API_URL and
 * REDIS_URL set it also serves the voice-agent pods' WebSockets on
 * VOICE_AGENTS_PORT.
 *
 * Its state lives in this process. Started again after a crash, it starts
 * afresh: the StatefulSet at SIM_REPLICAS with pods of new UIDs (the router
 * handles them as replaced pods: calls on the old ones are released), and
 * resourceVersions above every earlier one (time-based), so a watch resumed
 * from an old one gets 410 and relists. Only the Leases survive, in
 * SIM_LEASE_FILE when set, so leader terms never go back.
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
    // Microseconds since the epoch: above anything an earlier run (at most one change per microsecond) handed out.
    firstResourceVersion: Date.now() * 1000,
    leaseFile: env.SIM_LEASE_FILE || undefined,
  });
  if (env.SIM_KUBECONFIG) writeKubeconfig(env.SIM_KUBECONFIG, env.SIM_PUBLIC_URL ?? cluster.url, cluster.namespace);
  let agents: SimulatedVoiceAgents | null = null;
  let redis: Redis | null = null;
  if (env.ALLOCATION_API_URL && env.REDIS_URL) {
    // The apps' Redis settings: TLS (REDIS_TLS_CA_FILE) and its own ACL user
    // (REDIS_USERNAME, REDIS_PASSWORD_FILE) in compose, as every app has.
    const settings = readRedisSettings(new EnvReader(env));
    const keys = new RedisKeys(settings.prefix);
    const client = createRedis(settings, 'request', 'voice-agents');
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
      // SPEC 11: off unless set (compose sets 2000, as npm start does).
      heartbeatIntervalMs: Number(env.HEARTBEAT_INTERVAL_MS ?? 0),
      pods: () => cluster.listPods().filter((pod) => !pod.metadata.deletionTimestamp).map((pod) => pod.metadata.name),
      podUid: (pod) => cluster.getPod(pod)?.metadata.uid,
    });
    cluster.attachAgents(agents);
    await agents.start();
  }
  // The simulated carrier (SPEC 11) calls the router where providers would: PUBLIC_BASE_URL (reached at
  // SIM_CARRIER_ROUTER_URL when set: compose's gateway service, as split DNS would), signing with the
  // first of each provider's tokens when they are set (the webhooks app checks them), unsigned otherwise.
  const carrier = env.PUBLIC_BASE_URL ? new SimCarrier(carrierOptions(env, env.PUBLIC_BASE_URL)) : null;
  if (carrier) cluster.serve((request, response, url) => carrier.handle(request, response, url));
  process.stdout.write(`${JSON.stringify({ level: 'info', service: 'sim', message: 'simulated Kubernetes API listening', url: cluster.url, voiceAgents: Boolean(agents), carrier: Boolean(carrier), carrierRouterUrl: carrier ? env.SIM_CARRIER_ROUTER_URL ?? null : null })}\n`);
  const stop = () => {
    void Promise.all([carrier?.stop(), cluster.stop(), agents?.stop(), redis?.quit().catch(() => undefined)]).finally(() => process.exit(0));
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
