import { ConfigError, EnvReader, readAllowUnauthenticated, readCommonSettings, readRedisSettings, readTrustedProxies, redactUrl, requireCredential } from './index';

describe('ALLOW_UNAUTHENTICATED and failing closed', () => {
  it('is off unless set to true, and a bad value names the variable', () => {
    expect(readAllowUnauthenticated(new EnvReader({}))).toBe(false);
    expect(readAllowUnauthenticated(new EnvReader({ ALLOW_UNAUTHENTICATED: 'true' }))).toBe(true);
    expect(() => readAllowUnauthenticated(new EnvReader({ ALLOW_UNAUTHENTICATED: 'open' }))).toThrow('invalid configuration: ALLOW_UNAUTHENTICATED must be true or false, got "open"');
  });

  it('stops the app naming the missing credential unless open mode is on', () => {
    expect(() => requireCredential(false, 'API_TOKENS', 'is empty')).toThrow(ConfigError);
    expect(() => requireCredential(false, 'API_TOKENS', 'is empty')).toThrow('invalid configuration: API_TOKENS is empty; set it, or ALLOW_UNAUTHENTICATED=true to run open (local only)');
    expect(() => requireCredential(true, 'API_TOKENS', 'is empty')).not.toThrow();
  });
});

describe('TRUSTED_PROXIES', () => {
  it('trusts nobody by default', () => {
    expect(readTrustedProxies(new EnvReader({}))).toEqual([]);
    expect(readCommonSettings(new EnvReader({})).trustedProxies).toEqual([]);
  });

  it('reads IPs and CIDRs of both families', () => {
    expect(readTrustedProxies(new EnvReader({ TRUSTED_PROXIES: '127.0.0.0/8, ::1/128,10.1.2.3,fd00::/8' }))).toEqual(['127.0.0.0/8', '::1/128', '10.1.2.3', 'fd00::/8']);
  });

  it.each(['nginx', '10.0.0.0/33', '::1/129', '10.0.0.0/8/1', '10.0.0/8', '0.0.0.0/-1'])('refuses %s naming the variable', (entry) => {
    expect(() => readTrustedProxies(new EnvReader({ TRUSTED_PROXIES: entry }))).toThrow(/^invalid configuration: TRUSTED_PROXIES must be comma-separated IP addresses or CIDRs/);
  });
});

describe('a REDIS_URL password never reaches a message', () => {
  it('redacts the credentials of a URL, parseable or not', () => {
    expect(redactUrl('redis://default:s3cret@redis:6379')).toBe('redis://***@redis:6379');
    expect(redactUrl('rediss://:p@ss/w0rd@redis.example:6380/0')).toBe('rediss://***@redis.example:6380/0');
    expect(redactUrl('user:s3cret@redis:6379')).toBe('***@redis:6379');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });

  it('names REDIS_URL when it is malformed without echoing its password', () => {
    for (const url of ['redis://default:s3cret@[bad-host:6379', 'redis://user:s3cret@redis:port', 'not a url user:s3cret@redis']) {
      let message = '';
      try {
        readRedisSettings(new EnvReader({ REDIS_URL: url }));
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(/^invalid configuration: REDIS_URL must be a URL/);
      expect(message).not.toContain('s3cret');
    }
  });
});
