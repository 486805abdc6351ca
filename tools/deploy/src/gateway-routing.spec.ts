import { basename, dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { DEFAULT_EDGE_LIMITS, RATE_LIMITED, Upstreams, WS_PATH, route } from '@smart-router/gateway';
import { answerForStatus } from '@smart-router/http';
import { ADMIN_ACCESS_INCLUDE, renderAdminAccess } from './admin-access';
import { Directive, actionOf, child, children, locations, parseNginx, proxyTargets, selectLocation, serverListeningOn } from './nginx-config';
import { GATEWAY_PORT, SPEC_APP_PORTS, readRepoFile, repoPath } from './repository';

/** The k8s ConfigMap's ADMIN_ALLOW_CIDRS, as the router's start.sh renders it. */
const K8S_ADMIN_ALLOW_CIDRS = String((parse(readRepoFile('k8s', 'base', 'configmap-smart-router.yaml')) as { data: Record<string, unknown> }).data.ADMIN_ALLOW_CIDRS);

/**
 * SPEC section 2's public routing exists three times: tools/gateway (npm
 * start), docker/nginx (compose) and the Kubernetes nginx-router. Every path
 * here must get the same answer from all three.
 */
const PATHS = [
  '/api/v1/allocate',
  '/api/v1/release',
  '/api/v1/connected',
  '/api/v1/connected/',
  '/api/v1/allocate/',
  '/api/v1/allocates',
  '/api/v1/releases',
  '/API/v1/allocate',
  '/api/v1/twilio',
  '/api/v1/twilio/allocate',
  '/api/v1/twilio/status',
  '/api/v1/plivo/allocate',
  '/api/v1/plivo/status',
  '/api/v1/twilio/stream-status',
  '/api/v1/plivo/stream-status',
  '/api/v1/exotel/allocate',
  '/api/v1/exotel/',
  '/api/v1/twilios/allocate',
  '/api/v1/vonage/allocate',
  '/agent/voice/breeze-buddy/twilio/callback',
  '/agent/voice/breeze-buddy/twilio/callback/',
  '/agent/voice/breeze-buddy/twilio/callback/test-template',
  '/agent/voice/breeze-buddy/plivo/callback/t1',
  '/agent/voice/breeze-buddy/exotel/callback/t1',
  '/agent/voice/breeze-buddy/twilio/callbacks',
  '/agent/voice/breeze-buddy/vonage/callback/t1',
  '/api/v1/status',
  '/api/v1/status/',
  '/api/v1/drain',
  '/api/v1/undrain',
  '/api/v1/pod/voice-agent-1',
  '/api/v1/pod/',
  '/api/v1/pod',
  '/api/v1/admin/invariants',
  '/api/v1/admin/calls/CA123',
  '/api/v1/admin/merchants/acme',
  '/api/v1/admin',
  '/api/v1/admin/events/stream',
  '/api/v1/admin/events',
  '/dashboard/',
  '/dashboard',
  '/dashboard/dashboard.js',
  '/dashboards',
  '/ws/pod/voice-agent-2/CA123',
  '/ws/pod/voice-agent-0/call.with:odd-chars_1',
  `/ws/pod/${'a'.repeat(63)}/CA1`,
  `/ws/pod/${'a'.repeat(64)}/CA1`,
  `/ws/pod/voice-agent-1/${'c'.repeat(128)}`,
  `/ws/pod/voice-agent-1/${'c'.repeat(129)}`,
  '/ws/pod/Bad_Pod/CA1',
  '/ws/pod/voice-agent-1/',
  '/ws/pod/voice-agent-1/CA1/extra',
  '/ws/pod/-bad/CA1',
  '/ws/pod/',
  '/health',
  '/ready',
  '/metrics',
  '/openapi.json',
  '/',
  '/nope',
];

type Expectation = { targets: string[] } | { status: number; body: unknown };

function expected(path: string, upstreams: (pod: string) => Record<keyof Upstreams, string>): Expectation {
  const decision = route(path);
  if ('status' in decision) return { status: decision.status, body: decision.body };
  const pod = WS_PATH.exec(path)?.[1] ?? '';
  return { targets: [upstreams(pod)[decision.upstream]] };
}

function actual(config: Directive[], server: Directive, path: string): Expectation {
  const selected = selectLocation(server, path);
  if (!selected) throw new Error(`no location takes ${path}`);
  const action = actionOf(selected.location, selected.captures);
  if (!action) throw new Error(`location ${selected.location.pattern} neither proxies nor returns`);
  if ('status' in action) return { status: action.status, body: JSON.parse(action.body) as unknown };
  return { targets: proxyTargets(config, action.proxyPass) };
}

const appAddress = (app: keyof typeof SPEC_APP_PORTS) => `${app}:${SPEC_APP_PORTS[app]}`;

const CONFIGS = [
  {
    name: 'compose (docker/nginx/nginx.conf)',
    file: repoPath('docker', 'nginx', 'nginx.conf'),
    upstreams: (): Record<keyof Upstreams, string> => ({
      allocationApi: appAddress('allocation-api'),
      webhooks: appAddress('webhooks'),
      admin: appAddress('admin'),
      // The simulated voice agents: one endpoint for every pod name.
      voiceAgents: 'sim:8090',
    }),
    adminRestricted: false,
    // Compose is plain HTTP on loopback (127.0.0.1:8000), as `npm start`.
    publicPort: GATEWAY_PORT,
  },
  {
    name: 'Kubernetes (k8s/base/nginx-router/nginx.conf)',
    file: repoPath('k8s', 'base', 'nginx-router', 'nginx.conf'),
    upstreams: (pod: string): Record<keyof Upstreams, string> => ({
      allocationApi: appAddress('allocation-api'),
      webhooks: appAddress('webhooks'),
      admin: appAddress('admin'),
      // That exact pod through the voice-agent StatefulSet's headless Service.
      voiceAgents: `${pod}.voice-agent.voice-system.svc.cluster.local:8000`,
    }),
    adminRestricted: true,
    // TLS at the router (8443 ssl); 8080 only redirects to it (k8s.spec.ts checks that server).
    publicPort: 8443,
  },
];

describe.each(CONFIGS)('$name', ({ file, upstreams, adminRestricted, publicPort }) => {
  // Includes resolve beside the file (the ConfigMap mounts them together), except
  // the admin allow-list, which the router's start.sh renders from ADMIN_ALLOW_CIDRS.
  const include = (path: string) => (path === ADMIN_ACCESS_INCLUDE ? renderAdminAccess(K8S_ADMIN_ALLOW_CIDRS).text : readFileSync(join(dirname(file), basename(path)), 'utf8'));
  const config = parseNginx(readFileSync(file, 'utf8'), { include });
  const http = child(config, 'http');
  const server = serverListeningOn(config, publicPort);

  it(`has the public server on port ${publicPort}`, () => {
    expect(server).toBeDefined();
  });

  it.each(PATHS)('routes %s as tools/gateway does', (path) => {
    expect(actual(config, server!, path)).toEqual(expected(path, upstreams));
  });

  it('answers nginx-detected upstream failures in the API error shape', () => {
    const page = children(server?.block, 'error_page')[0];
    expect(page?.args.slice(0, 3)).toEqual(['502', '503', '504']);
    const named = children(server?.block, 'location').find((location) => location.args[0] === page?.args[page.args.length - 1]);
    const answer = child(named?.block, 'return');
    expect(JSON.parse(answer?.args[1] ?? '{}')).toEqual({ error: 'upstream unavailable', code: 'BAD_GATEWAY' });
    expect(child(server?.block, 'default_type')?.args).toEqual(['application/json']);
  });

  it("answers nginx's own 4xx/5xx pages as JSON with the apps' codes (issue 14)", () => {
    // Status nginx itself may produce -> the status and code it must answer with (494: header too large).
    const own: Array<[number, number]> = [[400, 400], [403, 403], [405, 405], [408, 408], [413, 413], [414, 414], [494, 431], [500, 500]];
    const pages = new Map(children(server?.block, 'error_page').flatMap((page) => page.args.slice(0, -1).map((status) => [Number(status), page.args[page.args.length - 1]] as const)));
    for (const [status, answered] of own) {
      const target = pages.get(status);
      expect({ status, target: target?.replace(/^=\s*/, '') }).toEqual({ status, target: expect.stringMatching(/^@/) });
      const named = children(server?.block, 'location').find((location) => location.args[0] === target);
      const answer = child(named?.block, 'return');
      expect({ status, returns: Number(answer?.args[0]) }).toEqual({ status, returns: answered });
      expect(JSON.parse(answer?.args[1] ?? '{}')).toEqual({ error: answerForStatus(answered).message, code: answerForStatus(answered).code });
    }
  });

  it('passes WebSocket upgrades and the forwarded URL to every upstream', () => {
    const headers = new Map(children(server?.block, 'proxy_set_header').map((directive) => [directive.args[0], directive.args[1]]));
    expect(headers.get('Upgrade')).toBe('$http_upgrade');
    expect(headers.get('Connection')).toBe('$connection_upgrade');
    // Webhook signatures are computed over the URL the provider called: what
    // nginx saw, never a client's own X-Forwarded-* (SPEC 10.1).
    expect(headers.get('X-Forwarded-Proto')).toBe('$scheme');
    expect(headers.get('X-Forwarded-Host')).toBe('$http_host');
    expect(headers.get('X-Forwarded-For')).toBe('$remote_addr');
    expect(headers.get('X-Real-IP')).toBe('$remote_addr');
    // An empty value drops the header: a client's Forwarded / X-Forwarded-Port never reach the apps.
    expect(headers.get('Forwarded')).toBe('');
    expect(headers.get('X-Forwarded-Port')).toBe('');
    for (const value of headers.values()) expect(value).not.toMatch(/\$(http_x_|http_forwarded|proxy_add_x_forwarded_for)/);
    expect(children(http?.block, 'map').filter((map) => /^\$http_x_forwarded/.test(map.args[0] ?? ''))).toEqual([]);
    // No forwarded address is trusted unless an operator names its proxy (set_real_ip_from).
    expect(children(http?.block, 'set_real_ip_from')).toEqual([]);
    expect(child(server?.block, 'proxy_http_version')?.args).toEqual(['1.1']);
    const upgradeMap = children(http?.block, 'map').find((map) => map.args[1] === '$connection_upgrade');
    expect(upgradeMap?.args[0]).toBe('$http_upgrade');
    // A location with its own proxy_set_header would drop every inherited one.
    for (const location of locations(server!)) {
      expect({ location: location.pattern, headers: children(location.directive.block, 'proxy_set_header').length }).toEqual({ location: location.pattern, headers: 0 });
    }
  });

  it('keeps call WebSockets open for a whole call and never replays their handshake', () => {
    const socket = locations(server!).find((location) => location.modifier === '~' && new RegExp(location.pattern).test('/ws/pod/voice-agent-0/CA1'));
    const seconds = (directive: Directive | undefined) => Number(/^(\d+)s$/.exec(directive?.args[0] ?? '')?.[1] ?? 0);
    expect(seconds(child(socket?.directive.block, 'proxy_read_timeout'))).toBeGreaterThanOrEqual(3600);
    expect(seconds(child(socket?.directive.block, 'proxy_send_timeout'))).toBeGreaterThanOrEqual(3600);
    expect(child(socket?.directive.block, 'proxy_next_upstream')?.args).toEqual(['off']);
  });

  it('runs unprivileged and accepts provider-sized bodies', () => {
    expect(child(config, 'user')).toBeUndefined();
    expect(child(config, 'pid')?.args[0]).toMatch(/^\/tmp\//);
    for (const temp of ['client_body_temp_path', 'proxy_temp_path']) expect(child(http?.block, temp)?.args[0]).toMatch(/^\/tmp\//);
    const size = /^(\d+)k$/.exec(child(http?.block, 'client_max_body_size')?.args[0] ?? '');
    expect(Number(size?.[1] ?? 0)).toBeGreaterThanOrEqual(16);
  });

  it('has a liveness endpoint independent of the upstreams', () => {
    const health = serverListeningOn(config, 9000);
    const selected = health && selectLocation(health, '/healthz');
    expect(selected && actionOf(selected.location, selected.captures)).toEqual({ status: 200, body: '{"status":"ok"}' });
  });

  it('enforces the edge limits of tools/gateway: rate per address, media sockets per address and in all (SPEC 10.2)', () => {
    const zones = new Map(children(http?.block, 'limit_req_zone').map((zone) => [/^zone=([^:]+)/.exec(zone.args[1] ?? '')?.[1], zone.args]));
    const rate = zones.get('edge_rate');
    expect(rate?.[0]).toBe('$binary_remote_addr');
    expect(rate?.[2]).toBe(`rate=${DEFAULT_EDGE_LIMITS.ratePerSecond}r/s`);
    // On the server, inherited by every proxying location (a location's own limit_req would replace it).
    expect(children(server?.block, 'limit_req').map((directive) => directive.args)).toEqual([['zone=edge_rate', `burst=${DEFAULT_EDGE_LIMITS.rateBurst}`, 'nodelay']]);
    for (const location of locations(server!)) expect({ location: location.pattern, limitReq: child(location.directive.block, 'limit_req') }).toEqual({ location: location.pattern, limitReq: undefined });
    for (const status of ['limit_req_status', 'limit_conn_status']) expect(child(http?.block, status)?.args).toEqual(['429']);

    const connZones = new Map(children(http?.block, 'limit_conn_zone').map((zone) => [/^zone=([^:]+)/.exec(zone.args[1] ?? '')?.[1], zone.args[0]]));
    expect(connZones.get('media_per_address')).toBe('$binary_remote_addr');
    // One key for every socket: the zone counts them all together.
    expect(connZones.get('media_total')).toBe('$server_name');
    const socket = selectLocation(server!, '/ws/pod/voice-agent-0/CA1')?.location.directive.block;
    const caps = new Map(children(socket, 'limit_conn').map((directive) => [directive.args[0], Number(directive.args[1])]));
    expect(caps).toEqual(new Map([['media_per_address', DEFAULT_EDGE_LIMITS.mediaSocketsPerAddress], ['media_total', DEFAULT_EDGE_LIMITS.mediaSocketsTotal]]));
    // Only media sockets are capped by connections.
    for (const path of ['/api/v1/allocate', '/api/v1/twilio/allocate', '/api/v1/admin/events/stream']) expect(child(selectLocation(server!, path)?.location.directive.block, 'limit_conn')).toBeUndefined();

    // A proxied socket holds two connections in one worker; the rest is room for webhooks and the API.
    const workerConnections = Number(child(child(config, 'events')?.block, 'worker_connections')?.args[0] ?? 0);
    expect(workerConnections - 2 * DEFAULT_EDGE_LIMITS.mediaSocketsTotal).toBeGreaterThanOrEqual(4096);
    expect(Number(child(config, 'worker_rlimit_nofile')?.args[0] ?? 0)).toBeGreaterThanOrEqual(2 * workerConnections);

    // Over a limit: the gateway's JSON answer.
    const page = children(server?.block, 'error_page').find((directive) => directive.args[0] === '429');
    const named = children(server?.block, 'location').find((location) => location.args[0] === page?.args[page.args.length - 1]);
    const answer = child(named?.block, 'return');
    expect(Number(answer?.args[0])).toBe(RATE_LIMITED.status);
    expect(JSON.parse(answer?.args[1] ?? '{}')).toEqual({ error: RATE_LIMITED.message, code: RATE_LIMITED.code });
  });

  it(adminRestricted ? 'admits only ADMIN_ALLOW_CIDRS to the admin API' : 'leaves the admin API to its tokens (loopback only)', () => {
    for (const path of ['/api/v1/status', '/api/v1/drain', '/api/v1/pod/voice-agent-0', '/api/v1/admin/tiers', '/api/v1/admin/events/stream', '/dashboard/', '/dashboard/dashboard.js']) {
      const block = selectLocation(server!, path)?.location.directive.block ?? [];
      const rules = block.filter((directive) => directive.name === 'allow' || directive.name === 'deny');
      if (!adminRestricted) {
        expect(rules).toEqual([]);
        continue;
      }
      // Exactly the configured entries, then deny (the default admits only kubectl port-forward).
      expect(rules.map((rule) => `${rule.name} ${rule.args.join(' ')}`)).toEqual([...K8S_ADMIN_ALLOW_CIDRS.split(',').map((cidr) => `allow ${cidr.trim()}`), 'deny all']);
    }
    // Nothing else is restricted: providers and voice agents come from anywhere.
    const open = selectLocation(server!, '/api/v1/allocate')?.location.directive.block ?? [];
    expect(open.filter((directive) => directive.name === 'deny')).toEqual([]);
  });

  if (adminRestricted) {
    it('resolves per-call pod addresses through the cluster DNS', () => {
      expect(child(http?.block, 'resolver')?.args[0]).toBe('kube-dns.kube-system.svc.cluster.local');
      const valid = /^valid=(\d+)s$/.exec(child(http?.block, 'resolver')?.args.find((arg) => arg.startsWith('valid=')) ?? '');
      // A pod recreated with a new IP must be reachable quickly.
      expect(Number(valid?.[1] ?? 3600)).toBeLessThanOrEqual(10);
    });
  }
});
