import { existsSync } from 'node:fs';
import { parse } from 'yaml';
import { EnvReader, readCommonSettings, readRedisSettings } from '@smart-router/config';
import { carrierOptions } from '@smart-router/sim';
import { parseDockerfile, stage } from './dockerfile';
import { child, children, parseNginx, serverListeningOn } from './nginx-config';
import { GATEWAY_PORT, SIM_PORT, SPEC_APP_PORTS, appExists, appNames, configuredDefaultPort, readRepoFile, repoPath, splitFileVariables, undocumentedVariables, variablesReadBy } from './repository';

interface ComposeService {
  image?: string;
  build?: { context?: string; dockerfile?: string; target?: string; args?: Record<string, string> };
  command?: string[] | string;
  environment?: Record<string, string | number | null> | string[];
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test?: string[] | string; disable?: boolean };
  restart?: string;
  depends_on?: Record<string, { condition?: string }> | string[];
  cap_drop?: string[];
  security_opt?: string[];
}

interface ComposeFile {
  services?: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const compose = parse(readRepoFile('docker-compose.yml'), { merge: true }) as ComposeFile;
const services = compose.services ?? {};
const apps = appNames();
const dockerfile = parseDockerfile(readRepoFile('docker', 'Dockerfile'));
/** One-shot services (`restart: 'no'`, e.g. redis-init): done, not healthy, is what others wait for. */
const oneShot = (name: string) => services[name]?.restart === 'no';

/** Compose's interpolation with nothing set in the shell: `${X:-d}` -> d, `${X}` -> '', `$$` -> '$'. */
function interpolate(value: string): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}/g, (whole, _name: string | undefined, fallback: string | undefined) => (whole === '$$' ? '$' : (fallback ?? '')));
}

function environment(service: ComposeService): Record<string, string> {
  const raw = service.environment ?? {};
  const entries = Array.isArray(raw) ? raw.map((item) => item.split('=', 2) as [string, string]) : Object.entries(raw).map(([key, value]) => [key, value === null ? '' : String(value)] as [string, string]);
  return Object.fromEntries(entries.map(([key, value]) => [key, interpolate(value ?? '')]));
}

function dependencies(service: ComposeService): Record<string, string | undefined> {
  const raw = service.depends_on ?? {};
  return Array.isArray(raw) ? Object.fromEntries(raw.map((name) => [name, undefined])) : Object.fromEntries(Object.entries(raw).map(([name, spec]) => [name, spec?.condition]));
}

function healthTest(service: ComposeService): string[] {
  const test = service.healthcheck?.test;
  return Array.isArray(test) ? test : typeof test === 'string' ? ['CMD-SHELL', test] : [];
}

/** `[host:]published:target` -> { host, published, target } */
function ports(service: ComposeService): { host?: string; published: number; target: number }[] {
  return (service.ports ?? []).map((spec) => {
    const parts = String(spec).split(':');
    const target = Number(parts[parts.length - 1]);
    const published = Number(parts[parts.length - 2] ?? target);
    return { host: parts.length === 3 ? parts[0] : undefined, published, target };
  });
}

/** `name:/path[:ro]` named-volume mounts. */
function mounts(service: ComposeService): { source: string; target: string; readOnly: boolean }[] {
  return (service.volumes ?? []).map((spec) => {
    const [source, target, mode] = String(spec).split(':');
    return { source, target, readOnly: mode === 'ro' };
  });
}

