import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The repository root (tools/deploy/src -> ../../..). */
export const ROOT = join(__dirname, '..', '..', '..');

export function repoPath(...parts: string[]): string {
  return join(ROOT, ...parts);
}

export function readRepoFile(...parts: string[]): string {
  return readFileSync(repoPath(...parts), 'utf8');
}

/** SPEC section 2: the five services and their default ports. */
export const SPEC_APP_PORTS: Readonly<Record<string, number>> = {
  'allocation-api': 8080,
  webhooks: 8081,
  admin: 8082,
  'pod-watcher': 8083,
  reconciler: 8084,
};

/** SPEC section 8: the gateway and the simulated Kubernetes API. */
export const GATEWAY_PORT = 8000;
export const SIM_PORT = 8001;

/** Every Nx app in apps/ (a directory with src/main.ts), plus every app SPEC section 2 requires. */
export function appNames(): string[] {
  const present = readdirSync(repoPath('apps')).filter((name) => existsSync(repoPath('apps', name, 'src', 'main.ts')));
  return [...new Set([...Object.keys(SPEC_APP_PORTS), ...present])].sort();
}

export function appExists(app: string): boolean {
  return existsSync(repoPath('apps', app, 'src', 'main.ts'));
}

function configFiles(app: string): string[] {
  const dir = repoPath('apps', app, 'src');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith('.config.ts'))
    .map((name) => join(dir, name));
}

/**
 * The HTTP_PORT default an app's config reader falls back to
 * (`env.port('HTTP_PORT', 8080)`), or undefined while the app has no reader.
 */
export function configuredDefaultPort(app: string): number | undefined {
  for (const file of configFiles(app)) {
    const match = /port\(\s*'HTTP_PORT'\s*,\s*(\d+)\s*\)/.exec(readFileSync(file, 'utf8'));
    if (match) return Number(match[1]);
  }
  return undefined;
}

function functionSource(text: string, name: string): string {
  const start = text.indexOf(`export function ${name}(`);
  if (start < 0) return '';
  const next = text.indexOf('\nexport function ', start + 1);
  return text.slice(start, next < 0 ? undefined : next);
}

/**
 * The environment variables an app's config reader reads, found in its
 * `*.config.ts` and in the shared readers it calls (libs/config
 * readCommonSettings / readRedisSettings / readFleetSettings and the access
 * readers). Undefined when the app has none yet.
 */
export function variablesReadBy(app: string): Set<string> | undefined {
  const files = configFiles(app);
  if (files.length === 0) return undefined;
  const common = readRepoFile('libs', 'config', 'src', 'common-env.ts');
  let text = files.map((file) => readFileSync(file, 'utf8')).join('\n');
  if (text.includes('readCommonSettings')) text += functionSource(common, 'readCommonSettings') + functionSource(common, 'readRedisSettings');
  else if (text.includes('readRedisSettings')) text += functionSource(common, 'readRedisSettings');
  if (text.includes('readFleetSettings')) text += functionSource(readRepoFile('libs', 'config', 'src', 'autoscaler.ts'), 'readFleetSettings');
  const access = readRepoFile('libs', 'config', 'src', 'access.ts');
  for (const reader of ['readTrustedProxies', 'readAllowUnauthenticated']) if (text.includes(reader)) text += functionSource(access, reader);
  const names = new Set<string>();
  for (const [, name] of text.matchAll(/\(\s*'([A-Z][A-Z0-9_]*)'/g)) names.add(name);
  return names;
}

export interface DocumentedVariable {
  name: string;
  /** App names from the README's "apps" column; `all` means every app. */
  apps: string[];
  defaultValue: string;
}

/** The README "Configuration" table: `| \`NAME\` | apps | default | meaning |`. */
export function readmeVariables(readme = readRepoFile('README.md')): Map<string, DocumentedVariable> {
  const variables = new Map<string, DocumentedVariable>();
  for (const line of readme.split('\n')) {
    const match = /^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|([^|]*)\|([^|]*)\|/.exec(line);
    if (!match) continue;
    const apps = match[2]
      .split(',')
      .map((item) => item.replace(/`/g, '').trim())
      .filter((item) => item.length > 0);
    variables.set(match[1], { name: match[1], apps, defaultValue: match[3].trim() });
  }
  return variables;
}

/** Problems with `variables` being set for `app`, judged by the README table and the app's config reader. */
export function undocumentedVariables(app: string, variables: string[], documented = readmeVariables()): string[] {
  const problems: string[] = [];
  const read = variablesReadBy(app);
  for (const name of variables) {
    const entry = documented.get(name);
    if (!entry) problems.push(`${app}: ${name} is not in README.md's configuration table`);
    else if (!entry.apps.includes('all') && !entry.apps.includes(app)) {
      problems.push(`${app}: ${name} is documented for ${entry.apps.join(', ')} only`);
    }
    if (read && !read.has(name)) problems.push(`${app}: ${name} is set but its config reader never reads it`);
  }
  return problems;
}
