import { AddressInfo } from 'node:net';
import { Server, createServer } from 'node:http';
import { LivenessScripts } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';
import { EnvReader } from '@smart-router/config';
import { SimCarrier } from '@smart-router/sim';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { REDIRECT_TIMEOUT_MS, SdkCallRedirector } from './call-redirect';
import { LivenessJob } from './liveness.job';
import { readReconcilerConfig } from './reconciler.config';

interface Seen {
  method: string;
  path: string;
  authorization: string;
  body: string;
}

/**
 * SPEC 11: a dead pod's live Twilio/Plivo calls are redirected to their
 * stream-ended URL through the official SDKs (pointed at a provider endpoint
 * that records what they send); a call the provider refuses to move ends
 * with agent_dead; an Exotel call ends at once.
 */
describe('re-home redirects of a dead pod\'s calls (SPEC 11)', () => {
  let pool: PoolFixture;
  let provider: Server;
  let providerUrl: string;
  const seen: Seen[] = [];
  const logger = { log: () => undefined, warn: () => undefined, error: () => undefined };
  const telemetry = Telemetry.start('call-redirect-spec');

  beforeAll(async () => {
    provider = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk) => (body += chunk));
      request.on('end', () => {
        seen.push({ method: request.method ?? '', path: request.url ?? '', authorization: request.headers.authorization ?? '', body });
        const refused = (request.url ?? '').includes('gone');
        if ((request.url ?? '').startsWith('/2010-04-01/')) {
          response.writeHead(refused ? 404 : 200, { 'content-type': 'application/json' })
            .end(JSON.stringify(refused ? { code: 20404, message: 'not found', status: 404 } : { sid: 'x', status: 'in-progress' }));
        } else {
          response.writeHead(refused ? 404 : 202, { 'content-type': 'application/json' }).end(JSON.stringify(refused ? { error: 'not found' } : { message: 'call transferred', api_id: 'a' }));
        }
      });
    });
    await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
    providerUrl = `http://127.0.0.1:${(provider.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => provider.close(() => resolve())));
  beforeEach(async () => {
    seen.length = 0;
    // One shared tier: a single pod can hold every call of the test.
    pool = await createPoolFixture({ url: sharedRedisUrl(), pods: ['voice-agent-0', 'voice-agent-1'], tierConfig: '{"basic":{"type":"shared","target":2,"max_concurrent":10}}', extraTier: 'basic' });
  });
  afterEach(() => pool.close());

  const rehomeEnv = () => ({
    REHOME_ENABLED: 'true', PUBLIC_BASE_URL: 'https://router.example.test/',
    TWILIO_ACCOUNT_SID: 'ACtest', TWILIO_AUTH_TOKENS: 'tw-current,tw-old', TWILIO_API_BASE_URL: providerUrl,
    PLIVO_AUTH_ID: 'MAtest', PLIVO_AUTH_TOKENS: 'pl-current', PLIVO_API_BASE_URL: providerUrl,
  });
  const config = (env: Record<string, string>) => readReconcilerConfig(new EnvReader(env));

  it('settings: off by default; on, PUBLIC_BASE_URL is required and a provider without credentials is not redirected', () => {
    expect(config({}).rehome).toBeNull();
    expect(() => config({ REHOME_ENABLED: 'true' })).toThrow(/PUBLIC_BASE_URL is required with REHOME_ENABLED/);
    expect(() => config({ ...rehomeEnv(), TWILIO_API_BASE_URL: 'ftp://x' })).toThrow(/TWILIO_API_BASE_URL/);
    const onlyTwilio = config({ REHOME_ENABLED: 'true', PUBLIC_BASE_URL: 'https://r.test', TWILIO_ACCOUNT_SID: 'AC1', TWILIO_AUTH_TOKENS: 't' }).rehome!;
    expect(onlyTwilio).toEqual({ publicBaseUrl: 'https://r.test', twilio: { accountSid: 'AC1', authToken: 't', apiBaseUrl: 'https://api.twilio.com' }, plivo: null });
    expect(new SdkCallRedirector(onlyTwilio).providers).toEqual(['twilio']);
  });

  it('a dead pod: Twilio and Plivo calls redirected with the SDKs to their stream-ended URLs and kept; refused ones and Exotel end (agent_dead)', async () => {
    const settings = config(rehomeEnv()).rehome!;
    const scripts = new LivenessScripts(pool.redis, pool.keys, 1000);
    const calls: Record<string, { provider: string; allocationId: number }> = {};
    const pod = 'voice-agent-1';
    await pool.scripts.setDrain('voice-agent-0', true);
    for (const [sid, providerName] of [['CA-tw', 'twilio'], ['pl-uuid', 'plivo'], ['CA-gone', 'twilio'], ['ex-1', 'exotel']] as const) {
      const result = await pool.scripts.allocate({ callSid: sid, merchantId: '', provider: providerName, metadata: '', refuseTombstoned: false });
      if (!result.ok) throw new Error(`no pod for ${sid}`);
      calls[sid] = { provider: providerName, allocationId: result.allocation.allocationId! };
    }
    expect(new Set(await pool.redis.smembers(pool.keys.podCalls(pod)))).toEqual(new Set(Object.keys(calls)));
    await pool.scripts.setDrain('voice-agent-0', false);

    const job = new LivenessJob(pool.redis, pool.keys, scripts, { suspectMs: 4000, deadMs: 6000, deadAction: 'keep', mediaStallMs: 0 }, null, telemetry, logger,
      new SdkCallRedirector(settings),
      // As app.module wires it: endRehome, so the call's rehome_requested marker does not fence the job's own end.
      { end: async (callSid, allocationId) => void (await pool.scripts.release(callSid, 'agent_dead', 'call.released', Date.now(), undefined, { allocationId: Number(allocationId), endRehome: true })) });
    for (const name of ['voice-agent-0', pod]) await scripts.recordHeartbeat(name, []);
    const [seconds] = await pool.redis.time();
    await pool.redis.zadd(pool.keys.heartbeats(), Number(seconds) * 1000 - 6500, pod);
    const report = await job.run();

    expect(report.transitions).toEqual([expect.objectContaining({ pod, state: 'dead', callsEnded: 1 })]);
    expect(new Set(report.redirected)).toEqual(new Set(['CA-tw', 'pl-uuid']));
    expect(report.redirectFailed).toEqual(['CA-gone']);
    // Kept on the dead pod until the stream-ended request re-homes them; the others are gone.
    expect(await pool.redis.hget(pool.keys.call('CA-tw'), 'pod_name')).toBe(pod);
    expect(await pool.redis.hget(pool.keys.call('pl-uuid'), 'pod_name')).toBe(pod);
    expect(await pool.redis.exists(pool.keys.call('CA-gone'), pool.keys.call('ex-1'))).toBe(0);

    const basic = (user: string, token: string) => `Basic ${Buffer.from(`${user}:${token}`).toString('base64')}`;
    const twilioUpdate = seen.find((request) => request.path === '/2010-04-01/Accounts/ACtest/Calls/CA-tw.json')!;
    expect(twilioUpdate).toMatchObject({ method: 'POST', authorization: basic('ACtest', 'tw-current') });
    expect(Object.fromEntries(new URLSearchParams(twilioUpdate.body))).toEqual({ Url: `https://router.example.test/api/v1/twilio/stream-ended?allocation_id=${calls['CA-tw'].allocationId}`, Method: 'POST' });
    const plivoTransfer = seen.find((request) => request.path.startsWith('/v1/Account/MAtest/Call/pl-uuid'))!;
    expect(plivoTransfer).toMatchObject({ method: 'POST', authorization: basic('MAtest', 'pl-current') });
    expect(JSON.parse(plivoTransfer.body)).toMatchObject({ legs: 'aleg', aleg_url: `https://router.example.test/api/v1/plivo/stream-ended?allocation_id=${calls['pl-uuid'].allocationId}`, aleg_method: 'POST' });
    expect(seen.some((request) => request.path.includes('ex-1'))).toBe(false);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
    const metrics = await telemetry.prometheusText();
    expect(metrics).toMatch(/smart_router_rehome_redirects_total\{[^}]*provider="twilio"[^}]*result="failed"[^}]*\} 1/);
  });
  it('REST-only tokens (issue 20): TWILIO_API_AUTH_TOKEN / PLIVO_API_AUTH_TOKEN win over *_AUTH_TOKENS and need no webhook tokens', () => {
    const { TWILIO_AUTH_TOKENS: _t, PLIVO_AUTH_TOKENS: _p, ...open } = rehomeEnv();
    expect(config(open).rehome).toMatchObject({ twilio: null, plivo: null });
    const rest = config({ ...open, TWILIO_API_AUTH_TOKEN: 'tw-rest', PLIVO_API_AUTH_TOKEN: 'pl-rest' }).rehome!;
    expect(rest).toMatchObject({ twilio: { accountSid: 'ACtest', authToken: 'tw-rest' }, plivo: { authId: 'MAtest', authToken: 'pl-rest' } });
    expect(config({ ...rehomeEnv(), TWILIO_API_AUTH_TOKEN: 'tw-rest' }).rehome!.twilio!.authToken).toBe('tw-rest');
  });

  it('MEDIA_STALL_SECONDS with re-homing on (issue 20): a stalled Twilio call is redirected to its stream-ended URL and kept; a stalled Exotel call ends (media_stall)', async () => {
    const { TWILIO_AUTH_TOKENS: _t, PLIVO_AUTH_TOKENS: _p, ...open } = rehomeEnv();
    const settings = config({ ...open, TWILIO_API_AUTH_TOKEN: 'tw-rest', PLIVO_API_AUTH_TOKEN: 'pl-rest' }).rehome!;
    const scripts = new LivenessScripts(pool.redis, pool.keys, 1000);
    const ids: Record<string, number> = {};
    for (const [sid, providerName] of [['CA-stall', 'twilio'], ['ex-stall', 'exotel']] as const) {
      const result = await pool.scripts.allocate({ callSid: sid, merchantId: '', provider: providerName, metadata: '', refuseTombstoned: false });
      if (!result.ok) throw new Error(`no pod for ${sid}`);
      ids[sid] = result.allocation.allocationId!;
      await pool.scripts.connect(sid, 'api');
      await scripts.recordHeartbeat(result.allocation.podName, [{ callSid: sid, allocationId: ids[sid], mediaIn: 5, mediaOut: 5 }]);
      const past = Date.now() - 10000;
      await pool.redis.hset(pool.keys.call(sid), 'media_in_at', past, 'connected_at', past);
      await pool.redis.zadd(pool.keys.callMedia(), past, sid);
    }
    const job = new LivenessJob(pool.redis, pool.keys, scripts, { suspectMs: 4000, deadMs: 6000, deadAction: 'keep', mediaStallMs: 2000 }, null, telemetry, logger,
      new SdkCallRedirector(settings), { end: async () => undefined });
    const report = await job.run();
    expect(report.redirected).toEqual(['CA-stall']);
    expect(report.stalled).toEqual(['ex-stall']);
    expect(await pool.redis.hget(pool.keys.call('CA-stall'), 'allocation_id')).toBe(String(ids['CA-stall']));
    expect(await pool.redis.exists(pool.keys.call('ex-stall'))).toBe(0);
    const update = seen.find((request) => request.path === '/2010-04-01/Accounts/ACtest/Calls/CA-stall.json')!;
    expect(update.authorization).toBe(`Basic ${Buffer.from('ACtest:tw-rest').toString('base64')}`);
    expect(Object.fromEntries(new URLSearchParams(update.body))).toEqual({ Url: `https://router.example.test/api/v1/twilio/stream-ended?allocation_id=${ids['CA-stall']}`, Method: 'POST' });
    // Once (issue 20): the frozen agent's heartbeat thread still reports the same media_in, and the next run redirects nothing.
    seen.length = 0;
    const stalledPod = (await pool.redis.hget(pool.keys.call('CA-stall'), 'pod_name'))!;
    await scripts.recordHeartbeat(stalledPod, [{ callSid: 'CA-stall', allocationId: ids['CA-stall'], mediaIn: 5, mediaOut: 5 }]);
    expect((await job.run()).redirected).toEqual([]);
    expect(seen).toEqual([]);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('a hung provider (the sim carrier\'s REST answering late) fails the redirect within the SDK timeout: the calls end (agent_dead) and the job is not held', async () => {
    // Before, neither SDK had a short timeout (twilio 30 s, plivo none): the reconciler's one worker,
    // which runs liveness, connect timeout, guardrail and fleet one at a time, stalled with it.
    expect(REDIRECT_TIMEOUT_MS).toBe(5000);
    const carrier = new SimCarrier({ baseUrl: 'https://router.example.test' });
    carrier.restDelayMs = 60_000;
    const surface = createServer((request, response) => {
      void carrier.handle(request, response, new URL(request.url!, 'http://carrier')).then((served) => {
        if (!served) response.writeHead(404).end();
      });
    });
    await new Promise<void>((resolve) => surface.listen(0, '127.0.0.1', resolve));
    const carrierUrl = `http://127.0.0.1:${(surface.address() as AddressInfo).port}`;
    try {
      const settings = config({ ...rehomeEnv(), TWILIO_ACCOUNT_SID: carrier.twilioAccountSid, TWILIO_API_BASE_URL: carrierUrl, PLIVO_AUTH_ID: carrier.plivoAuthId, PLIVO_API_BASE_URL: carrierUrl }).rehome!;
      const scripts = new LivenessScripts(pool.redis, pool.keys, 1000);
      const pod = 'voice-agent-1';
      await pool.scripts.setDrain('voice-agent-0', true);
      for (const [sid, providerName] of [['CA-hung', 'twilio'], ['pl-hung', 'plivo']] as const) {
        const result = await pool.scripts.allocate({ callSid: sid, merchantId: '', provider: providerName, metadata: '', refuseTombstoned: false });
        if (!result.ok) throw new Error(`no pod for ${sid}`);
      }
      await pool.scripts.setDrain('voice-agent-0', false);
      const ended: string[] = [];
      const job = new LivenessJob(pool.redis, pool.keys, scripts, { suspectMs: 4000, deadMs: 6000, deadAction: 'keep', mediaStallMs: 0 }, null, telemetry, logger,
        new SdkCallRedirector(settings, 300),
        { end: async (callSid, allocationId) => {
          ended.push(callSid);
          await pool.scripts.release(callSid, 'agent_dead', 'call.released', Date.now(), undefined, { allocationId: Number(allocationId), endRehome: true });
        } });
      for (const name of ['voice-agent-0', pod]) await scripts.recordHeartbeat(name, []);
      const [seconds] = await pool.redis.time();
      await pool.redis.zadd(pool.keys.heartbeats(), Number(seconds) * 1000 - 6500, pod);
      const started = Date.now();
      const report = await job.run();
      // Two redirects of 300 ms at most each, with room for a loaded machine: far below the SDKs' 30 s.
      expect(Date.now() - started).toBeLessThan(4000);
      expect(report.redirected).toEqual([]);
      expect(new Set(report.redirectFailed)).toEqual(new Set(['CA-hung', 'pl-hung']));
      expect(new Set(ended)).toEqual(new Set(['CA-hung', 'pl-hung']));
      expect(await pool.redis.exists(pool.keys.call('CA-hung'), pool.keys.call('pl-hung'))).toBe(0);
      expect(await pool.scripts.checkInvariants()).toEqual([]);
    } finally {
      surface.closeAllConnections();
      await new Promise<void>((resolve) => surface.close(() => resolve()));
    }
  });
});
