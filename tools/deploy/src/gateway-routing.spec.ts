import { basename, dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { Upstreams, WS_PATH, route } from '@smart-router/gateway';
import { answerForStatus } from '@smart-router/http';
import { Directive, actionOf, child, children, locations, parseNginx, proxyTargets, selectLocation, serverListeningOn } from './nginx-config';
import { GATEWAY_PORT, SPEC_APP_PORTS, repoPath } from './repository';

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
  // SPEC 10.1's signed form; a truncated or garbled signature still routes (the media check answers it 403).
  `/ws/pod/voice-agent-2/CA123/42/1767268920/${'s'.repeat(43)}`,
  '/ws/pod/voice-agent-2/CA123/0/1767268920/a-b_c',
  `/ws/pod/${'a'.repeat(63)}/${'c'.repeat(128)}/${'9'.repeat(16)}/${'9'.repeat(12)}/${'s'.repeat(128)}`,
  `/ws/pod/voice-agent-2/CA123/42/1767268920/${'s'.repeat(129)}`,
  `/ws/pod/voice-agent-2/CA123/${'9'.repeat(17)}/1767268920/abc`,
  '/ws/pod/voice-agent-2/CA123/42/1767268920',
  '/ws/pod/voice-agent-2/CA123/42/1767268920/',
  '/ws/pod/voice-agent-2/CA123/x/1767268920/abc',
  '/ws/pod/voice-agent-2/CA123/42/1767268920/a.b',
  '/ws/pod/voice-agent-2/CA123/42/1767268920/abc/extra',
  '/ws/pod/Bad_Pod/CA123/42/1767268920/abc',
  // The media check is for the edge's auth_request only, never routed from outside.
  '/internal/media-auth',
  '/internal/media-auth/',
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

/** nginx's own page for `status` (`error_page` to a named location that returns it). */
function errorPage(server: Directive, status: number): Expectation {
  const page = children(server.block, 'error_page').find((directive) => directive.args.slice(0, -1).includes(String(status)));
  const named = children(server.block, 'location').find((location) => location.args[0] === page?.args[page.args.length - 1]);
  const answer = child(named?.block, 'return');
  if (!answer) throw new Error(`no error page for ${status}`);
  return { status: Number(answer.args[0]), body: JSON.parse(answer.args[1] ?? '') as unknown };
}

function actual(config: Directive[], server: Directive, path: string): Expectation {
  const selected = selectLocation(server, path);
  if (!selected) throw new Error(`no location takes ${path}`);
  // An `internal` location answers a client's request with nginx's 404.
  if (child(selected.location.directive.block, 'internal')) return errorPage(server, 404);
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
  },
];

describe.each(CONFIGS)('$name', ({ file, upstreams, adminRestricted }) => {
  // Includes resolve beside the file (the ConfigMap mounts them together).
  const config = parseNginx(readFileSync(file, 'utf8'), { include: (path) => readFileSync(join(dirname(file), basename(path)), 'utf8') });
  const http = child(config, 'http');
  const server = serverListeningOn(config, GATEWAY_PORT);

  it(`has the public server on port ${GATEWAY_PORT}`, () => {
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
    const own: Array<[number, number]> = [[400, 400], [403, 403], [404, 404], [405, 405], [408, 408], [413, 413], [414, 414], [494, 431], [500, 500]];
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
    // Webhook signatures are computed over the URL the provider called.
    expect(headers.get('X-Forwarded-Proto')).toBeDefined();
    expect(headers.get('X-Forwarded-Host')).toBeDefined();
    expect(headers.get('X-Forwarded-For')).toBe('$proxy_add_x_forwarded_for');
    expect(child(server?.block, 'proxy_http_version')?.args).toEqual(['1.1']);
    const upgradeMap = children(http?.block, 'map').find((map) => map.args[1] === '$connection_upgrade');
    expect(upgradeMap?.args[0]).toBe('$http_upgrade');
    // A location with its own proxy_set_header would drop every inherited one
    // (the media check's internal location does so on purpose: tested below).
    for (const location of locations(server!).filter((location) => !child(location.directive.block, 'internal'))) {
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

  it('asks allocation-api about every media upgrade before it reaches the pod (SPEC 10.1 auth_request)', () => {
    const signed = `/ws/pod/voice-agent-0/CA1/42/1767268920/${'s'.repeat(43)}`;
    for (const path of ['/ws/pod/voice-agent-0/CA1', signed]) {
      const socket = selectLocation(server!, path)?.location.directive.block;
      expect({ path, check: child(socket, 'auth_request')?.args }).toEqual({ path, check: ['/internal/media-auth'] });
      // The upstream address is built from the pod name alone: the signed tail cannot steer it (no SSRF).
      const proxy = child(socket, 'proxy_pass')?.args[0] ?? '';
      expect([...proxy.matchAll(/\$([a-z_]+)/g)].map((match) => match[1]).filter((name) => name !== 'pod')).toEqual([]);
    }
    const check = selectLocation(server!, '/internal/media-auth');
    expect(check?.location.modifier).toBe('=');
    const block = check?.location.directive.block;
    expect(child(block, 'internal')).toBeDefined();
    expect(proxyTargets(config, child(block, 'proxy_pass')?.args[0] ?? '')).toEqual([appAddress('allocation-api')]);
    // The route allocation-api serves (GET), with the URI the client asked for, no body and no Upgrade.
    expect(child(block, 'proxy_pass')?.args[0]).toMatch(/^http:\/\/[a-z_]+$/);
    expect(child(block, 'proxy_method')?.args).toEqual(['GET']);
    expect(child(block, 'proxy_pass_request_body')?.args).toEqual(['off']);
    const headers = new Map(children(block, 'proxy_set_header').map((directive) => [directive.args[0], directive.args[1]]));
    expect(headers.get('X-Original-URI')).toBe('$request_uri');
    expect(headers.get('Content-Length')).toBe('');
    expect(headers.has('Upgrade')).toBe(false);
    // A refusal is nginx's 403 page, the same JSON the local gateway writes.
    expect(errorPage(server!, 403)).toEqual({ status: 403, body: { error: answerForStatus(403).message, code: answerForStatus(403).code } });
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

  it(adminRestricted ? 'admits only private addresses to the admin API' : 'leaves the admin API to its tokens (loopback only)', () => {
    for (const path of ['/api/v1/status', '/api/v1/drain', '/api/v1/pod/voice-agent-0', '/api/v1/admin/tiers', '/api/v1/admin/events/stream', '/dashboard/', '/dashboard/dashboard.js']) {
      const block = selectLocation(server!, path)?.location.directive.block ?? [];
      const rules = block.filter((directive) => directive.name === 'allow' || directive.name === 'deny');
      if (!adminRestricted) {
        expect(rules).toEqual([]);
        continue;
      }
      expect(rules[rules.length - 1]).toMatchObject({ name: 'deny', args: ['all'] });
      for (const rule of rules.slice(0, -1)) {
        expect(rule.name).toBe('allow');
        expect(rule.args[0]).toMatch(/^(127\.0\.0\.1|10\.0\.0\.0\/8|172\.16\.0\.0\/12|192\.168\.0\.0\/16)$/);
      }
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
