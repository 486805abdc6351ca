// `npm start`: build, then run the whole local stack (tools/stack) until Ctrl-C.
import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
execFileSync(process.execPath, [join(root, 'tools', 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
const child = spawn(process.execPath, [join(root, 'dist', 'tools', 'stack', 'src', 'main.js')], { cwd: root, stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
// The stack restarts its children (tools/stack/src/supervisor.ts) and runs no listener itself; if it dies, say how.
child.on('exit', (code, signal) => {
  if (signal) console.error(`npm start: the stack process was killed by ${signal}; its apps, simulated cluster and gateway may still be running (see .local/*.log)`);
  process.exit(code ?? 1);
});
