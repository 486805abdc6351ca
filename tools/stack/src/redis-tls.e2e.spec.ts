import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type Redis from 'ioredis';
import { EnvReader, RedisSettings, readRedisSettings } from '@smart-router/config';
import { ACL_APPS, ACL_EXTRA_USERS, RedisKeys, redisAclFile } from '@smart-router/redis-keys';
import { PoolScripts, bullConnection, closeBullConnection, createRedis } from '@smart-router/redis-scripts';
import { RedisClusterNodes, RedisServer, SentinelGroup, TestCertificates, freePort, waitFor } from '@smart-router/testing';

/**
 * SPEC 10.1: `rediss://` works for every connection: one server (with mutual
 * TLS and an ACL user), a Sentinel group (sentinels, primary and replica all
 * TLS-only) and a Redis Cluster (TLS on the clients' port and the bus), each
 * through the one connection factory (request and worker profiles, BullMQ).
 * Certificates are made by openssl for this run. A client trusting another CA
 * is refused, and the built app's readiness says down.
 */

const ROOT = join(__dirname, '..', '..', '..');
const PASSWORD = 'allocation-api-tls-password-0123456789';

let certs: TestCertificates;
const cleanup: (() => Promise<unknown> | unknown)[] = [];

function settings(env: Record<string, string>): RedisSettings {
  return readRedisSettings(new EnvReader({ REDIS_TLS_CA_FILE: certs.files.ca, ...env }));
}

/** A script round trip on the request profile and a BullMQ job on the worker profile, through TLS. */
async function roundTrip(redisSettings: RedisSettings): Promise<void> {
  const redis = createRedis(redisSettings, 'request', 'tls-test');
  cleanup.push(() => redis.disconnect());
  await waitFor(() => redis.status === 'ready', { timeoutMs: 10000, what: 'a TLS connection' });
  const scripts = new PoolScripts(redis, new RedisKeys(redisSettings.prefix), { callTtlSeconds: 60, tombstoneTtlSeconds: 60, streamMaxLen: 100 });
  await expect(scripts.ping()).resolves.toBeTruthy();
  const connection = bullConnection(redisSettings, 'worker', 'tls-test-queue');
  const queue = new Queue('tls-check', { connection, prefix: `${redisSettings.prefix}bull` });
  try {
    await queue.add('check', { ok: true });
    expect((await queue.getJobCounts('waiting')).waiting).toBeGreaterThanOrEqual(1);
  } finally {
    await queue.close();
    await closeBullConnection(connection);
  }
}

beforeAll(() => {
  certs = TestCertificates.create();
});

afterAll(async () => {
  for (const step of cleanup.reverse()) await Promise.resolve(step()).catch(() => undefined);
  certs?.dispose();
}, 60000);

