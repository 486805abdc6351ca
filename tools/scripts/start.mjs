// `npm start`: build, then run the whole local stack (tools/stack) until Ctrl-C.
import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
execFileSync(process.execPath, [join(root, 'tools', 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
const child = spawn(process.execPath, [join(root, 'dist', 'tools', 'stack', 'src', 'main.js')], { cwd: root, stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code) => process.exit(code ?? 0));
