// Copies one app's compiled output out of dist/ together with the
// @smart-router libraries it requires (followed transitively through their
// dist/node_modules stubs), so an image carries nothing it never loads.
//
//   node docker/collect-dist.mjs <app> <out-dir>          dist/apps/<app>
//   node docker/collect-dist.mjs tools/sim <out-dir>      a local tool (compose's simulated cluster)
// Run from the repository root, after the build.
//
// Test helpers and the local tools (testing, sim, gateway, stack) must never
// ship in a production image: requiring one stops the build.
import { cpSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const NEVER_SHIPPED = new Set(['testing', 'sim', 'gateway', 'stack']);
const REQUIRE = /require\("@smart-router\/([a-z0-9-]+)"\)/g;

function fail(message) {
  process.stderr.write(`collect-dist: ${message}\n`);
  process.exit(1);
}

function javascriptFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return javascriptFiles(path);
    return path.endsWith('.js') ? [path] : [];
  });
}

/** The project directory (dist/libs/<lib>) a `@smart-router/<name>` stub points at. */
function projectOf(dist, name) {
  const stub = join(dist, 'node_modules', '@smart-router', name);
  const manifest = join(stub, 'package.json');
  if (!existsSync(manifest)) fail(`@smart-router/${name} is required but dist/node_modules has no stub for it`);
  const main = resolve(stub, JSON.parse(readFileSync(manifest, 'utf8')).main);
  // <project>/src/index.js -> <project>
  return { stub, project: dirname(dirname(main)) };
}

const [app, out] = process.argv.slice(2);
const dist = resolve('dist');
const apps = existsSync(join(dist, 'apps')) ? readdirSync(join(dist, 'apps')) : [];
if (!app || !out) fail(`usage: collect-dist.mjs <app> <out-dir>; apps: ${apps.join(', ')}`);
const project = app.includes('/') ? app : `apps/${app}`;
const appDir = join(dist, project);
if (!existsSync(join(appDir, 'src', 'main.js'))) fail(`"${app}" is not built (dist/${project}/src/main.js missing); apps: ${apps.join(', ')}`);

const libraries = new Map();
const pending = [appDir];
while (pending.length > 0) {
  const dir = pending.pop();
  for (const file of javascriptFiles(dir)) {
    for (const [, name] of readFileSync(file, 'utf8').matchAll(REQUIRE)) {
      if (libraries.has(name)) continue;
      if (NEVER_SHIPPED.has(name)) fail(`${relative(dist, file)} requires @smart-router/${name}, which never ships in an app image`);
      const library = projectOf(dist, name);
      libraries.set(name, library);
      pending.push(library.project);
    }
  }
}

const target = join(resolve(out), 'dist');
cpSync(appDir, join(target, project), { recursive: true });
for (const { stub, project } of libraries.values()) {
  cpSync(project, join(target, relative(dist, project)), { recursive: true });
  cpSync(stub, join(target, relative(dist, stub)), { recursive: true });
}
process.stdout.write(`collected ${app} with ${[...libraries.keys()].sort().join(', ')}\n`);
