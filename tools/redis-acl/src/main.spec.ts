import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ACL_APPS } from '@smart-router/redis-keys';
import { run } from './main';

describe('tools/redis-acl', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sr-redis-acl-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const files = (users: readonly string[]) => users.flatMap((user) => ['--password-file', `${user}=${join(dir, user)}`]);

  it('generates missing passwords (owner-read-only) and writes digests, never the passwords', () => {
    const out = join(dir, 'users.acl');
    run(['--prefix', '{voice}:', '--generate', ...files([...ACL_APPS, 'healthcheck']), '--out', out]);
    const text = readFileSync(out, 'utf8');
    for (const user of ACL_APPS) {
      const password = readFileSync(join(dir, user), 'utf8').trim();
      expect(password).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(statSync(join(dir, user)).mode & 0o777).toBe(0o400);
      expect(text).not.toContain(password);
      expect(text).toContain(`user ${user} reset on #${createHash('sha256').update(password).digest('hex')} `);
    }
    expect(text).toMatch(/^user healthcheck /m);
    expect(text).not.toMatch(/^user (ops|voice-agents) /m);
    expect(text).toContain('~{voice}:stream:pods');
    // Run again: the same passwords are kept (compose's init service runs at every `up`).
    const first = readFileSync(join(dir, 'webhooks'), 'utf8');
    run(['--generate', ...files(ACL_APPS), '--out', out]);
    expect(readFileSync(join(dir, 'webhooks'), 'utf8')).toBe(first);
  });

  it('accepts two passwords per user during a rotation, and refuses what it cannot honour', () => {
    for (const user of ACL_APPS) writeFileSync(join(dir, user), `${user}-old-password-0123456789\n${user}-new-password-0123456789\n`);
    const text = run(['--plain', ...files(ACL_APPS)]);
    expect(text).toContain('user admin reset on >admin-old-password-0123456789 >admin-new-password-0123456789 ');
    expect(() => run(files(ACL_APPS.slice(1)))).toThrow(/allocation-api/);
    expect(() => run(['--password-file', `nobody=${join(dir, 'x')}`])).toThrow(/USER=PATH/);
    expect(() => run([...files(ACL_APPS), '--password-file', `ops=${join(dir, 'missing')}`])).toThrow(/--generate/);
    expect(() => run(['--bogus'])).toThrow(/unknown argument/);
  });
});
