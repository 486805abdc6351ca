import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { RedisServer } from '@smart-router/testing';
import { ACL_APPS, ACL_EXTRA_USERS, AclUser, KEY_ACCESS, KeyBuilder, aclRules, globMatches, keyPattern, redisAclFile } from './acl';
import { RedisKeys } from './keys';

const USERS: AclUser[] = [...ACL_APPS, ...ACL_EXTRA_USERS];
const password = (user: AclUser) => `${user.replace(/[^a-z]/g, '')}-password-0123456789`;
const PASSWORDS = Object.fromEntries(USERS.map((user) => [user, [password(user)]])) as Record<AclUser, string[]>;

describe('Redis ACL rules (libs/redis-keys acl.ts)', () => {
  it('derives every key pattern from a key builder, under the prefix', () => {
    const keys = new RedisKeys('{voice}:');
    expect(keyPattern(keys, 'pod')).toBe('{voice}:pod:*');
    expect(keyPattern(keys, 'bullPrefix')).toBe('{voice}:bull:*');
    expect(keyPattern(keys, 'epoch')).toBe('{voice}:epoch');
    for (const rule of aclRules('{voice}:').filter((candidate) => candidate.user !== 'ops')) {
      for (const pattern of [...rule.keys, ...rule.readKeys, ...rule.channels]) expect(pattern.startsWith('{voice}:')).toBe(true);
    }
    // Each builder's keys are reachable by the users the table names, and by nobody else.
    for (const builder of Object.keys(KEY_ACCESS) as KeyBuilder[]) {
      const key = (keys[builder] as (argument: string) => string).call(keys, 'voice-agent-1');
      for (const rule of aclRules('{voice}:')) {
        if (rule.user === 'ops') continue;
        const reachable = [...rule.keys, ...rule.readKeys, ...rule.channels].some((pattern) => globMatches(pattern, builder === 'bullPrefix' ? `${key}:reconciler:id` : key))
          || rule.selectors.some((selector) => selector.includes(`~${key} `));
        expect({ builder, user: rule.user, reachable }).toEqual({ builder, user: rule.user, reachable: KEY_ACCESS[builder][rule.user] !== undefined });
      }
    }
  });

  it('refuses a file without every app password, or with a password an ACL line cannot hold', () => {
    const { webhooks: _missing, ...others } = PASSWORDS;
    expect(() => redisAclFile('voice:', others)).toThrow(/webhooks/);
    expect(() => redisAclFile('voice:', { ...PASSWORDS, admin: ['short'] })).toThrow(/admin/);
    expect(() => redisAclFile('voice:', { ...PASSWORDS, admin: ['has space in it 0123456789'] })).toThrow(/admin/);
    expect(redisAclFile('voice:', { ...PASSWORDS, ops: [] })).not.toMatch(/^user ops /m);
  });

  describe('on a real redis-server started with the generated file', () => {
    let server: RedisServer;
    let dir = '';
    const clients: Redis[] = [];
    const as = (user: AclUser, secret = password(user)) => {
      const client = new Redis(server.port, '127.0.0.1', { username: user, password: secret, maxRetriesPerRequest: 0, lazyConnect: true, disableClientInfo: true, enableReadyCheck: user !== 'healthcheck' });
      client.on('error', () => undefined);
      clients.push(client);
      return client;
    };
    const keys = new RedisKeys('voice:');

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'sr-acl-'));
      const file = join(dir, 'users.acl');
      // Two passwords for admin: a rotation in progress accepts both.
      writeFileSync(file, redisAclFile('voice:', { ...PASSWORDS, admin: [password('admin'), 'admin-next-password-0123456789'] }));
      server = await RedisServer.start(undefined, [], { security: { aclFile: file, auth: { user: 'ops', password: password('ops') } } });
    });
    afterAll(async () => {
      for (const client of clients) client.disconnect();
      await server?.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('has no default user: a connection without credentials can do nothing', async () => {
      const anonymous = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 0, lazyConnect: true });
      anonymous.on('error', () => undefined);
      clients.push(anonymous);
      await expect(anonymous.ping()).rejects.toThrow(/NOAUTH/);
    });

    it('lets only pod-watcher add to the pod stream', async () => {
      const event = ['name', 'voice-agent-0'];
      await expect(as('pod-watcher').xadd(keys.podStream(), 'MAXLEN', '~', 100, '*', ...event)).resolves.toMatch(/^\d+-\d+$/);
      for (const user of ['webhooks', 'allocation-api', 'admin', 'reconciler'] as const) {
        await expect(as(user).xadd(keys.podStream(), '*', ...event)).rejects.toThrow(/NOPERM/);
        // Nor from inside a script, nor by trimming it away.
        await expect(as(user).eval(`return redis.call('XADD', '${keys.podStream()}', '*', 'name', 'x')`, 0)).rejects.toThrow(/can't access|NOPERM/);
        await expect(as(user).xtrim(keys.podStream(), 'MAXLEN', 0)).rejects.toThrow(/NOPERM/);
      }
    });

    it('lets the reconciler consume the pod stream through its group, and admin read it', async () => {
      const reconciler = as('reconciler');
      await expect(reconciler.xgroup('CREATE', keys.podStream(), 'reconciler', '0', 'MKSTREAM')).resolves.toBe('OK');
      const read = (await reconciler.xreadgroup('GROUP', 'reconciler', 'r-1', 'COUNT', 10, 'STREAMS', keys.podStream(), '>')) as [string, [string, string[]][]][];
      expect(read[0][1].length).toBeGreaterThan(0);
      await expect(reconciler.xack(keys.podStream(), 'reconciler', read[0][1][0][0])).resolves.toBe(1);
      await expect(as('admin').xrevrange(keys.podStream(), '+', '-', 'COUNT', 1)).resolves.toHaveLength(1);
      await expect(as('admin').xgroup('CREATE', keys.podStream(), 'other', '0')).rejects.toThrow(/NOPERM/);
      await expect(as('webhooks').xrevrange(keys.podStream(), '+', '-', 'COUNT', 1)).rejects.toThrow(/NOPERM/);
    });

    it('refuses FLUSHALL, FLUSHDB, CONFIG, KEYS, DEBUG, SHUTDOWN, SCAN and ACL to every user but ops', async () => {
      for (const user of USERS.filter((candidate) => candidate !== 'ops')) {
        const client = as(user);
        for (const command of [['flushall'], ['flushdb'], ['config', 'get', 'maxmemory'], ['config', 'set', 'appendonly', 'no'], ['keys', '*'], ['debug', 'sleep', '0'],
          ['shutdown', 'nosave'], ['scan', '0'], ['acl', 'list'], ['monitor'], ['client', 'kill', 'type', 'normal'], ['script', 'flush'], ['select', '1']]) {
          await expect(client.call(command[0], ...command.slice(1))).rejects.toThrow(/NOPERM/);
        }
      }
      await expect(as('ops').dbsize()).resolves.toBeGreaterThan(0);
    });

    it('keeps every app inside its keys: another prefix, or another app\'s keys, is NOPERM', async () => {
      for (const user of ACL_APPS) {
        await expect(as(user).set('other:tenant', '1')).rejects.toThrow(/NOPERM/);
        await expect(as(user).eval("return redis.call('GET', 'other:tenant')", 0)).rejects.toThrow(/can't access|NOPERM/);
      }
      // The request path cannot touch the job queue, the fleet plan or the watcher's heartbeat.
      await expect(as('webhooks').hset(`${keys.bullPrefix()}:reconciler:1`, 'x', '1')).rejects.toThrow(/NOPERM/);
      await expect(as('allocation-api').hset(keys.fleetPlan(), 'target', '0')).rejects.toThrow(/NOPERM/);
      await expect(as('admin').hset(keys.watcherLeader(), 'term', '99')).rejects.toThrow(/NOPERM/);
      // pod-watcher has no business in the pools.
      await expect(as('pod-watcher').sadd(keys.poolAvailable('gold'), 'voice-agent-0')).rejects.toThrow(/NOPERM/);
      // The simulated voice agents only read a call's pod.
      await expect(as('voice-agents').hget(keys.call('CA1'), 'pod_name')).resolves.toBeNull();
      await expect(as('voice-agents').hset(keys.call('CA1'), 'pod_name', 'x')).rejects.toThrow(/NOPERM/);
      await expect(as('healthcheck').ping()).resolves.toBe('PONG');
      await expect(as('healthcheck').get(keys.epoch())).rejects.toThrow(/NOPERM/);
    });

    it('lets the apps do what they do: scripts on their keys, the wake-up channel, WAIT, INFO', async () => {
      const api = as('allocation-api');
      await expect(api.eval(`redis.call('SADD', KEYS[1], 'voice-agent-0'); redis.call('PUBLISH', '${keys.waitChannel()}', 'CA1'); return redis.call('HSET', '${keys.call('CA1')}', 'pod_name', 'voice-agent-0')`, 1, keys.pods())).resolves.toBe(1);
      await expect(api.eval(`return redis.call('PUBLISH', 'other:channel', 'x')`, 0)).rejects.toThrow(/can't publish|NOPERM/);
      await expect(api.wait(0, 10)).resolves.toBe(0);
      await expect(api.info('server')).resolves.toMatch(/run_id/);
      await expect(as('pod-watcher').multi().hset(keys.watcherLeader(), { term: 1 }).pexpire(keys.watcherLeader(), 1000).exec()).resolves.toHaveLength(2);
      await expect(as('reconciler').hset(`${keys.bullPrefix()}:reconciler:meta`, 'x', '1')).resolves.toBe(1);
    });

    it('accepts both passwords of a user during a rotation, and no other', async () => {
      await expect(as('admin', 'admin-next-password-0123456789').ping()).resolves.toBe('PONG');
      await expect(as('admin').ping()).resolves.toBe('PONG');
      await expect(as('admin', 'wrong-password-0123456789').ping()).rejects.toThrow(/WRONGPASS/);
    });
  });
});
