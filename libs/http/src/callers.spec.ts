import { ConfigError } from '@smart-router/config';
import { createHash } from 'node:crypto';
import { ApiException } from '@kubernetes/client-node';
import { TokenReviewTimeoutError } from '@smart-router/kube';
import {
  AgentAdmissionError, AgentTokenReview, CachedAgentTokens, CallerAuthenticator, IdentityUnavailableError, agentNamespacePolicy, claimsServiceAccount, MAX_AGENT_TOKEN_BYTES, ReviewsSaturatedError, TokenReviewResult, describeReviewFailure, isJwtShaped, parseApiTokens, scopeOf,
} from './callers';

describe('API_TOKENS parsing', () => {
  it('reads unscoped and merchant-scoped entries', () => {
    expect(parseApiTokens(['plain', 'scoped@acme', 'multi@acme|globex.eu|a:b-c_d', 'dup@x|x'])).toEqual([
      { secret: 'plain', merchants: null },
      { secret: 'scoped', merchants: ['acme'] },
      { secret: 'multi', merchants: ['acme', 'globex.eu', 'a:b-c_d'] },
      { secret: 'dup', merchants: ['x'] },
    ]);
  });

  it('splits at the last @, so a scoped secret may itself hold @', () => {
    expect(parseApiTokens(['p@ss@acme'])).toEqual([{ secret: 'p@ss', merchants: ['acme'] }]);
  });

  it.each([
    ['an empty scope', 'secret@', /entry 1 has a bad merchant scope/],
    ['an empty merchant between bars', 'secret@acme||globex', /entry 1 has a bad merchant scope/],
    ['a trailing bar', 'secret@acme|', /entry 1 has a bad merchant scope/],
    ['a merchant id with a space', 'secret@ac me', /entry 1 has a bad merchant scope/],
    ['an empty secret', '@acme', /entry 1 has an empty secret/],
  ])('stops the app on %s, naming API_TOKENS and never the secret', (_reason, entry, message) => {
    let error: unknown;
    try {
      parseApiTokens([entry]);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe('API_TOKENS');
    expect((error as Error).message).toMatch(message);
    if (entry.startsWith('secret')) expect((error as Error).message).not.toContain('secret@');
  });

  it('names the position of a bad entry among good ones', () => {
    expect(() => parseApiTokens(['good', 'also@fine', 'bad@'])).toThrow(/entry 3/);
  });
});

describe('caller scopes', () => {
  it('limit an agent to its pod, a scoped token to its merchants, nothing else', () => {
    expect(scopeOf({ kind: 'agent', podName: 'voice-agent-1', podUid: 'u', username: 'system:serviceaccount:ns:voice-agent' })).toEqual({ podName: 'voice-agent-1' });
    expect(scopeOf({ kind: 'dispatcher', merchants: ['acme'] })).toEqual({ merchants: ['acme'] });
    expect(scopeOf({ kind: 'dispatcher', merchants: null })).toEqual({});
    expect(scopeOf({ kind: 'open' })).toEqual({});
  });
});

const AGENT = { podName: 'voice-agent-0', podUid: 'uid-0', username: 'system:serviceaccount:voice-system:voice-agent' };

/** A JWT-shaped token named `name` (only JWT-shaped tokens are ever reviewed). */
const jwt = (name: string) => `eyJhbGciOiJSUzI1NiJ9.${Buffer.from(name).toString('base64url')}.c2lnbmF0dXJl`;
/** The name of a token made by `jwt`, else the token itself. */
const nameOf = (token: string) => (token.split('.').length === 3 ? Buffer.from(token.split('.')[1], 'base64url').toString() : token);

/** A TokenReview stand-in: `agent-token` is voice-agent-0's; anything else is not authenticated. */
function reviews(overrides: Partial<Record<string, () => Promise<unknown>>> = {}) {
  const seen: string[] = [];
  const review: AgentTokenReview = async (token) => {
    seen.push(nameOf(token));
    const override = overrides[nameOf(token)];
    if (override) return (await override()) as never;
    return nameOf(token) === 'agent-token' ? AGENT : null;
  };
  return { review, seen };
}

async function status(promise: Promise<unknown>): Promise<number | string> {
  try {
    const caller = await promise;
    return (caller as { kind: string }).kind;
  } catch (error) {
    return (error as { status?: number }).status ?? String(error);
  }
}

describe('CallerAuthenticator', () => {
  const tokens = parseApiTokens(['all-merchants', 'acme-only@acme']);

  it('resolves static tokens to dispatchers with their scope; unknown or malformed credentials are 401', async () => {
    const callers = new CallerAuthenticator({ dispatcherTokens: tokens, agents: null, allowUnauthenticated: true });
    expect(await callers.authenticate('Bearer all-merchants')).toEqual({ kind: 'dispatcher', merchants: null });
    expect(await callers.authenticate('bearer acme-only')).toEqual({ kind: 'dispatcher', merchants: ['acme'] });
    // Configured credentials are enforced even with ALLOW_UNAUTHENTICATED.
    for (const header of [undefined, '', 'Bearer nope', 'Basic YWxsLW1lcmNoYW50cw==', 'Bearer all-merchants extra', 'acme-only@acme', 'Bearer acme-only@acme']) {
      expect({ header, answer: await status(callers.authenticate(header)) }).toEqual({ header, answer: 401 });
    }
  });

  it('with agent tokens: a non-static bearer token is reviewed; unauthenticated is 401, a failed review 503', async () => {
    const { review, seen } = reviews({ 'api-down': () => Promise.reject(new Error('connect ECONNREFUSED')) });
    const callers = new CallerAuthenticator({ dispatcherTokens: tokens, agents: new CachedAgentTokens(review, { ttlMs: 0 }), allowUnauthenticated: false });
    expect(await callers.authenticate(`Bearer ${jwt('agent-token')}`)).toEqual({ kind: 'agent', ...AGENT });
    expect(await status(callers.authenticate(`Bearer ${jwt('someone-else')}`))).toBe(401);
    expect(await status(callers.authenticate(`Bearer ${jwt('api-down')}`))).toBe(503);
    await expect(callers.authenticate(`Bearer ${jwt('api-down')}`)).rejects.toMatchObject({ code: 'AUTH_UNAVAILABLE' });
    expect(await status(callers.authenticate(undefined))).toBe(401);
    // Static tokens never reach the cluster.
    await callers.authenticate('Bearer all-merchants');
    expect(seen).not.toContain('all-merchants');
  });

  it('a reviewed token bound to no pod is not a voice agent: 401', async () => {
    const { review } = reviews({ 'controller-token': async () => ({ podName: null, podUid: null, username: 'system:serviceaccount:kube-system:x' }) });
    const callers = new CallerAuthenticator({ dispatcherTokens: [], agents: new CachedAgentTokens(review, { ttlMs: 0 }), allowUnauthenticated: false });
    expect(await status(callers.authenticate(`Bearer ${jwt('controller-token')}`))).toBe(401);
  });

  it('open mode: no API_TOKENS + ALLOW_UNAUTHENTICATED serves requests without a token, but an agent token is still an agent', async () => {
    const { review } = reviews();
    const callers = new CallerAuthenticator({ dispatcherTokens: [], agents: new CachedAgentTokens(review, { ttlMs: 0 }), allowUnauthenticated: true });
    expect(await callers.authenticate(undefined)).toEqual({ kind: 'open' });
    expect(await callers.authenticate(`Bearer ${jwt('agent-token')}`)).toEqual({ kind: 'agent', ...AGENT });
    expect(await status(callers.authenticate('Bearer forged'))).toBe(401);
    expect(callers.describe()).toMatch(/OPEN/);
  });

  it('agent tokens without ALLOW_UNAUTHENTICATED: no token is 401', async () => {
    const callers = new CallerAuthenticator({ dispatcherTokens: [], agents: new CachedAgentTokens(reviews().review, { ttlMs: 0 }), allowUnauthenticated: false });
    expect(await status(callers.authenticate(undefined))).toBe(401);
    expect(callers.describe()).not.toMatch(/OPEN/);
  });

  it('nothing configured at all (the app starts so only with ALLOW_UNAUTHENTICATED): every request is open', async () => {
    const callers = new CallerAuthenticator({ dispatcherTokens: [], agents: null, allowUnauthenticated: true });
    expect(await callers.authenticate(undefined)).toEqual({ kind: 'open' });
    expect(await callers.authenticate('Bearer anything')).toEqual({ kind: 'open' });
  });
});

describe('CachedAgentTokens', () => {
  it('reuses an accepted review for the TTL, then asks again (a deleted pod\'s token stops working)', async () => {
    let now = 1000;
    let valid = true;
    const asked: string[] = [];
    const cache = new CachedAgentTokens(async (token) => {
      asked.push(token);
      return valid ? AGENT : null;
    }, { ttlMs: 5000, maxEntries: 100, now: () => now });
    expect(await cache.verify('agent-token')).toEqual(AGENT);
    valid = false;
    now += 4999;
    expect(await cache.verify('agent-token')).toEqual(AGENT);
    now += 1;
    expect(await cache.verify('agent-token')).toBeNull();
    expect(asked).toEqual(['agent-token', 'agent-token']);
  });

  it('keeps a refusal apart and briefly: a token refused then made valid works within seconds, not the accepted TTL', async () => {
    let now = 1000;
    let valid = false;
    let calls = 0;
    const cache = new CachedAgentTokens(async () => {
      calls += 1;
      return valid ? AGENT : null;
    }, { ttlMs: 60000, now: () => now });
    expect(await cache.verify('flipping-token')).toBeNull();
    valid = true;
    now += 4999;
    expect(await cache.verify('flipping-token')).toBeNull();
    expect(calls).toBe(1);
    now += 1;
    expect(await cache.verify('flipping-token')).toEqual(AGENT);
    expect(calls).toBe(2);
    // Never longer than the accepted TTL either: with a 1 s TTL a refusal is asked again after 1 s, not 5 s.
    let shortCalls = 0;
    const short = new CachedAgentTokens(async () => {
      shortCalls += 1;
      return null;
    }, { ttlMs: 1000, now: () => now });
    expect(await short.verify('x')).toBeNull();
    now += 999;
    expect(await short.verify('x')).toBeNull();
    expect(shortCalls).toBe(1);
    now += 1;
    expect(await short.verify('x')).toBeNull();
    expect(shortCalls).toBe(2);
  });

  it('shares one review between concurrent requests (TTL 0 too), and does not keep a failed one', async () => {
    for (const ttlMs of [60000, 0]) {
      let calls = 0;
      let fail = true;
      const cache = new CachedAgentTokens(async () => {
        calls += 1;
        await new Promise((resolve) => setImmediate(resolve));
        if (fail) throw new Error('API down');
        return AGENT;
      }, { ttlMs });
      const answers = await Promise.allSettled(Array.from({ length: 10 }, () => cache.verify('agent-token')));
      expect(answers.every((answer) => answer.status === 'rejected')).toBe(true);
      expect(calls).toBe(1);
      fail = false;
      const shared = await Promise.all(Array.from({ length: 10 }, () => cache.verify('agent-token')));
      expect(shared).toEqual(Array.from({ length: 10 }, () => AGENT));
      expect(calls).toBe(2);
    }
  });

  it('caps distinct reviews in flight: beyond the cap the request fails at once, the cluster is not asked', async () => {
    const releases: (() => void)[] = [];
    let calls = 0;
    const cache = new CachedAgentTokens(async () => {
      calls += 1;
      await new Promise<void>((resolve) => releases.push(resolve));
      return AGENT;
    }, { ttlMs: 60000, maxInFlight: 3 });
    const first = ['a', 'b', 'c'].map((token) => cache.verify(token));
    await expect(cache.verify('d')).rejects.toBeInstanceOf(ReviewsSaturatedError);
    // A token already in flight joins its review, cap or not.
    const joined = cache.verify('a');
    expect(calls).toBe(3);
    releases.forEach((release) => release());
    expect(await Promise.all([...first, joined])).toEqual([AGENT, AGENT, AGENT, AGENT]);
    // Room again once they settle.
    const next = cache.verify('d');
    releases[3]();
    expect(await next).toEqual(AGENT);
  });

  it('tells what became of each review it wanted: authenticated, refused, saturated, timeout, failed (reused answers not)', async () => {
    const results: TokenReviewResult[] = [];
    const releases: (() => void)[] = [];
    const cache = new CachedAgentTokens(async (token) => {
      if (token === 'slow') await new Promise<void>((resolve) => releases.push(resolve));
      if (token === 'timeout') throw new TokenReviewTimeoutError(3000);
      if (token === 'down') throw new Error('connect ECONNREFUSED 10.0.0.1:443');
      return token === 'refused' ? null : AGENT;
    }, { ttlMs: 60000, maxInFlight: 1, onReview: (result) => results.push(result) });
    expect(await cache.verify('ok')).toEqual(AGENT);
    expect(await cache.verify('ok')).toEqual(AGENT);
    expect(await cache.verify('refused')).toBeNull();
    await expect(cache.verify('timeout')).rejects.toBeInstanceOf(TokenReviewTimeoutError);
    await expect(cache.verify('down')).rejects.toThrow(/ECONNREFUSED/);
    const slow = cache.verify('slow');
    await expect(cache.verify('other')).rejects.toBeInstanceOf(ReviewsSaturatedError);
    releases[0]();
    await slow;
    expect(results).toEqual(['authenticated', 'refused', 'timeout', 'failed', 'saturated', 'authenticated']);
  });

  it('the 503 says why in its log detail: one line, the cause kind first, never token material', async () => {
    const secret = jwt('leaky-token-material');
    const callers = (error: unknown) => new CallerAuthenticator({ dispatcherTokens: [], agents: new CachedAgentTokens(() => Promise.reject(error), { ttlMs: 0 }), allowUnauthenticated: false });
    const detailOf = async (error: unknown) => {
      const refused = await callers(error).authenticate(`Bearer ${secret}`).catch((caught: unknown) => caught);
      expect(refused).toBeInstanceOf(IdentityUnavailableError);
      expect(refused).toMatchObject({ status: 503, code: 'AUTH_UNAVAILABLE', message: 'caller identity could not be checked, retry shortly' });
      return (refused as IdentityUnavailableError).logDetail!;
    };
    expect(await detailOf(new TokenReviewTimeoutError(3000))).toBe('timeout: TokenReview did not answer within 3000 ms');
    expect(await detailOf(new ReviewsSaturatedError(32))).toBe('saturated: 32 TokenReviews already in flight');
    // The client's ApiException message carries the body and headers; only the code and the Status's words are logged.
    const status = JSON.stringify({ kind: 'Status', code: 403, reason: 'Forbidden', message: 'tokenreviews.authentication.k8s.io is forbidden' });
    const apiError = new ApiException(403, `HTTP-Code: 403\nMessage: Unknown API Status Code!\nBody: ${status}\nHeaders: {"x":"${secret}"}`, status, { x: secret });
    expect(await detailOf(apiError)).toBe('failed: TokenReview API answered HTTP 403 Forbidden: tokenreviews.authentication.k8s.io is forbidden');
    const echoed = await detailOf(new Error(`request failed\nspec.token ${secret}\n    at somewhere (file.js:1:1)`));
    expect(echoed).toBe('failed: request failed spec.token [token] at somewhere (file.js:1:1)');
    expect(describeReviewFailure(new Error('x'.repeat(1000)))).toHaveLength(300);
  });

  it('stays within its bound, least recently used out first, and keys entries by hash, not by token', async () => {
    let now = 0;
    const cache = new CachedAgentTokens(async (token) => (token.startsWith('ok') ? AGENT : null), { ttlMs: 60000, maxEntries: 3, now: () => now });
    for (const token of ['t1', 't2', 't3', 't4', 't5', 'ok1', 'ok2', 'ok3']) await cache.verify(token);
    expect(cache.size).toBe(6);
    const maps = cache as unknown as { accepted: Map<string, unknown>; refused: Map<string, unknown> };
    const keys = [...maps.accepted.keys(), ...maps.refused.keys()];
    expect(keys.some((key) => ['t1', 't2', 't3', 't4', 't5', 'ok1', 'ok2', 'ok3'].includes(key))).toBe(false);
    // ok1 used again is kept over ok2 when ok4 arrives.
    now += 1;
    await cache.verify('ok1');
    await cache.verify('ok4');
    const kept = [...maps.accepted.keys()];
    expect(kept).toHaveLength(3);
    const digest = (token: string) => createHash('sha256').update(token).digest('base64');
    expect(kept).toContain(digest('ok1'));
    expect(kept).not.toContain(digest('ok2'));
  });

  it('with a TTL of 0 reviews every request', async () => {
    let calls = 0;
    const cache = new CachedAgentTokens(async () => {
      calls += 1;
      return AGENT;
    }, { ttlMs: 0 });
    await cache.verify('agent-token');
    await cache.verify('agent-token');
    expect(calls).toBe(2);
    expect(cache.size).toBe(0);
  });
});

describe('agent token shape', () => {
  it('only three base64url segments of at most 8 KiB may be reviewed', () => {
    expect(isJwtShaped(jwt('agent-token'))).toBe(true);
    for (const token of ['', 'plain', 'a.b', 'a.b.c.d', 'a..c', 'a.b.c=', 'a.b/c.d', `a.b.${'c'.repeat(MAX_AGENT_TOKEN_BYTES)}`]) {
      expect({ token: token.slice(0, 20), shaped: isJwtShaped(token) }).toEqual({ token: token.slice(0, 20), shaped: false });
    }
  });

  it('a flood of garbage tokens is 401 without a single review', async () => {
    const { review, seen } = reviews();
    const callers = new CallerAuthenticator({ dispatcherTokens: [], agents: new CachedAgentTokens(review, { ttlMs: 30000 }), allowUnauthenticated: false });
    for (let index = 0; index < 200; index += 1) {
      expect(await status(callers.authenticate(`Bearer garbage-${index}`))).toBe(401);
    }
    expect(await status(callers.authenticate(`Bearer a.b.${'c'.repeat(MAX_AGENT_TOKEN_BYTES)}`))).toBe(401);
    expect(seen).toEqual([]);
  });
});

describe('which agent identities count (SPEC 10.1: namespace, ServiceAccount, pod UID)', () => {
  const as = (username: string) => ({ ...AGENT, username });

  it('a ServiceAccount of the agents\' namespace only (of the allow-list when one is given)', () => {
    const anyAccount = agentNamespacePolicy('voice-system');
    expect(anyAccount(AGENT)).toBe(true);
    expect(anyAccount(as('system:serviceaccount:voice-system:other'))).toBe(true);
    for (const username of ['system:serviceaccount:intruders:voice-agent', 'system:serviceaccount:voice-system-2:voice-agent', 'system:serviceaccount:voice-system:', 'system:serviceaccount:voice-system:a:b', 'voice-system:voice-agent', 'admin']) {
      expect({ username, admitted: anyAccount(as(username)) }).toEqual({ username, admitted: false });
    }
    const listed = agentNamespacePolicy('voice-system', ['voice-agent', 'voice-agent-v2']);
    expect(listed(AGENT)).toBe(true);
    expect(listed(as('system:serviceaccount:voice-system:voice-agent-v2'))).toBe(true);
    expect(listed(as('system:serviceaccount:voice-system:default'))).toBe(false);
  });

  it('an identity not admitted is 401 and cached as a refusal (one review, counted refused)', async () => {
    const { review, seen } = reviews();
    const results: TokenReviewResult[] = [];
    let asked = 0;
    const agents = new CachedAgentTokens(review, { ttlMs: 30000, onReview: (result) => results.push(result), admit: () => { asked += 1; return false; } });
    const callers = new CallerAuthenticator({ dispatcherTokens: [], agents, allowUnauthenticated: false });
    expect(await status(callers.authenticate(`Bearer ${jwt('agent-token')}`))).toBe(401);
    expect(await status(callers.authenticate(`Bearer ${jwt('agent-token')}`))).toBe(401);
    expect({ seen, asked, results }).toEqual({ seen: ['agent-token'], asked: 1, results: ['refused'] });
  });

  it('an admission check that fails (Redis) is 503 AUTH_UNAVAILABLE, not cached, not counted as a failed review', async () => {
    const { review, seen } = reviews();
    const results: TokenReviewResult[] = [];
    let down = true;
    const admit = async () => {
      if (down) throw new AgentAdmissionError('pod record of voice-agent-0 could not be read: Connection is closed.');
      return true;
    };
    const callers = new CallerAuthenticator({ dispatcherTokens: [], agents: new CachedAgentTokens(review, { ttlMs: 30000, onReview: (result) => results.push(result), admit }), allowUnauthenticated: false });
    const failed = await callers.authenticate(`Bearer ${jwt('agent-token')}`).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(IdentityUnavailableError);
    expect(failed).toMatchObject({ status: 503, code: 'AUTH_UNAVAILABLE' });
    down = false;
    expect(await callers.authenticate(`Bearer ${jwt('agent-token')}`)).toEqual({ kind: 'agent', ...AGENT });
    expect(seen).toEqual(['agent-token', 'agent-token']);
    expect(results).toEqual(['authenticated']);
  });

  it('on a route that admits no agent, a JWT-shaped token is never reviewed: 401, or 403 when it claims a ServiceAccount', async () => {
    const { review, seen } = reviews();
    const callers = new CallerAuthenticator({ dispatcherTokens: parseApiTokens(['dispatch']), agents: new CachedAgentTokens(review, { ttlMs: 30000 }), allowUnauthenticated: false });
    for (let index = 0; index < 100; index += 1) {
      expect(await status(callers.authenticate(`Bearer ${jwt(`garbage-${index}`)}`, ['dispatcher']))).toBe(401);
    }
    const claiming = (aud: unknown) => `eyJhbGciOiJSUzI1NiJ9.${Buffer.from(JSON.stringify({ sub: 'system:serviceaccount:voice-system:voice-agent', aud })).toString('base64url')}.c2lnbmF0dXJl`;
    expect(claimsServiceAccount(claiming(['smart-router']), 'smart-router')).toBe(true);
    expect(claimsServiceAccount(claiming('smart-router'), 'smart-router')).toBe(true);
    expect(claimsServiceAccount(claiming(['vault']), 'smart-router')).toBe(false);
    expect(claimsServiceAccount(claiming(['vault']))).toBe(true);
    expect(claimsServiceAccount(jwt('agent-token'))).toBe(false);
    expect(await status(callers.authenticate(`Bearer ${claiming(['smart-router'])}`, ['dispatcher']))).toBe(403);
    expect(await status(callers.authenticate('Bearer dispatch', ['dispatcher']))).toBe('dispatcher');
    expect(seen).toEqual([]);
    // Where agents are admitted the same token is reviewed.
    expect(await status(callers.authenticate(`Bearer ${jwt('agent-token')}`, ['dispatcher', 'agent']))).toBe('agent');
    expect(seen).toEqual(['agent-token']);
  });
});
