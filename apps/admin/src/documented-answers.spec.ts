import Ajv2020 from 'ajv/dist/2020';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { RouteContract, adminRoutes } from '@smart-router/api-contract';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { AdminFleetService } from './fleet.service';
import { bootstrap } from './main';

/**
 * Routes whose controllers parse their own input keep their answers in the
 * contract by this test: every answer must match the schema documented for
 * its status (a mismatch would mislead every generated client).
 */
describe('admin answers match their documented schemas', () => {
  const ajv = new Ajv2020({ strict: false });
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  let base: string;

  beforeAll(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    app = await bootstrap({ REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true' });
    const address = app.getHttpServer().address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(async () => {
    await app.close();
    await pool.close();
  });

  async function answer(route: RouteContract, path: string, body?: unknown) {
    const response = await fetch(base + path, {
      method: route.method,
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const json = (await response.json()) as unknown;
    const documented = route.responses[response.status];
    if (!documented?.schema) return { status: response.status, problems: [`status ${response.status} is not documented`], json };
    const validate = ajv.compile(documented.schema);
    return { status: response.status, problems: validate(json) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`), json };
  }

  it('before the reconciler has read the StatefulSet', async () => {
    for (const [route, path, body] of [
      [adminRoutes.fleet, '/api/v1/admin/fleet'],
      [adminRoutes.autoscaler, '/api/v1/admin/autoscaler'],
      [adminRoutes.scaleFleet, '/api/v1/admin/fleet/scale', { replicas: 3 }],
    ] as const) {
      expect({ path, ...(await answer(route, path, body)) }).toMatchObject({ path, problems: [] });
    }
  });

  it('with a fleet plan, and for every read-side route', async () => {
    await pool.redis.hset(pool.keys.fleetPlan(), { replicas: 5, target: 5 });
    await pool.scripts.allocate({ callSid: 'documented-1', merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
    const checks: [RouteContract, string, unknown?][] = [
      [adminRoutes.fleet, '/api/v1/admin/fleet'],
      [adminRoutes.scaleFleet, '/api/v1/admin/fleet/scale', { replicas: 4 }],
      [adminRoutes.scaleFleet, '/api/v1/admin/fleet/scale', { replicas: 6 }],
      [adminRoutes.scaleFleet, '/api/v1/admin/fleet/scale', { replicas: -1 }],
      [adminRoutes.autoscaler, '/api/v1/admin/autoscaler'],
      [adminRoutes.putAutoscaler, '/api/v1/admin/autoscaler', { buffer: 3 }],
      [adminRoutes.putAutoscaler, '/api/v1/admin/autoscaler', { buffer: 'x' }],
      [adminRoutes.events, '/api/v1/admin/events?limit=5'],
      [adminRoutes.events, '/api/v1/admin/events?limit=0'],
      [adminRoutes.pods, '/api/v1/admin/pods'],
      [adminRoutes.session, '/api/v1/admin/session'],
    ];
    const statuses: number[] = [];
    for (const [route, path, body] of checks) {
      const result = await answer(route, path, body);
      statuses.push(result.status);
      expect({ path, body, ...result }).toMatchObject({ path, problems: [] });
    }
    expect(statuses).toEqual([200, 202, 202, 400, 200, 200, 400, 200, 400, 200, 200]);
  });

  it('concurrent autoscaler updates of different fields all land (compare-and-set)', async () => {
    const updates = [{ buffer: 5 }, { scale_down_delay_seconds: 77 }, { min_replicas: 2 }, { max_replicas: 9 }, { enabled: true }];
    // Straight to the service, all in one tick: every read happens before any write, the worst interleaving.
    const fleet = app.get(AdminFleetService);
    await Promise.all(updates.map((update) => fleet.putAutoscaler(update)));
    const stored = await answer(adminRoutes.autoscaler, '/api/v1/admin/autoscaler');
    expect(stored.json).toMatchObject({ buffer: 5, scale_down_delay_seconds: 77, min_replicas: 2, max_replicas: 9, enabled: true });
    await answer(adminRoutes.putAutoscaler, '/api/v1/admin/autoscaler', { enabled: false });
  });

  it('a Redis failure is a documented, counted 503, never an empty answer', async () => {
    await pool.redis.set(pool.keys.fleetPlan(), 'not a hash');
    for (const [route, path] of [[adminRoutes.fleet, '/api/v1/admin/fleet'], [adminRoutes.autoscaler, '/api/v1/admin/autoscaler'], [adminRoutes.scaleFleet, '/api/v1/admin/fleet/scale']] as const) {
      const result = await answer(route, path, route.method === 'POST' ? { replicas: 2 } : undefined);
      expect({ path, status: result.status, code: (result.json as { code?: string }).code, problems: result.problems }).toEqual({ path, status: 503, code: 'REDIS_UNAVAILABLE', problems: [] });
    }
    await pool.redis.del(pool.keys.fleetPlan());
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^smart_router_redis_errors_total\{[^}]*operation="fleet"[^}]*\} [1-9]/m);
  });
});
