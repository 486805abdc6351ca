// `npm test`: typecheck, build (end-to-end tests run the built apps), then one
// Jest run over every project against a real redis-server. Ends with the plain
// line `N passed, N failed` that CI reads.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const env = { ...process.env, CI: 'true', NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false', FORCE_COLOR: '0' };
const counts = join(tmpdir(), `sr-test-counts-${process.pid}.txt`);
rmSync(counts, { force: true });

function run(label, command, args, extraEnv = {}) {
  console.log(`\n== ${label}`);
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env: { ...env, ...extraEnv } });
  return result.status ?? 1;
}

let failedSteps = 0;
failedSteps += run('typecheck', process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json', '--noEmit']) === 0 ? 0 : 1;
failedSteps += run('build', process.execPath, [join(root, 'tools', 'scripts', 'build.mjs')]) === 0 ? 0 : 1;
const jestArgs = [join(root, 'node_modules', 'jest', 'bin', 'jest.js'), '--ci', '--forceExit', ...process.argv.slice(2)];
const jestStatus = run('jest', 'timeout', ['-k', '30', '1500', process.execPath, ...jestArgs], { SR_TEST_COUNTS: counts });

let passed = 0;
let failed = 0;
if (existsSync(counts)) {
  for (const line of readFileSync(counts, 'utf8').trim().split('\n').filter(Boolean)) {
    const [p, f] = line.split(' ').map(Number);
    passed += p;
    failed += f;
  }
}
if (jestStatus !== 0 && failed === 0) failed += 1; // jest crashed or timed out before reporting
failed += failedSteps;
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 && jestStatus === 0 ? 0 : 1);
