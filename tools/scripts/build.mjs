// Compiles every app and library with tsc into dist/, copies the Lua scripts
// beside their loader, and makes `@smart-router/<lib>` resolvable at run time
// through tiny package stubs under dist/node_modules (Node walks up from
// dist/apps/<app>/src to find them), so no path-mapping hook is needed.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dist = join(root, 'dist');

rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], {
  stdio: 'inherit',
  cwd: root,
});
cpSync(join(root, 'libs', 'redis-scripts', 'src', 'lua'), join(dist, 'libs', 'redis-scripts', 'src', 'lua'), { recursive: true });
// The admin dashboard's static assets ship beside the controller that serves them (and so in the admin image).
cpSync(join(root, 'apps', 'admin', 'src', 'dashboard'), join(dist, 'apps', 'admin', 'src', 'dashboard'), { recursive: true });

const aliases = readdirSync(join(root, 'libs')).filter((lib) => existsSync(join(dist, 'libs', lib, 'src', 'index.js')));
const stubs = aliases.map((lib) => [lib, `../../../libs/${lib}/src/index.js`]);
for (const tool of ['sim', 'gateway', 'stack']) {
  if (existsSync(join(dist, 'tools', tool, 'src', 'index.js'))) stubs.push([tool, `../../../tools/${tool}/src/index.js`]);
}
for (const [name, main] of stubs) {
  const dir = join(dist, 'node_modules', '@smart-router', name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `@smart-router/${name}`, main }, null, 2) + '\n');
}
console.log(`built ${readdirSync(join(dist, 'apps')).length} apps and ${stubs.length} libraries into dist/`);
