import { ConfigError, EnvReader, readRedisSettings } from './index';

const read = (env: Record<string, string>) => readRedisSettings(new EnvReader(env));

describe('Redis topology settings', () => {
  it('is one server from REDIS_URL by default, with no replica acknowledgements', () => {
    expect(read({})).toMatchObject({ url: 'redis://127.0.0.1:6379', topology: { kind: 'standalone' }, replicaAcks: 0, waitTimeoutMs: 200 });
  });

  it('reads sentinels, the master name and the sentinel password', () => {
    expect(read({ REDIS_SENTINELS: '10.0.0.1:26379, sentinel-b:26380', REDIS_SENTINEL_MASTER: 'voice', REDIS_SENTINEL_PASSWORD: 's3cret' }).topology).toEqual({
      kind: 'sentinel',
      sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: 'sentinel-b', port: 26380 }],
      masterName: 'voice',
      sentinelPassword: 's3cret',
    });
  });

  it('refuses sentinels without a master name, naming the variable', () => {
    expect(() => read({ REDIS_SENTINELS: '127.0.0.1:26379' })).toThrow(/REDIS_SENTINEL_MASTER is required/);
  });

  it('refuses cluster nodes without a hash-tagged prefix, naming REDIS_PREFIX', () => {
    expect(() => read({ REDIS_CLUSTER_NODES: '127.0.0.1:7000' })).toThrow(ConfigError);
    expect(() => read({ REDIS_CLUSTER_NODES: '127.0.0.1:7000' })).toThrow(/REDIS_PREFIX must carry a hash tag/);
    expect(() => read({ REDIS_CLUSTER_NODES: '127.0.0.1:7000', REDIS_PREFIX: 'voice{}:' })).toThrow(/REDIS_PREFIX/);
    expect(read({ REDIS_CLUSTER_NODES: '127.0.0.1:7000,127.0.0.1:7001', REDIS_PREFIX: '{voice}:' }).topology).toEqual({
      kind: 'cluster',
      nodes: [{ host: '127.0.0.1', port: 7000 }, { host: '127.0.0.1', port: 7001 }],
    });
  });

  it.each([
    ['REDIS_SENTINELS', { REDIS_SENTINELS: 'no-port', REDIS_SENTINEL_MASTER: 'm' }],
    ['REDIS_CLUSTER_NODES', { REDIS_CLUSTER_NODES: '127.0.0.1:99999', REDIS_PREFIX: '{v}:' }],
    ['REDIS_CLUSTER_NODES', { REDIS_CLUSTER_NODES: '127.0.0.1:7000', REDIS_SENTINELS: '127.0.0.1:26379', REDIS_SENTINEL_MASTER: 'm', REDIS_PREFIX: '{v}:' }],
    ['REDIS_REPLICA_ACKS', { REDIS_REPLICA_ACKS: '-1' }],
    ['REDIS_WAIT_TIMEOUT_MS', { REDIS_WAIT_TIMEOUT_MS: '0' }],
  ])('stops on a bad %s', (variable, env) => {
    expect(() => read(env)).toThrow(new RegExp(`^invalid configuration: ${variable} `));
  });
});
