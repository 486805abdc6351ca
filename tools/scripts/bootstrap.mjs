// Makes a fresh clone runnable: installs npm dependencies when missing or
// stale and redis-server when it is not on PATH (apt, as root). Used by both
// `npm start` and `npm test`, so nothing has to be installed by hand.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

const marker = join(root, 'node_modules', '.package-lock.json');
const lock = join(root, 'package-lock.json');
const stale = !existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000);
if (stale) {
  // `npm ci` fails on this mirror (other platforms' optional binaries are missing): install from the lockfile instead.
  console.log('bootstrap: installing npm dependencies');
  execFileSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
}

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const apt = (args) => execFileSync(asRoot ? 'apt-get' : 'sudo', asRoot ? args : ['apt-get', ...args], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
function aptInstall(pkg) {
  console.log(`bootstrap: installing ${pkg} with apt-get`);
  try {
    apt(['install', '-y', pkg]);
  } catch {
    apt(['update']);
    apt(['install', '-y', pkg]);
  }
}

if (!process.env.REDIS_URL && !has('redis-server')) aptInstall('redis-server');
// The failover test runs real sentinels (Debian ships them as their own package).
if (process.env.npm_lifecycle_event === 'pretest' && !has('redis-sentinel')) aptInstall('redis-sentinel');