describe('rediss:// with a CA (REDIS_TLS_CA_FILE)', () => {
  let server: RedisServer;
  let dir = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sr-tls-acl-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const passwords = Object.fromEntries([...ACL_APPS, ...ACL_EXTRA_USERS].map((user) => [user, [user === 'allocation-api' ? PASSWORD : `${user.replace(/[^a-z]/g, '')}-password-0123456789`]]));
    writeFileSync(join(dir, 'users.acl'), redisAclFile('voice:', passwords, { hashed: true }));
    // Mutual TLS: the server also asks for a client certificate from our CA.
    server = await RedisServer.start(undefined, [], {
      security: { tls: { ...certs.files, authClients: true }, aclFile: join(dir, 'users.acl'), auth: { user: 'ops', password: 'ops-password-0123456789' } },
    });
    cleanup.push(() => server.dispose());
  });

  it('connects one server over mutual TLS as an ACL user (request, worker and BullMQ)', async () => {
    // The reconciler's user: the scripts and the job queue (allocation-api's may not touch BullMQ's keys).
    await roundTrip(settings({
      REDIS_URL: `rediss://reconciler:reconciler-password-0123456789@127.0.0.1:${server.port}`,
      REDIS_TLS_CERT_FILE: certs.files.clientCert,
      REDIS_TLS_KEY_FILE: certs.files.clientKey,
    }));
    // Without a client certificate the server (tls-auth-clients yes) hangs up.
    const anonymous = createRedis(settings({ REDIS_URL: `rediss://reconciler:reconciler-password-0123456789@127.0.0.1:${server.port}` }), 'request', 'no-client-cert');
    cleanup.push(() => anonymous.disconnect());
    await expect(anonymous.ping()).rejects.toThrow();
  });

  it('verifies the server name: REDIS_TLS_SERVERNAME must be a name the certificate carries', async () => {
    const wrongName = createRedis(settings({
      REDIS_URL: `rediss://allocation-api:${PASSWORD}@127.0.0.1:${server.port}`,
      REDIS_TLS_CERT_FILE: certs.files.clientCert, REDIS_TLS_KEY_FILE: certs.files.clientKey, REDIS_TLS_SERVERNAME: 'redis.elsewhere.example',
    }), 'request', 'wrong-name');
    cleanup.push(() => wrongName.disconnect());
    await expect(wrongName.ping()).rejects.toThrow();
    const rightName = createRedis(settings({
      REDIS_URL: `rediss://allocation-api:${PASSWORD}@127.0.0.1:${server.port}`,
      REDIS_TLS_CERT_FILE: certs.files.clientCert, REDIS_TLS_KEY_FILE: certs.files.clientKey, REDIS_TLS_SERVERNAME: 'localhost',
    }), 'request', 'right-name');
    cleanup.push(() => rightName.disconnect());
    await waitFor(async () => (await rightName.ping().catch(() => null)) === 'PONG', { timeoutMs: 10000, what: 'PONG with the certificate\'s name' });
  });

  it('refuses a server signed by another CA; the built app is not ready, and is with the right CA', async () => {
    const start = async (ca: string): Promise<{ child: ChildProcess; port: number }> => {
      const port = await freePort();
      const child = spawn(process.execPath, [join(ROOT, 'dist', 'apps', 'allocation-api', 'src', 'main.js')], {
        stdio: 'ignore',
        env: {
          PATH: process.env.PATH ?? '', HOST: '127.0.0.1', HTTP_PORT: String(port), ALLOW_UNAUTHENTICATED: 'true', LOG_LEVEL: 'error',
          REDIS_URL: `rediss://allocation-api@127.0.0.1:${server.port}`,
          REDIS_PASSWORD_FILE: join(dir, 'allocation-api.password'),
          REDIS_TLS_CA_FILE: ca, REDIS_TLS_CERT_FILE: certs.files.clientCert, REDIS_TLS_KEY_FILE: certs.files.clientKey,
        },
      });
      cleanup.push(() => child.kill('SIGKILL'));
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status === 200, { timeoutMs: 40000, what: 'allocation-api to listen' });
      return { child, port };
    };
    writeFileSync(join(dir, 'allocation-api.password'), `${PASSWORD}\n`);
    const wrong = await start(certs.otherCa);
    const ready = async (port: number) => (await fetch(`http://127.0.0.1:${port}/ready`)).status;
    // Given time to connect, it stays down: the certificate chain does not verify.
    await waitFor(async () => (await ready(wrong.port)) === 503, { timeoutMs: 5000, what: 'readiness down with the wrong CA' });
    const direct = createRedis(settings({ REDIS_URL: `rediss://allocation-api:${PASSWORD}@127.0.0.1:${server.port}`, REDIS_TLS_CA_FILE: certs.otherCa }), 'request', 'wrong-ca');
    cleanup.push(() => direct.disconnect());
    await expect(direct.ping()).rejects.toThrow();
    expect(await ready(wrong.port)).toBe(503);
    wrong.child.kill('SIGKILL');
    const right = await start(certs.files.ca);
    await waitFor(async () => (await ready(right.port)) === 200, { timeoutMs: 15000, what: 'readiness up with the right CA' });
    right.child.kill('SIGKILL');
  }, 60000);
});

describe('rediss:// through Sentinel and Cluster', () => {
  it('finds the primary through TLS-only sentinels and talks TLS to it', async () => {
    const group = await SentinelGroup.start({ replicas: 1, sentinels: 2, tls: certs.files });
    cleanup.push(() => group.dispose());
    await roundTrip(settings({ REDIS_URL: 'rediss://127.0.0.1:6379', REDIS_SENTINELS: group.sentinelsSetting, REDIS_SENTINEL_MASTER: group.masterName }));
  }, 60000);

  it('follows a TLS Redis Cluster (client port and bus)', async () => {
    const cluster = await RedisClusterNodes.start(3, { tls: certs.files });
    cleanup.push(() => cluster.dispose());
    const clusterSettings = settings({ REDIS_URL: 'rediss://127.0.0.1:6379', REDIS_CLUSTER_NODES: cluster.nodesSetting, REDIS_PREFIX: '{voice}:' });
    await roundTrip(clusterSettings);
    const client = createRedis(clusterSettings, 'request', 'tls-cluster') as unknown as Redis;
    cleanup.push(() => client.disconnect());
    await waitFor(async () => (await client.set('{voice}:tls-check', '1').catch(() => null)) === 'OK', { timeoutMs: 10000, what: 'a write through the TLS cluster' });
  }, 60000);
});
