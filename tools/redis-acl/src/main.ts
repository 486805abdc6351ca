import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { ACL_APPS, ACL_EXTRA_USERS, AclUser, redisAclFile } from '@smart-router/redis-keys';

/**
 * Writes Redis's users.acl for Smart Router (SPEC 10.1): one ACL user per app
 * with the rules of libs/redis-keys/src/acl.ts, the passwords read from files.
 *
 *   node dist/tools/redis-acl/src/main.js --prefix 'voice:' \
 *     --password-file allocation-api=/secrets/allocation-api/password ... \
 *     [--generate] [--plain] --out /tls/users.acl
 *
 * --password-file USER=PATH  the user's password: the file's first line, or
 *                            its first two lines during a rotation (both accepted)
 * --generate                 create a missing password file (random, mode 0400)
 * --plain                    `>password` instead of the SHA-256 digest `#…`
 * --out PATH                 write the file there (atomically), else stdout
 * Every app user needs a password; `voice-agents`, `healthcheck` and `ops`
 * are written only when given one.
 */
const USERS: readonly AclUser[] = [...ACL_APPS, ...ACL_EXTRA_USERS];

export interface RedisAclArguments {
  prefix: string;
  passwordFiles: Map<AclUser, string>;
  generate: boolean;
  plain: boolean;
  out?: string;
}

export function parseArguments(argv: string[]): RedisAclArguments {
  const parsed: RedisAclArguments = { prefix: 'voice:', passwordFiles: new Map(), generate: false, plain: false };
  for (let i = 0; i < argv.length; i += 1) {
    const argument = argv[i];
    const value = () => {
      const next = argv[i + 1];
      if (next === undefined) throw new Error(`${argument} needs a value`);
      i += 1;
      return next;
    };
    if (argument === '--prefix') parsed.prefix = value();
    else if (argument === '--out') parsed.out = value();
    else if (argument === '--generate') parsed.generate = true;
    else if (argument === '--plain') parsed.plain = true;
    else if (argument === '--password-file') {
      const [user, path] = value().split(/=(.*)/s, 2);
      if (!USERS.includes(user as AclUser) || !path) throw new Error(`--password-file needs USER=PATH with USER one of ${USERS.join(', ')}`);
      parsed.passwordFiles.set(user as AclUser, path);
    } else throw new Error(`unknown argument ${argument}`);
  }
  return parsed;
}

function passwordsOf(path: string, generate: boolean): string[] {
  if (!existsSync(path)) {
    if (!generate) throw new Error(`password file ${path} does not exist (use --generate to create it)`);
    // 32 random bytes, URL-safe: fits an ACL line and a URL without escaping.
    writeFileSync(path, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o400 });
  }
  return readFileSync(path, 'utf8').split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== '').slice(0, 2);
}

export function run(argv: string[]): string {
  const options = parseArguments(argv);
  const passwords: Partial<Record<AclUser, string[]>> = {};
  for (const [user, path] of options.passwordFiles) passwords[user] = passwordsOf(path, options.generate);
  const text = redisAclFile(options.prefix, passwords, { hashed: !options.plain });
  if (options.out) {
    writeFileSync(`${options.out}.tmp`, text, { mode: 0o444 });
    renameSync(`${options.out}.tmp`, options.out);
  }
  return text;
}

if (require.main === module) {
  try {
    const text = run(process.argv.slice(2));
    if (!process.argv.includes('--out')) process.stdout.write(text);
  } catch (error) {
    process.stderr.write(`redis-acl: ${(error as Error).message}\n`);
    process.exit(1);
  }
}
