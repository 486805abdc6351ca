import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { CachedAgentTokens, ReviewsSaturatedError } from '@smart-router/http';
import { TokenReviewRepository, TokenReviewTimeoutError } from '@smart-router/kube';
import { waitFor } from '@smart-router/testing';
import { SimCluster } from './sim-cluster';
import { MAX_SIM_TOKENS } from './cluster';
import { PodTokenSource } from './pod-tokens';

const run = promisify(execFile);
const NS = 'voice-system';

/**
 * SPEC 10.1 in the simulated cluster: TokenRequest mints pod-bound
 * ServiceAccount tokens, TokenReview answers who they are, driven by the
 * real @kubernetes/client-node (the router's TokenReviewRepository) and kubectl.
 */
describe('simulated ServiceAccount tokens (TokenRequest, TokenReview)', () => {
  let dir: string;
  let cluster: SimCluster;
  let config: KubeConfig;
  let reviews: TokenReviewRepository;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sim-tokens-'));
    cluster = await SimCluster.start({ replicas: 3, kubeconfigPath: join(dir, 'kubeconfig'), timings: { readyDelayMs: 20, terminationDelayMs: 50, recreateDelayMs: 20 } });
    config = new KubeConfig();
    config.loadFromFile(join(dir, 'kubeconfig'));
    reviews = new TokenReviewRepository(config, 'smart-router');
  });

  afterEach(async () => {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const requestToken = (pod: string, audiences: string[], uid?: string) =>
    config.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
      name: 'voice-agent',
      namespace: NS,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences, expirationSeconds: 3600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod, uid } } },
    });

  it('a pod-bound token for the audience reviews as that pod; another audience or a made-up token does not', async () => {
    const uid = cluster.getPod('voice-agent-1')!.metadata.uid;
    const issued = await requestToken('voice-agent-1', ['smart-router'], uid);
    expect(issued.status?.token).toEqual(expect.any(String));
    expect(Date.parse(String(issued.status?.expirationTimestamp))).toBeGreaterThan(Date.now() + 3000 * 1000);
    expect(await reviews.review(issued.status!.token)).toEqual({ username: 'system:serviceaccount:voice-system:voice-agent', podName: 'voice-agent-1', podUid: uid });

    const elsewhere = await requestToken('voice-agent-1', ['vault']);
    expect(await reviews.review(elsewhere.status!.token)).toBeNull();
    expect(await reviews.review(`${issued.status!.token}x`)).toBeNull();
    expect(await reviews.review('')).toBeNull();
  });

  it('a token of a same-named pod in another namespace reviews as that namespace\'s ServiceAccount and pod UID, like a real API server', async () => {
    const token = cluster.podToken('voice-agent-1', { namespace: 'intruders', podUid: 'their-uid' });
    expect(await reviews.review(token)).toEqual({ username: 'system:serviceaccount:intruders:voice-agent', podName: 'voice-agent-1', podUid: 'their-uid' });
    expect(() => cluster.state.requestForeignPodToken(NS, 'voice-agent', { name: 'voice-agent-1', uid: 'x' }, ['smart-router'])).toThrow(/another namespace/);
  });

  it('a token not bound to a pod authenticates without a pod name', async () => {
    const token = cluster.state.requestToken('controller', { audiences: ['smart-router'] }).token;
    expect(await reviews.review(token)).toEqual({ username: 'system:serviceaccount:voice-system:controller', podName: null, podUid: null });
  });

  it('keeps at most MAX_SIM_TOKENS tokens: a client asking in a loop cannot grow the simulated API without bound', async () => {
    const first = cluster.state.requestToken('controller', { audiences: ['smart-router'] }).token;
    for (let index = 0; index < MAX_SIM_TOKENS; index += 1) cluster.state.requestToken('controller', { audiences: ['smart-router'] });
    expect(await reviews.review(first)).toBeNull();
    const newest = cluster.state.requestToken('controller', { audiences: ['smart-router'] }).token;
    expect(await reviews.review(newest)).toMatchObject({ username: 'system:serviceaccount:voice-system:controller' });
  });

  it('refuses a token for a pod that does not exist or a UID that is not the pod\'s', async () => {
    await expect(requestToken('voice-agent-9', ['smart-router'])).rejects.toMatchObject({ code: 404 });
    await expect(requestToken('voice-agent-0', ['smart-router'], 'not-its-uid')).rejects.toMatchObject({ code: 409 });
  });

  it('works while its pod terminates, stops once the pod is gone, and stays dead for the recreated pod', async () => {
    const oldUid = cluster.getPod('voice-agent-2')!.metadata.uid;
    const token = cluster.podToken('voice-agent-2');
    cluster.deletePod('voice-agent-2', 300);
    expect(cluster.getPod('voice-agent-2')?.metadata.deletionTimestamp).toBeDefined();
    expect(await reviews.review(token)).toMatchObject({ podName: 'voice-agent-2' });
    await waitFor(() => cluster.getPod('voice-agent-2') && cluster.getPod('voice-agent-2')!.metadata.uid !== oldUid, { what: 'voice-agent-2 recreated' });
    expect(await reviews.review(token)).toBeNull();
    expect(await reviews.review(cluster.podToken('voice-agent-2'))).toMatchObject({ podName: 'voice-agent-2', podUid: cluster.getPod('voice-agent-2')!.metadata.uid });
  });

  it('the simulated agents\' token source asks once per pod incarnation, and again after a recreation', async () => {
    const source = new PodTokenSource({ apiUrl: cluster.url, namespace: NS, serviceAccount: 'voice-agent' });
    const first = await source.tokenFor('voice-agent-0');
    expect(await source.tokenFor('voice-agent-0')).toBe(first);
    expect(await reviews.review(first!)).toMatchObject({ podName: 'voice-agent-0' });
    expect(await source.tokenFor('voice-agent-7')).toBeNull();
    const uid = cluster.getPod('voice-agent-0')!.metadata.uid;
    cluster.deletePod('voice-agent-0');
    await waitFor(() => cluster.getPod('voice-agent-0') && cluster.getPod('voice-agent-0')!.metadata.uid !== uid, { what: 'voice-agent-0 recreated' });
    const second = await source.tokenFor('voice-agent-0');
    expect(second).not.toBe(first);
    expect(await reviews.review(second!)).toMatchObject({ podName: 'voice-agent-0' });
    expect(await reviews.review(first!)).toBeNull();
  });

  it('a review that the API does not answer rejects (the router fails closed), it does not read as "not authenticated"', async () => {
    const url = cluster.url;
    await cluster.stop();
    const unreachable = new KubeConfig();
    unreachable.loadFromOptions({
      clusters: [{ name: 'c', server: url, skipTLSVerify: true }],
      users: [{ name: 'u', token: 'x' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    await expect(new TokenReviewRepository(unreachable, 'smart-router', 1000).review('anything')).rejects.toBeDefined();
    cluster = await SimCluster.start({ replicas: 1 });
  });

  it('a slow API: a review is cancelled at its deadline, so reviews open at the API server never exceed the in-flight cap', async () => {
    // The API answers after 10 s; the router gives up after 200 ms. Were the timed-out
    // requests left running, each round would add 4 more open at the API server.
    cluster.tokenReviewFaults({ delayMs: 10000 });
    const slow = new TokenReviewRepository(config, 'smart-router', 200);
    const cap = 4;
    const cache = new CachedAgentTokens((token) => slow.review(token), { ttlMs: 30000, maxInFlight: cap });
    const before = cluster.state.tokenReviews;
    for (let round = 0; round < 3; round += 1) {
      const tokens = Array.from({ length: cap }, (_, index) => cluster.podToken(`voice-agent-${index % 3}`, { audience: `round-${round}-${index}` }));
      const answers = Promise.allSettled(tokens.map((token) => cache.verify(token)));
      await waitFor(() => cluster.tokenReviewLoad.inFlight === cap, { what: `${cap} reviews open at the API`, timeoutMs: 2000 });
      // Saturated: refused at once, the API not asked.
      await expect(cache.verify(cluster.podToken('voice-agent-0', { audience: `extra-${round}` }))).rejects.toBeInstanceOf(ReviewsSaturatedError);
      for (const answer of await answers) expect(answer).toMatchObject({ status: 'rejected', reason: expect.any(TokenReviewTimeoutError) });
      // The timed-out requests are gone from the API server, not just from the router.
      await waitFor(() => cluster.tokenReviewLoad.inFlight === 0, { what: 'cancelled reviews closed at the API', timeoutMs: 1000 });
    }
    expect(cluster.tokenReviewLoad.maxInFlight).toBe(cap);
    expect(cluster.state.tokenReviews - before).toBe(0);
    // Fast again: reviews answer.
    cluster.tokenReviewFaults({ delayMs: 0 });
    expect(await cache.verify(cluster.podToken('voice-agent-1'))).toMatchObject({ podName: 'voice-agent-1' });
  });

  it('kubectl create token works against it with the written kubeconfig', async () => {
    const { stdout } = await run('kubectl', ['--kubeconfig', join(dir, 'kubeconfig'), 'create', 'token', 'voice-agent', '--audience', 'smart-router', '--bound-object-kind', 'Pod', '--bound-object-name', 'voice-agent-0'], { timeout: 20000 });
    expect(await reviews.review(stdout.trim())).toMatchObject({ podName: 'voice-agent-0' });
  }, 30000);
});
