import { ConfigError, EnvReader } from '@smart-router/config';
import type { GatewayOptions, UpstreamPools } from './gateway';
import { readEdgeLimits } from './edge-limits';

/** Each upstream as a comma-separated list of base URLs (a pool, taken round-robin), and its local default. */
const UPSTREAM_VARIABLES: { [name in keyof UpstreamPools]: [variable: string, fallback: string] } = {
  allocationApi: ['UPSTREAM_ALLOCATION_API', 'http://127.0.0.1:8080'],
  webhooks: ['UPSTREAM_WEBHOOKS', 'http://127.0.0.1:8081'],
  admin: ['UPSTREAM_ADMIN', 'http://127.0.0.1:8082'],
  voiceAgents: ['UPSTREAM_VOICE_AGENTS', 'http://127.0.0.1:8090'],
};

function pool(env: EnvReader, variable: string, fallback: string): string[] {
  const targets = env.list(variable, [fallback]);
  if (targets.length === 0) throw new ConfigError(variable, 'must list at least one URL');
  // Each entry is checked like a single URL variable, so the message names the variable.
  return targets.map((target) => new EnvReader({ [variable]: target }).url(variable, target, ['http:']));
}

/**
 * The local gateway run as its own process (`npm start` runs it as a
 * supervised child, SPEC 10.2): where it listens and where each route goes.
 */
export function readGatewayConfig(env = new EnvReader()): GatewayOptions {
  const upstreams = Object.fromEntries(
    Object.entries(UPSTREAM_VARIABLES).map(([name, [variable, fallback]]) => [name, pool(env, variable, fallback)]),
  ) as UpstreamPools;
  return { host: env.string('HOST', '127.0.0.1'), port: env.port('HTTP_PORT', 8000), upstreams, limits: readEdgeLimits(env) };
}