describe('docker-compose.yml', () => {
  it('runs every app, redis, the simulated cluster and the gateway', () => {
    expect(apps).toEqual(expect.arrayContaining(Object.keys(SPEC_APP_PORTS)));
    for (const name of [...apps, 'redis', 'sim', 'gateway']) expect({ name, defined: name in services }).toEqual({ name, defined: true });
  });

  it.each(apps)('builds %s from docker/Dockerfile with APP naming the app', (app) => {
    const build = services[app]?.build;
    expect(build?.context).toBe('.');
    expect(existsSync(repoPath(build?.context ?? '-', build?.dockerfile ?? '-'))).toBe(true);
    expect(build?.dockerfile).toBe('docker/Dockerfile');
    expect(stage(dockerfile, build?.target ?? '')).toBeDefined();
    expect(build?.target).toBe('app');
    expect(build?.args?.APP).toBe(app);
    expect({ app, exists: appExists(build?.args?.APP ?? '') }).toEqual({ app, exists: true });
  });

  it('builds the simulated cluster from the sim stage', () => {
    expect(services.sim.build?.dockerfile).toBe('docker/Dockerfile');
    expect(stage(dockerfile, services.sim.build?.target ?? '')?.name).toBe('sim');
  });

  it.each(apps)('publishes %s on its npm start port, on loopback', (app) => {
    const port = SPEC_APP_PORTS[app];
    const configured = configuredDefaultPort(app);
    if (configured !== undefined) expect(configured).toBe(port);
    expect(ports(services[app])).toEqual([{ host: '127.0.0.1', published: port, target: port }]);
    expect(environment(services[app]).HTTP_PORT).toBe(String(port));
  });

  it('publishes the gateway on 8000 where nginx listens, and the simulated Kubernetes API on 8001', () => {
    expect(ports(services.gateway)).toEqual([{ host: '127.0.0.1', published: GATEWAY_PORT, target: GATEWAY_PORT }]);
    const mount = (services.gateway.volumes ?? []).map(String).find((spec) => spec.endsWith(':/etc/nginx/nginx.conf:ro'));
    expect(mount).toBe('./docker/nginx/nginx.conf:/etc/nginx/nginx.conf:ro');
    const nginx = parseNginx(readRepoFile('docker', 'nginx', 'nginx.conf'));
    expect(serverListeningOn(nginx, GATEWAY_PORT)).toBeDefined();
    expect(ports(services.sim)).toEqual([{ host: '127.0.0.1', published: SIM_PORT, target: SIM_PORT }]);
    expect(environment(services.sim).SIM_PORT).toBe(String(SIM_PORT));
  });

  it.each(Object.keys(services).filter((name) => !oneShot(name)))('gives %s a healthcheck', (name) => {
    const test = healthTest(services[name]);
    expect(services[name].healthcheck?.disable).not.toBe(true);
    expect(['CMD', 'CMD-SHELL']).toContain(test[0]);
    expect(test.length).toBeGreaterThan(1);
  });

  it.each(apps)('reports %s healthy only when /ready answers', (app) => {
    expect(healthTest(services[app])).toEqual(['CMD', 'node', '/app/healthcheck.cjs', '/ready']);
  });

  it.each(Object.keys(services))('starts %s only after what it depends on is healthy', (name) => {
    for (const [dependency, condition] of Object.entries(dependencies(services[name]))) {
      expect({ dependency, defined: dependency in services }).toEqual({ dependency, defined: true });
      if (oneShot(dependency)) {
        expect({ dependency, condition }).toEqual({ dependency, condition: 'service_completed_successfully' });
        continue;
      }
      expect({ dependency, condition }).toEqual({ dependency, condition: 'service_healthy' });
      expect(healthTest(services[dependency]).length).toBeGreaterThan(1);
    }
  });

  it('orders the stack: Redis first, the cluster before the watchers, every upstream before the gateway', () => {
    for (const app of apps) expect(dependencies(services[app])).toHaveProperty('redis', 'service_healthy');
    for (const app of ['pod-watcher', 'reconciler']) expect(dependencies(services[app])).toHaveProperty('sim', 'service_healthy');
    expect(dependencies(services.sim)).toHaveProperty('redis', 'service_healthy');
    const nginx = parseNginx(readRepoFile('docker', 'nginx', 'nginx.conf'));
    const hosts = children(child(nginx, 'http')?.block, 'upstream').flatMap((upstream) => children(upstream.block, 'server').map((server) => server.args[0].split(':')[0]));
    expect(hosts.length).toBeGreaterThanOrEqual(4);
    for (const host of hosts) expect({ host, condition: dependencies(services.gateway)[host] }).toEqual({ host, condition: 'service_healthy' });
    // The first curl through the gateway finds the pools built (the reconciler's readiness includes them).
    expect(dependencies(services.gateway)).toHaveProperty('reconciler', 'service_healthy');
  });

  it('points every nginx upstream at a service port that is served', () => {
    const nginx = parseNginx(readRepoFile('docker', 'nginx', 'nginx.conf'));
    for (const upstream of children(child(nginx, 'http')?.block, 'upstream')) {
      for (const server of children(upstream.block, 'server')) {
        const [host, port] = server.args[0].split(':');
        // Docker's DNS, not a start-up lookup: a recreated container gets a new address.
        expect(server.args).toContain('resolve');
        const served = host === 'sim' ? environment(services.sim).VOICE_AGENTS_PORT : environment(services[host] ?? {}).HTTP_PORT;
        expect({ upstream: upstream.args[0], port }).toEqual({ upstream: upstream.args[0], port: served });
      }
    }
    expect(child(child(nginx, 'http')?.block, 'resolver')?.args[0]).toBe('127.0.0.11');
    // `resolve` on an upstream server is in open-source nginx from 1.27.3 on.
    const version = /:(\d+)\.(\d+)\.(\d+)/.exec(services.gateway.image ?? '')?.slice(1).map(Number) ?? [0, 0, 0];
    expect(version[0] * 1e6 + version[1] * 1e3 + version[2]).toBeGreaterThanOrEqual(1027003);
  });

  it('keeps Redis data in an append-only file on a named volume', () => {
    const command = ([] as string[]).concat(services.redis.command ?? []).join(' ');
    expect(command).toMatch(/--appendonly yes/);
    expect(mounts(services.redis)).toContainEqual({ source: 'redis-data', target: '/data', readOnly: false });
    expect(compose.volumes).toHaveProperty('redis-data');
  });

  it('runs Redis TLS-only with the ACL users redis-init makes, each app with its own user, password and the CA (SPEC 10.1)', () => {
    const command = ([] as string[]).concat(services.redis.command ?? []).join(' ');
    expect(command).toMatch(/--port 0 /);
    expect(command).toMatch(/--tls-port 6379 /);
    expect(command).toMatch(/--aclfile \/tls\/users\.acl/);
    expect(mounts(services.redis)).toContainEqual({ source: 'redis-tls', target: '/tls', readOnly: true });
    expect(dependencies(services.redis)).toEqual({ 'redis-init': 'service_completed_successfully' });
    // The probe speaks TLS as the PING-only user, its password out of the command line.
    expect(healthTest(services.redis)[1]).toMatch(/REDISCLI_AUTH=.*redis-cli --tls --cacert \/tls\/ca\.crt --user healthcheck ping/);
    const init = services['redis-init'];
    expect(init.build?.target).toBe('sim');
    expect(readRepoFile('docker', 'redis-init.sh')).toContain('dist/tools/redis-acl/src/main.js');
    const users = new Map<string, string>();
    for (const [name, service] of Object.entries(services)) {
      const env = environment(service);
      if (!('REDIS_URL' in env)) continue;
      expect({ name, url: env.REDIS_URL }).toEqual({ name, url: 'rediss://redis:6379' });
      const own = mounts(service).filter((mount) => mount.source.startsWith('redis-user-'));
      // Exactly one user volume, read-only, holding this service's password and the CA.
      expect(own).toEqual([{ source: `redis-user-${env.REDIS_USERNAME}`, target: '/run/redis', readOnly: true }]);
      expect(env.REDIS_PASSWORD_FILE).toBe('/run/redis/password');
      expect(env.REDIS_TLS_CA_FILE).toBe('/run/redis/ca.crt');
      expect(mounts(init)).toContainEqual({ source: own[0].source, target: `/users/${env.REDIS_USERNAME}`, readOnly: false });
      expect({ user: env.REDIS_USERNAME, by: users.get(env.REDIS_USERNAME) }).toEqual({ user: env.REDIS_USERNAME, by: undefined });
      users.set(env.REDIS_USERNAME, name);
    }
    for (const app of apps) expect(users.get(app)).toBe(app);
    expect(users.get('voice-agents')).toBe('sim');
  });

  it('hands the simulated cluster kubeconfig to the watchers and allocation-api, read-only', () => {
    const sim = environment(services.sim);
    const volume = mounts(services.sim).find((mount) => sim.SIM_KUBECONFIG?.startsWith(`${mount.target}/`));
    expect(volume).toMatchObject({ readOnly: false });
    expect(compose.volumes).toHaveProperty(volume?.source ?? '-');
    expect(sim.SIM_PUBLIC_URL).toBe(`http://sim:${sim.SIM_PORT}`);
    expect(sim.ALLOCATION_API_URL).toBe(`http://allocation-api:${SPEC_APP_PORTS['allocation-api']}`);
    expect(sim.REDIS_URL).toBe(environment(services['allocation-api']).REDIS_URL);
    expect(sim.REDIS_PREFIX).toBe(environment(services['allocation-api']).REDIS_PREFIX);
    expect(healthTest(services.sim)).toContain(`file:${sim.SIM_KUBECONFIG}`);
    // allocation-api reviews the simulated agents' tokens there (SPEC 10.1), with the audience they ask for.
    expect(environment(services['allocation-api']).AGENT_TOKEN_AUDIENCE).toBe(sim.AGENT_TOKEN_AUDIENCE);
    for (const app of ['pod-watcher', 'reconciler', 'allocation-api']) {
      expect(environment(services[app]).KUBECONFIG).toBe(sim.SIM_KUBECONFIG);
      expect(mounts(services[app])).toContainEqual({ source: volume?.source, target: volume?.target, readOnly: true });
    }
  });

  it.each(apps)('sets only documented variables for %s, and values its config accepts', (app) => {
    const env = environment(services[app]);
    expect(undocumentedVariables(app, Object.keys(env))).toEqual([]);
    expect(env.HOST).toBe('0.0.0.0');
    expect(new URL(env.REDIS_URL).hostname).toBe('redis');
    // Mounted files exist only in the container: parse the rest (the test above checks the mounts).
    const reader = new EnvReader(splitFileVariables(env).env);
    const read = variablesReadBy(app);
    if (read === undefined || read.has('TIER_CONFIG')) expect(() => readCommonSettings(reader)).not.toThrow();
    else expect(() => readRedisSettings(reader)).not.toThrow();
    if ('VOICE_AGENT_BASE_URL' in env) expect(env.VOICE_AGENT_BASE_URL).toBe(`ws://127.0.0.1:${GATEWAY_PORT}`);
    if ('PUBLIC_BASE_URL' in env) expect(env.PUBLIC_BASE_URL).toBe(`http://127.0.0.1:${GATEWAY_PORT}`);
  });

  it('runs the credentialed apps in open mode, as npm start does, and no other app (SPEC 10.1)', () => {
    for (const app of apps) {
      const env = environment(services[app]);
      const expected = ['allocation-api', 'webhooks', 'admin'].includes(app) ? 'true' : undefined;
      expect({ app, ALLOW_UNAUTHENTICATED: env.ALLOW_UNAUTHENTICATED }).toEqual({ app, ALLOW_UNAUTHENTICATED: expected });
    }
    // The default only: a value in the shell (false) makes them fail closed like the image.
    expect(readRepoFile('docker-compose.yml')).toContain('ALLOW_UNAUTHENTICATED: ${ALLOW_UNAUTHENTICATED:-true}');
  });

  it('trusts forwarded headers only from the gateway, at its fixed address on the compose network', () => {
    const network = (compose as { networks?: { default?: { ipam?: { config?: { subnet?: string }[] } } } }).networks?.default?.ipam?.config?.[0]?.subnet ?? '';
    const address = (services.gateway as { networks?: { default?: { ipv4_address?: string } } }).networks?.default?.ipv4_address ?? '';
    expect(network).toMatch(/^\d+\.\d+\.\d+\.0\/24$/);
    expect(address.startsWith(network.replace(/0\/24$/, ''))).toBe(true);
    for (const app of apps) expect({ app, TRUSTED_PROXIES: environment(services[app]).TRUSTED_PROXIES }).toEqual({ app, TRUSTED_PROXIES: `${address}/32` });
  });

  it('releases a call nobody connects after 20 s (SPEC 10.2)', () => {
    for (const app of ['allocation-api', 'webhooks']) expect(environment(services[app]).CONNECT_TIMEOUT_SECONDS).toBe('20');
  });

  it('gives the URL-building apps the gateway address', () => {
    for (const app of ['allocation-api', 'webhooks']) expect(environment(services[app]).VOICE_AGENT_BASE_URL).toBe(`ws://127.0.0.1:${GATEWAY_PORT}`);
    expect(environment(services.webhooks).PUBLIC_BASE_URL).toBe(`http://127.0.0.1:${GATEWAY_PORT}`);
  });

  it('runs the simulated carrier against the gateway, and the reconciler re-homes through it with the same REST credentials (SPEC 11, issue 20)', () => {
    const sim = environment(services.sim);
    const reconciler = environment(services.reconciler);
    const webhooks = environment(services.webhooks);
    // The carrier calls (and signs) the URL the webhooks app signs for and the reconciler redirects to,
    // reaching it at the gateway service on nginx's port, over the network the gateway is on.
    expect([sim.PUBLIC_BASE_URL, reconciler.PUBLIC_BASE_URL]).toEqual([webhooks.PUBLIC_BASE_URL, webhooks.PUBLIC_BASE_URL]);
    expect(carrierOptions(sim, sim.PUBLIC_BASE_URL).routerUrl).toBe(`http://gateway:${GATEWAY_PORT}`);
    expect((services.sim as { networks?: unknown }).networks).toBeUndefined();
    expect(Object.keys((services.gateway as { networks?: Record<string, unknown> }).networks ?? {})).toEqual(['default']);
    // The reconciler's SDKs send their REST requests to the sim, with the credentials its carrier demands.
    for (const name of ['TWILIO_API_BASE_URL', 'PLIVO_API_BASE_URL']) expect({ name, url: reconciler[name] }).toEqual({ name, url: `http://sim:${sim.SIM_PORT}` });
    expect(sim.SIM_PORT).toBe(String(SIM_PORT));
    for (const name of ['TWILIO_ACCOUNT_SID', 'TWILIO_API_AUTH_TOKEN', 'PLIVO_AUTH_ID', 'PLIVO_API_AUTH_TOKEN']) {
      expect({ name, sim: sim[name] }).toEqual({ name, sim: reconciler[name] });
      expect({ name, empty: reconciler[name] === '' }).toEqual({ name, empty: false });
      // A dev default the shell can override, like the other compose secrets.
      const raw = (services.reconciler.environment as Record<string, string>)[name];
      expect(raw).toMatch(new RegExp(`^\\$\\{${name}:-[^}]+\\}$`));
      expect((services.sim.environment as Record<string, string>)[name]).toBe(raw);
    }
    // twilio's SDK refuses an account SID that does not start with AC.
    expect(reconciler.TWILIO_ACCOUNT_SID).toMatch(/^AC[0-9a-f]{32}$/);
    // The carrier signs with the first of the tokens webhooks checks.
    for (const name of ['TWILIO_AUTH_TOKENS', 'PLIVO_AUTH_TOKENS']) {
      expect({ name, sim: (services.sim.environment as Record<string, string>)[name] }).toEqual({ name, sim: (services.webhooks.environment as Record<string, string>)[name] });
    }
    // The carrier needs no Redis: the sim's ACL user stays the voice agents' read-only one.
    expect(sim.REDIS_USERNAME).toBe('voice-agents');
  });

  it.each(Object.keys(services))('pins the image of %s and drops its privileges', (name) => {
    const image = services[name].image ?? '';
    expect(image).toMatch(/:[A-Za-z0-9._-]+$/);
    expect(image).not.toMatch(/:latest$/);
    if (name !== 'redis') {
      // redis' entrypoint needs its capabilities to drop to the redis user itself.
      expect(services[name].cap_drop).toEqual(['ALL']);
      expect(services[name].security_opt).toContain('no-new-privileges:true');
    }
  });
});
