import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { SimCluster } from '@smart-router/sim';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { bootstrap } from './main';

/**
 * SPEC 10.1/10.2: agent tokens are reviewed by the cluster, but a flood of
 * tokens must not become a flood of TokenReviews. Counted at the simulated
 * Kubernetes API (tools/sim), with the real @kubernetes/client-node.
 */
describe('allocation API agent tokens under a flood (TokenReview load)', () => {
  let dir: string;
  let cluster: SimCluster;
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  let base: string;
  /** The app's log lines (warn and up): why an identity could not be checked is said there. */
  let output: string[];
  let stdout: jest.SpyInstance;

  beforeAll(async () => {
    output = [];
    stdout = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      output.push(String(chunk));
      return true;
    });
    dir = mkdtempSync(join(tmpdir(), 'sr-token-flood-'));
    const kubeconfig = join(dir, 'kubeconfig');
    cluster = await SimCluster.start({ replicas: 1, kubeconfigPath: kubeconfig, timings: { readyDelayMs: 10, terminationDelayMs: 10, recreateDelayMs: 10 } });
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    // The pod record carries the simulated pod's UID, as pod-watcher writes it: an agent token must match it.
    await pool.scripts.upsertPod({ name: 'voice-agent-0', uid: cluster.getPod('voice-agent-0')!.metadata.uid, ready: true, terminating: false, metadata: {}, pinnedTier: '', term: null });
    app = await bootstrap({
      REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'warn', VOICE_AGENT_BASE_URL: 'wss://buddy.example.test',
      API_TOKENS: 'dispatch-all', AGENT_TOKEN_AUDIENCE: 'smart-router', KUBECONFIG: kubeconfig,
    });
    const address = app.getHttpServer().address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(async () => {
    stdout.mockRestore();
    await app.close();
    await pool.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const release = async (token: string) => {
    const response = await fetch(`${base}/api/v1/release`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: '{"call_sid":"flood-none"}',
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  it('1000 distinct garbage tokens (and an oversized JWT-shaped one) are 401 with 0 TokenReviews', async () => {
    const before = cluster.state.tokenReviews;
    for (let batch = 0; batch < 20; batch += 1) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, index) => release(`garbage-${batch}-${index}-${'x'.repeat(index)}`)));
      for (const answer of answers) expect(answer).toEqual({ status: 401, body: { error: expect.any(String), code: 'UNAUTHORIZED' } });
    }
    expect((await release(`a.b.${'c'.repeat(9000)}`)).status).toBe(401);
    expect(cluster.state.tokenReviews).toBe(before);
  });

  it('50 concurrent requests with the same new agent token cause exactly 1 TokenReview', async () => {
    const token = cluster.podToken('voice-agent-0');
    const before = cluster.state.tokenReviews;
    const answers = await Promise.all(Array.from({ length: 50 }, () => release(token)));
    // Authenticated as the pod: the call is unknown, not the caller.
    for (const answer of answers) expect(answer).toMatchObject({ status: 404, body: { code: 'CALL_NOT_FOUND' } });
    expect(cluster.state.tokenReviews - before).toBe(1);
  });

  it('a review that failed says why in one log line (no token) and is counted by result; saturation apart from API failure', async () => {
    const metric = async (result: string) => Number(new RegExp(`smart_router_token_reviews_total\\{[^}]*result="${result}"[^}]*\\} (\\d+)`).exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? 0);
    const authUnavailable = () => output.filter((line) => line.includes('AUTH_UNAVAILABLE'));

    // The API answers 500: 503, logged as an API failure with its HTTP status, counted as failed.
    cluster.tokenReviewFaults({ failure: 500 });
    const token = cluster.podToken('voice-agent-0', { audience: 'failing' });
    expect(await release(token)).toEqual({ status: 503, body: { error: expect.any(String), code: 'AUTH_UNAVAILABLE' } });
    expect(authUnavailable()).toHaveLength(1);
    expect(authUnavailable()[0]).toMatch(/-> 503 AUTH_UNAVAILABLE: .*\(failed: TokenReview API answered HTTP 500 InternalError: TokenReview failed \(simulated fault\)\)/);
    expect(await metric('failed')).toBe(1);
    cluster.tokenReviewFaults({ failure: null });

    // A slow API and 33 distinct tokens at once: 32 reviews in flight, the 33rd refused at once (saturated), not an API failure.
    cluster.tokenReviewFaults({ delayMs: 1000 });
    const tokens = Array.from({ length: 33 }, (_, index) => cluster.podToken('voice-agent-0', { audience: `elsewhere-${index}` }));
    const answers = await Promise.all(tokens.map((each) => release(each)));
    cluster.tokenReviewFaults({ delayMs: 0 });
    expect(answers.filter((answer) => answer.status === 503)).toEqual([{ status: 503, body: { error: expect.any(String), code: 'AUTH_UNAVAILABLE' } }]);
    expect(answers.filter((answer) => answer.status === 401)).toHaveLength(32);
    expect(cluster.tokenReviewLoad.maxInFlight).toBe(32);
    expect(authUnavailable()).toHaveLength(2);
    expect(authUnavailable()[1]).toMatch(/-> 503 AUTH_UNAVAILABLE: .*\(saturated: 32 TokenReviews already in flight\)/);
    expect(await metric('saturated')).toBe(1);
    expect(await metric('refused')).toBe(32);
    expect(await metric('failed')).toBe(1);
    // One line each, no stack, never the token.
    for (const line of authUnavailable()) {
      expect(line.trim().split('\n')).toHaveLength(1);
      expect(line).not.toMatch(/\n\s+at /);
      for (const each of [token, ...tokens]) expect(line).not.toContain(each.split('.')[1]);
    }
  });
});
