import { PoolFixture, createPoolFixture, sharedRedisUrl, snapshotState } from '@smart-router/testing';
import { ScriptCode } from '@smart-router/allocation';

/**
 * SPEC 10.1 on the scripts: releaseCall and connectCall refuse a caller
 * outside the call's scope (a voice agent of another pod, a token scoped to
 * other merchants) in the same step that would change the call, changing
 * nothing; inside the scope they behave as without one.
 */
describe('call scope in releaseCall and connectCall (SPEC 10.1)', () => {
  let pool: PoolFixture;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl(), connectTimeoutMs: 20000 });
  });
  afterEach(() => pool.close());

  const allocate = async (callSid: string, merchantId = '') => {
    const result = await pool.scripts.allocate({ callSid, merchantId, provider: 'twilio', metadata: '', refuseTombstoned: false });
    if (!result.ok) throw new Error(`allocation refused: ${result.code}`);
    return result.allocation;
  };
  const release = (callSid: string, scope: Parameters<PoolFixture['scripts']['connect']>[4]) =>
    pool.scripts.release(callSid, 'hangup', 'call.released', Date.now(), undefined, { scope });
  const connect = (callSid: string, scope: Parameters<PoolFixture['scripts']['connect']>[4]) => pool.scripts.connect(callSid, 'api', undefined, Date.now(), scope);

  it('a voice agent of another pod can neither connect nor release the call: NOT_YOUR_CALL, nothing changed', async () => {
    const call = await allocate('CA-pod', 'acme');
    const other = call.podName === 'voice-agent-1' ? 'voice-agent-3' : 'voice-agent-1';
    const before = await snapshotState(pool);
    expect(await connect('CA-pod', { podName: other })).toEqual({ ok: false, code: ScriptCode.NotYourCall });
    expect(await release('CA-pod', { podName: other })).toEqual({ ok: false, code: ScriptCode.NotYourCall });
    expect(await snapshotState(pool)).toEqual(before);

    expect(await connect('CA-pod', { podName: call.podName })).toMatchObject({ ok: true, connection: { podName: call.podName, wasConnected: false } });
    expect(await release('CA-pod', { podName: call.podName })).toMatchObject({ ok: true, release: { podName: call.podName } });
    expect(await pool.redis.exists(pool.keys.call('CA-pod'))).toBe(0);
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('a scoped token acts only on calls of its merchants; a call with no merchant is outside every scope', async () => {
    await allocate('CA-acme', 'acme');
    await allocate('CA-globex', 'globex');
    await allocate('CA-none', '');
    const before = await snapshotState(pool);
    for (const sid of ['CA-globex', 'CA-none']) {
      expect(await connect(sid, { merchants: ['acme', 'initech'] })).toEqual({ ok: false, code: ScriptCode.MerchantForbidden });
      expect(await release(sid, { merchants: ['acme', 'initech'] })).toEqual({ ok: false, code: ScriptCode.MerchantForbidden });
    }
    // A merchant id that is a part of another (ac ⊂ acme) is not in scope.
    expect(await release('CA-acme', { merchants: ['ac', 'me'] })).toEqual({ ok: false, code: ScriptCode.MerchantForbidden });
    expect(await release('CA-acme', { merchants: [] })).toEqual({ ok: false, code: ScriptCode.MerchantForbidden });
    expect(await release('CA-none', { merchants: [] })).toEqual({ ok: false, code: ScriptCode.MerchantForbidden });
    expect(await snapshotState(pool)).toEqual(before);

    expect(await connect('CA-acme', { merchants: ['initech', 'acme'] })).toMatchObject({ ok: true });
    expect(await release('CA-acme', { merchants: ['initech', 'acme'] })).toMatchObject({ ok: true });
    // Unscoped (webhooks, jobs, unscoped tokens): as before.
    expect(await release('CA-globex', {})).toMatchObject({ ok: true });
    expect(await release('CA-none', undefined)).toMatchObject({ ok: true });
    expect(await pool.scripts.checkInvariants()).toEqual([]);
  });

  it('an unknown call is still 404 for any scope, and the pod is checked before the allocation fence', async () => {
    expect(await release('CA-never', { podName: 'voice-agent-1', merchants: ['acme'] })).toEqual({ ok: false, code: ScriptCode.NotFound });
    expect(await connect('CA-never', { podName: 'voice-agent-1' })).toEqual({ ok: false, code: ScriptCode.NotFound });
    const call = await allocate('CA-fenced', 'acme');
    const other = call.podName === 'voice-agent-1' ? 'voice-agent-3' : 'voice-agent-1';
    // Another pod's agent learns nothing about the call's allocation_id.
    expect(await pool.scripts.release('CA-fenced', '', 'call.released', Date.now(), undefined, { allocationId: 999999, scope: { podName: other } })).toEqual({ ok: false, code: ScriptCode.NotYourCall });
    expect(await pool.scripts.connect('CA-fenced', 'api', 999999, Date.now(), { podName: call.podName })).toEqual({ ok: false, code: ScriptCode.StaleAllocation });
  });

  it('a call re-allocated to another pod after release is refused to the first pod\'s agent', async () => {
    const first = await allocate('CA-again', 'acme');
    expect(await release('CA-again', { podName: first.podName })).toMatchObject({ ok: true });
    // Drain the first pod so the same call_sid lands elsewhere.
    await pool.scripts.setDrain(first.podName, true);
    const second = await allocate('CA-again', 'acme');
    expect(second.podName).not.toBe(first.podName);
    const before = await snapshotState(pool);
    expect(await release('CA-again', { podName: first.podName })).toEqual({ ok: false, code: ScriptCode.NotYourCall });
    expect(await snapshotState(pool)).toEqual(before);
  });
});
