import { KubeConfig } from '@kubernetes/client-node';
import { EnvReader } from '@smart-router/config';
import { Telemetry } from '@smart-router/telemetry';
import { PoolFixture, createPoolFixture, sharedRedisUrl } from '@smart-router/testing';
import { PoolReconcileService } from './pool-reconcile.service';
import { readReconcilerConfig } from './reconciler.config';

/**
 * A pod's agent version (SPEC 12) is read from VERSION_LABEL as the reconciler's
 * config parsed it: the default lives in reconciler.config.ts only (the service
 * requires the label, it has no default of its own to drift from the config's).
 */
describe('pod events record the version from the configured VERSION_LABEL', () => {
  const logger = { log: () => undefined, warn: () => undefined, error: () => undefined };
  const telemetry = Telemetry.start('version-label-spec');
  let pool: PoolFixture;

  beforeEach(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl(), tierConfig: '{"standard":{"type":"exclusive","target":0}}', pods: [] });
  });
  afterEach(() => pool.close());

  const serviceFor = (env: Record<string, string>) => {
    const config = readReconcilerConfig(new EnvReader(env));
    return new PoolReconcileService(pool.redis, pool.keys, pool.scripts, new KubeConfig(), config.common,
      { namespace: config.namespace, labelSelector: config.labelSelector, versionLabel: config.versionLabel }, telemetry, logger);
  };
  const upsert = (service: PoolReconcileService, name: string, labels: Record<string, string>) => service.applyEvent({
    type: 'pod.upsert', name, uid: `uid-${name}`, ready: true, terminating: false, labels, resourceVersion: '1', term: 1, trace: {},
  });

  it('VERSION_LABEL=agent-version: that label is the version, the default one is not', async () => {
    const service = serviceFor({ VERSION_LABEL: 'agent-version' });
    expect(await upsert(service, 'voice-agent-0', { 'agent-version': '3.0.0', 'app.kubernetes.io/version': '9.9.9' })).toBe(true);
    expect(await pool.redis.smembers(pool.keys.versionPods('3.0.0'))).toEqual(['voice-agent-0']);
    expect(await pool.redis.smembers(pool.keys.versionPods('9.9.9'))).toEqual([]);
  });

  it('VERSION_LABEL unset: the config\'s default, app.kubernetes.io/version', async () => {
    const service = serviceFor({});
    expect(await upsert(service, 'voice-agent-1', { 'app.kubernetes.io/version': '2.0.0' })).toBe(true);
    expect(await pool.redis.smembers(pool.keys.versionPods('2.0.0'))).toEqual(['voice-agent-1']);
  });
});
