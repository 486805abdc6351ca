// What every benchmark script needs: the repository root, a require for the
// built libraries (dist/) and node_modules, and numeric --name value options.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const require = createRequire(join(root, 'dist', 'package.json'));
export const lib = (name) => require(join(root, 'dist', 'node_modules', '@smart-router', name));

const args = process.argv.slice(2);
export const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? Number(args[index + 1]) : fallback;
};
