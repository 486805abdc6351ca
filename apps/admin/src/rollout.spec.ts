import Ajv2020 from 'ajv/dist/2020';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { RouteContract, adminRoutes } from '@smart-router/api-contract';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { bootstrap } from './main';

/**
 * GET|PUT /api/v1/admin/rollout (SPEC 12) against the real admin app and a
 * real Redis: validation that changes nothing, immutable revisions with their
 * events, per-version figures, and who may do what.
 */
describe('admin rollout API', () => {
  const ajv = new Ajv2020({ strict: false });
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  let base: string;

  const call = async (method: string, body?: unknown, token = 'op-token-123456') => {
    const response = await fetch(`${base}/api/v1/admin/rollout`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  };

  beforeEach(async () => {
    // A connect deadline, so a test can release a call by it (connect_timeout).
    pool = await createPoolFixture({ url: sharedRedisUrl(), connectTimeoutMs: 5000 });
    // voice-agent-3 and -4 (standard) run v2; the others v1.
    for (const name of ['voice-agent-0', 'voice-agent-1', 'voice-agent-2', 'voice-agent-3', 'voice-agent-4']) {
      const version = name === 'voice-agent-3' || name === 'voice-agent-4' ? 'v2' : 'v1';
      await pool.scripts.upsertPod({ name, uid: pool.uids.get(name)!, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null, version });
    }
    app = await bootstrap({
      REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error',
      ADMIN_OPERATOR_TOKENS: 'op-token-123456', ADMIN_VIEWER_TOKENS: 'view-token-123456',
    });
    const address = app.getHttpServer().address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterEach(async () => {
    await app.close();
    await pool.close();
  });

  const documented = (route: RouteContract, status: number, body: unknown) => {
    const validate = ajv.compile(route.responses[status]!.schema!);
    return validate(body) ? [] : (validate.errors ?? []).map((error) => `${error.instancePath} ${error.message}`);
  };

  it('shows every known version and no revision before the first PUT', async () => {
    const { status, body } = await call('GET', undefined, 'view-token-123456');
    expect(status).toBe(200);
    expect(documented(adminRoutes.rollout, 200, body)).toEqual([]);
    expect(body).toMatchObject({ revision: null, targets: [], assignment: null });
    expect(body.versions.v1).toMatchObject({ percent: null, pods: 3, free: 3, live_calls: 0 });
    expect(body.versions.v2).toMatchObject({ percent: null, pods: 2, free: 2 });
  });

  it('stores each PUT as a new immutable revision with its rollout.updated event, and the figures follow the calls', async () => {
    const first = await call('PUT', { targets: [{ version: 'v1', percent: 95 }, { version: 'v2', percent: 5 }] });
    expect(first.status).toBe(200);
    expect(documented(adminRoutes.putRollout, 200, first.body)).toEqual([]);
    expect(first.body).toMatchObject({ revision: 1, previous: null, assignment: 'random', guardrail: null, targets: [{ version: 'v1', percent: 95 }, { version: 'v2', percent: 5 }] });
    const second = await call('PUT', { targets: [{ version: 'v1', percent: 0 }, { version: 'v2', percent: 100 }], assignment: 'sticky_by_caller', guardrail: { max_excess_pp: 5, min_calls: 50 } });
    expect(second.body).toMatchObject({ revision: 2, previous: 1, assignment: 'sticky_by_caller', guardrail: { max_excess_pp: 5, min_calls: 50 } });
    // Revision 1 is kept as it was.
    expect(JSON.parse((await pool.redis.hget(pool.keys.rolloutRevisions(), '1'))!)).toMatchObject({ revision: 1, targets: [{ version: 'v1', percent: 95 }, { version: 'v2', percent: 5 }] });
    const events = await pool.redis.xrange(pool.keys.fleetStream(), '-', '+');
    expect(events.map(([, fields]) => [fields[fields.indexOf('type') + 1], fields[fields.indexOf('revision') + 1]])).toEqual([['rollout.updated', '1'], ['rollout.updated', '2']]);

    // v2 takes the next call (100 %); its figures count it.
    const allocated = await pool.scripts.allocate({ callSid: 'CA-roll-1', merchantId: '', provider: '', metadata: '', refuseTombstoned: false, caller: '+15550001' });
    expect(allocated.ok && allocated.allocation.agentVersion).toBe('v2');
    let view = await call('GET', undefined, 'view-token-123456');
    expect(view.body.versions.v2).toMatchObject({ percent: 100, pods: 2, free: 1, live_calls: 1, allocations: 1, spills: 0 });
    expect(view.body.versions.v1).toMatchObject({ percent: 0, allocations: 0 });
    await pool.scripts.release('CA-roll-1', 'completed');
    view = await call('GET', undefined, 'view-token-123456');
    expect(view.body.versions.v2).toMatchObject({ free: 2, live_calls: 0, releases: { completed: 1 } });
  });

  it('promote sends the next allocation to the version; rollback returns to the previous split; both are revisions with events', async () => {
    const allocateVersion = async (callSid: string) => {
      const result = await pool.scripts.allocate({ callSid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false });
      await pool.scripts.release(callSid, 'done');
      return result.ok ? result.allocation.agentVersion : `refused ${result.code}`;
    };
    const rollback = (token = 'op-token-123456') => fetch(`${base}/api/v1/admin/rollout/rollback`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
      .then(async (response) => ({ status: response.status, body: (await response.json()) as Record<string, any> })); // eslint-disable-line @typescript-eslint/no-explicit-any
    const promote = (body: unknown, token = 'op-token-123456') => fetch(`${base}/api/v1/admin/rollout/promote`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
      .then(async (response) => ({ status: response.status, body: (await response.json()) as Record<string, any> })); // eslint-disable-line @typescript-eslint/no-explicit-any

    // Nothing to return to yet.
    expect(await rollback()).toMatchObject({ status: 409, body: { code: 'NO_PREVIOUS_REVISION' } });
    await call('PUT', { targets: [{ version: 'v1', percent: 100 }, { version: 'v2', percent: 0 }], assignment: 'sticky_by_caller' });
    expect(await allocateVersion('pr-0')).toBe('v1');

    const promoted = await promote({ version: 'v2' });
    expect(promoted.status).toBe(200);
    expect(documented(adminRoutes.promoteRollout, 200, promoted.body)).toEqual([]);
    expect(promoted.body).toMatchObject({ revision: 2, previous: 1, assignment: 'sticky_by_caller', targets: [{ version: 'v2', percent: 100 }, { version: 'v1', percent: 0 }] });
    for (let index = 1; index <= 5; index += 1) expect(await allocateVersion(`pr-${index}`)).toBe('v2');

    const back = await rollback();
    expect(back.status).toBe(200);
    expect(back.body).toMatchObject({ revision: 3, previous: 2, assignment: 'sticky_by_caller', targets: [{ version: 'v1', percent: 100 }, { version: 'v2', percent: 0 }] });
    for (let index = 6; index <= 10; index += 1) expect(await allocateVersion(`pr-${index}`)).toBe('v1');
    // The rollback asks the reconciler to move replicas back to v1 (rollout-move.ts), as the promote did to v2.
    expect(JSON.parse((await pool.redis.get(pool.keys.rolloutMove()))!)).toMatchObject({ version: 'v1', revision: 3 });

    const events = await pool.redis.xrange(pool.keys.fleetStream(), '-', '+');
    expect(events.map(([, fields]) => fields[fields.indexOf('type') + 1])).toEqual(['rollout.updated', 'rollout.promoted', 'rollout.rolled_back']);

    // Refusals change nothing.
    expect(await promote({ version: 'v9' })).toMatchObject({ status: 409, body: { code: 'UNKNOWN_VERSION' } });
    expect(await promote({ version: 'v2', extra: 1 })).toMatchObject({ status: 400, body: { code: 'INVALID_BODY' } });
    expect(await promote({ version: 'not a label' })).toMatchObject({ status: 400, body: { code: 'INVALID_VERSION' } });
    expect(await promote({ version: 'v2' }, 'view-token-123456')).toMatchObject({ status: 403 });
    expect(await rollback('view-token-123456')).toMatchObject({ status: 403 });
    expect(await pool.redis.hlen(pool.keys.rolloutRevisions())).toBe(3);
  });

  it('the move is written with its revision in one step: racing promotes leave the live revision its own move, a PUT clears it, an unknown version changes nothing', async () => {
    const post = (path: string, body?: unknown) => fetch(`${base}/api/v1/admin/rollout/${path}`, { method: 'POST', headers: { authorization: 'Bearer op-token-123456', ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) })
      .then(async (response) => ({ status: response.status, body: (await response.json()) as Record<string, any> })); // eslint-disable-line @typescript-eslint/no-explicit-any
    // v3 is a target but no pod carries it and no StatefulSet of it is known: a promote would wait forever.
    expect((await call('PUT', { targets: [{ version: 'v1', percent: 90 }, { version: 'v3', percent: 10 }], assignment: 'random' })).status).toBe(200);
    const moveOf = async () => JSON.parse((await pool.redis.get(pool.keys.rolloutMove())) ?? 'null');
    expect(await post('promote', { version: 'v3' })).toMatchObject({ status: 409, body: { code: 'UNKNOWN_VERSION' } });
    expect(await pool.redis.hlen(pool.keys.rolloutRevisions())).toBe(1);
    expect(await moveOf()).toBeNull();
    // Once a StatefulSet of it is known (the reconciler learned it), the promote is taken.
    await pool.redis.hset(pool.keys.versionStatefulSets(), 'v3', 'voice-agent-v3');
    expect((await post('promote', { version: 'v3' })).status).toBe(200);
    expect(await moveOf()).toMatchObject({ version: 'v3', revision: 2 });

    // Racing promotes: whichever revision is live holds the move to its own version.
    for (let round = 0; round < 5; round += 1) {
      const answers = await Promise.all([post('promote', { version: 'v1' }), post('promote', { version: 'v2' }), post('rollback')]);
      for (const answer of answers) expect(answer.status).toBe(200);
      const live = JSON.parse((await pool.redis.get(pool.keys.rollout()))!);
      const whole = live.targets.find((target: { percent: number }) => target.percent === 100);
      expect(await moveOf()).toMatchObject({ version: whole.version, revision: live.revision });
    }

    // A plain PUT moves no replicas: it clears the pending move.
    expect((await call('PUT', { targets: [{ version: 'v1', percent: 100 }], assignment: 'random' })).status).toBe(200);
    expect(await moveOf()).toBeNull();
  });

  it.each([
    ['not an object', [1, 2], 'INVALID_BODY'],
    ['an unknown field', { targets: [{ version: 'v1', percent: 100 }], split: 1 }, 'INVALID_BODY'],
    ['no targets', { targets: [] }, 'INVALID_TARGETS'],
    ['six versions', { targets: ['a', 'b', 'c', 'd', 'e', 'f'].map((version, index) => ({ version, percent: index === 0 ? 100 : 0 })) }, 'INVALID_TARGETS'],
    ['percents summing to 99', { targets: [{ version: 'v1', percent: 94 }, { version: 'v2', percent: 5 }] }, 'PERCENT_SUM'],
    ['a fractional percent', { targets: [{ version: 'v1', percent: 94.5 }, { version: 'v2', percent: 5.5 }] }, 'INVALID_PERCENT'],
    ['a negative percent', { targets: [{ version: 'v1', percent: 110 }, { version: 'v2', percent: -10 }] }, 'INVALID_PERCENT'],
    ['a percent as text', { targets: [{ version: 'v1', percent: '100' }] }, 'INVALID_PERCENT'],
    ['a version twice', { targets: [{ version: 'v1', percent: 50 }, { version: 'v1', percent: 50 }] }, 'DUPLICATE_VERSION'],
    ['a version that is no label value', { targets: [{ version: 'v1:{evil}', percent: 100 }] }, 'INVALID_VERSION'],
    ['an unknown assignment', { targets: [{ version: 'v1', percent: 100 }], assignment: 'round_robin' }, 'INVALID_ASSIGNMENT'],
    ['a guardrail without min_calls', { targets: [{ version: 'v1', percent: 100 }], guardrail: { max_excess_pp: 5 } }, 'INVALID_GUARDRAIL'],
  ])('refuses %s with 400 and a clear code, writing nothing', async (_reason, body, code) => {
    const { status, body: answer } = await call('PUT', body);
    expect({ status, code: answer.code, error: typeof answer.error }).toEqual({ status: 400, code, error: 'string' });
    expect(documented(adminRoutes.putRollout, 400, answer)).toEqual([]);
    expect(await pool.redis.exists(pool.keys.rollout(), pool.keys.rolloutRevisions(), pool.keys.fleetStream())).toBe(0);
  });

  it('shows the guardrail judging the live revision from its known outcomes: connected and connect_timeout calls per version', async () => {
    const put = await call('PUT', { targets: [{ version: 'v1', percent: 50 }, { version: 'v2', percent: 50 }], guardrail: { max_excess_pp: 10, min_calls: 2 } });
    expect(put.body.guardrail_state).toEqual({ state: 'watching', revision: 1, stable: 'v1', stable_failure_rate: null, failing: null, canaries: [{ version: 'v2', known: 0, failure_rate: null, excess_pp: null }] });
    const t0 = Date.now();
    for (const [sid, draw] of [['CA-g1', 0.1], ['CA-g2', 0.9], ['CA-g3', 0.9]] as const) {
      const result = await pool.scripts.allocate({ callSid: sid, merchantId: '', provider: '', metadata: '', refuseTombstoned: false, draw }, t0);
      expect(result.ok).toBe(true);
    }
    // The v1 call and one v2 call connect; the other v2 call never does (released by its connect deadline).
    expect((await pool.scripts.connect('CA-g1', 'api')).ok).toBe(true);
    expect((await pool.scripts.connect('CA-g2', 'api')).ok).toBe(true);
    expect((await pool.scripts.release('CA-g3', 'connect_timeout', 'call.released', t0 + 3_600_000, undefined, { connectTimeout: true })).ok).toBe(true);
    const { status, body } = await call('GET', undefined, 'view-token-123456');
    expect(status).toBe(200);
    expect(documented(adminRoutes.rollout, 200, body)).toEqual([]);
    expect(body.versions.v1).toMatchObject({ connected: 1, connect_timeouts: 0 });
    expect(body.versions.v2).toMatchObject({ connected: 1, connect_timeouts: 1 });
    expect(body.guardrail_state).toEqual({ state: 'tripped', revision: 1, stable: 'v1', stable_failure_rate: 0, failing: 'v2', canaries: [{ version: 'v2', known: 2, failure_rate: 0.5, excess_pp: 50 }] });
    // A new revision is judged on its own calls.
    const next = await call('PUT', { targets: [{ version: 'v1', percent: 90 }, { version: 'v2', percent: 10 }], guardrail: { max_excess_pp: 10, min_calls: 2 } });
    expect(next.body.guardrail_state).toMatchObject({ state: 'watching', revision: 2, canaries: [{ version: 'v2', known: 0 }] });
  });

  it('needs an operator token to PUT and a viewer token to GET', async () => {
    expect((await call('GET', undefined, 'wrong-token-12345')).status).toBe(401);
    expect((await call('PUT', { targets: [{ version: 'v2', percent: 100 }] }, 'view-token-123456')).status).toBe(403);
    expect(await pool.redis.exists(pool.keys.rollout())).toBe(0);
    expect((await call('GET', undefined, 'view-token-123456')).status).toBe(200);
  });
});
