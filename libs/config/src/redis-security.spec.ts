import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvReader, readRedisSettings } from './index';

const read = (env: Record<string, string>) => readRedisSettings(new EnvReader(env));

describe('Redis TLS and ACL credentials (SPEC 10.1)', () => {
  let dir = '';
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sr-config-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the CA, client certificate, key and server name for a rediss:// URL', () => {
    const settings = read({
      REDIS_URL: 'rediss://webhooks:pw@redis:6379',
      REDIS_TLS_CA_FILE: file('ca.crt', PEM),
      REDIS_TLS_CERT_FILE: file('client.crt', PEM),
      REDIS_TLS_KEY_FILE: file('client.key', '-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n'),
      REDIS_TLS_SERVERNAME: 'redis.voice-system.svc',
    });
    expect(settings.tls).toEqual({ ca: PEM, cert: PEM, key: expect.stringContaining('PRIVATE KEY'), servername: 'redis.voice-system.svc' });
    expect(read({ REDIS_URL: 'rediss://redis:6379' }).tls).toEqual({});
    expect(read({}).tls).toBeUndefined();
  });

  it.each([
    ['REDIS_TLS_CA_FILE', { REDIS_URL: 'redis://redis:6379', REDIS_TLS_CA_FILE: 'ca' }, /needs a rediss:\/\//],
    ['REDIS_TLS_CA_FILE', { REDIS_URL: 'rediss://redis:6379', REDIS_TLS_CA_FILE: '/nonexistent/ca.crt' }, /cannot be read \(ENOENT\)/],
    ['REDIS_TLS_CA_FILE', { REDIS_URL: 'rediss://redis:6379', REDIS_TLS_CA_FILE: 'not-pem' }, /no PEM data/],
    ['REDIS_TLS_KEY_FILE', { REDIS_URL: 'rediss://redis:6379', REDIS_TLS_CERT_FILE: 'pem' }, /mutual TLS/],
    ['REDIS_PASSWORD_FILE', { REDIS_PASSWORD_FILE: '/nonexistent/password' }, /cannot be read/],
    ['REDIS_PASSWORD_FILE', { REDIS_PASSWORD_FILE: 'empty' }, /empty/],
    ['REDIS_PASSWORD_FILE', { REDIS_URL: 'redis://u:inline@redis:6379', REDIS_PASSWORD_FILE: 'password' }, /cannot be combined/],
  ])('stops naming %s on a bad value', (variable, env, reason) => {
    const resolved = Object.fromEntries(Object.entries(env).map(([name, value]) => {
      if (value === 'not-pem') return [name, file('not.pem', 'hello')];
      if (value === 'pem') return [name, file('c.pem', PEM)];
      if (value === 'empty') return [name, file('empty', '\n')];
      if (value === 'password') return [name, file('password', 'from-file\n')];
      if (value === 'ca') return [name, file('ca2.crt', PEM)];
      return [name, value];
    }));
    expect(() => read(resolved)).toThrow(new RegExp(`^invalid configuration: ${variable} `));
    expect(() => read(resolved)).toThrow(reason);
  });

  it('takes the password of the URL\'s user from REDIS_PASSWORD_FILE (a mounted secret)', () => {
    const url = read({ REDIS_URL: 'rediss://webhooks@redis:6379', REDIS_PASSWORD_FILE: file('webhooks', 'p@ss/word+1\nnext-line-ignored\n') }).url;
    expect(url).toBe('rediss://webhooks:p%40ss%2Fword%2B1@redis:6379');
    expect(decodeURIComponent(new URL(url).password)).toBe('p@ss/word+1');
    // Or the user from REDIS_USERNAME, with a REDIS_URL every app shares (compose, k8s).
    expect(read({ REDIS_URL: 'rediss://redis:6379', REDIS_USERNAME: 'admin', REDIS_PASSWORD_FILE: file('admin', 'secret\n') }).url).toBe('rediss://admin:secret@redis:6379');
    expect(() => read({ REDIS_URL: 'rediss://webhooks@redis:6379', REDIS_USERNAME: 'admin' })).toThrow(/^invalid configuration: REDIS_USERNAME differs/);
    expect(() => read({ REDIS_USERNAME: 'bad user' })).toThrow(/^invalid configuration: REDIS_USERNAME /);
  });
});
