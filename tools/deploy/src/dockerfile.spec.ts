import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { baseImage, copies, effective, lineage, parseDockerfile, stage } from './dockerfile';
import { SPEC_APP_PORTS, appNames, configuredDefaultPort, readRepoFile, repoPath } from './repository';

const dockerfile = parseDockerfile(readRepoFile('docker', 'Dockerfile'));
const RUNTIME_STAGES = ['app', 'sim'];

describe('docker/Dockerfile', () => {
  it('builds the app image by default and the simulated cluster on request', () => {
    expect(dockerfile.stages[dockerfile.stages.length - 1].name).toBe('app');
    expect(stage(dockerfile, 'sim')).toBeDefined();
  });

  it.each(dockerfile.stages.map((candidate) => candidate.name))('starts stage %s from a pinned image or an earlier stage', (name) => {
    const image = baseImage(dockerfile, name);
    expect(image).toMatch(/^[a-z0-9./-]+:\d+\.\d+\.\d+[A-Za-z0-9.-]*$/);
  });

  it.each(RUNTIME_STAGES)('runs %s as a non-root user with a healthcheck and an exec-form command', (name) => {
    const user = effective(dockerfile, name, 'USER')?.args;
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    const healthcheck = effective(dockerfile, name, 'HEALTHCHECK')?.args ?? '';
    expect(healthcheck).toMatch(/CMD \["node", "\/app\/healthcheck\.cjs"/);
    const command = effective(dockerfile, name, 'CMD')?.args ?? '';
    expect(() => JSON.parse(command) as unknown).not.toThrow();
    expect(JSON.parse(command)).toEqual(expect.arrayContaining(['node']));
  });

  it('selects the app with the APP build argument', () => {
    const app = stage(dockerfile, 'app');
    expect(app?.instructions.some((instruction) => instruction.keyword === 'ARG' && instruction.args === 'APP')).toBe(true);
    // WORKDIR is the app's compiled directory, so `node main.js` starts it by its real path.
    expect(effective(dockerfile, 'app', 'WORKDIR')?.args).toBe('/app/dist/apps/${APP}/src');
    expect(JSON.parse(effective(dockerfile, 'app', 'CMD')?.args ?? '[]')).toEqual(['node', 'main.js']);
    const collect = stage(dockerfile, 'app-files')?.instructions.find((instruction) => instruction.keyword === 'RUN');
    expect(collect?.args).toBe('node docker/collect-dist.mjs "${APP}" /out');
  });

  it.each(RUNTIME_STAGES)('ships in %s only the collected output and production dependencies', (name) => {
    const copied = lineage(dockerfile, name).flatMap((candidate) => copies(candidate));
    for (const copy of copied) {
      if (copy.from === undefined) {
        // From the build context: small files only, never sources or the whole tree.
        expect(copy.sources.every((source) => source.startsWith('docker/'))).toBe(true);
      } else {
        expect(['prod-deps', 'app-files', 'sim-files']).toContain(copy.from);
      }
    }
    const nodeModules = copied.find((copy) => copy.destination === './node_modules');
    expect(nodeModules?.from).toBe('prod-deps');
    const install = stage(dockerfile, 'prod-deps')?.instructions.find((instruction) => instruction.keyword === 'RUN');
    expect(install?.args).toMatch(/npm install --omit=dev/);
  });

  it('binds the apps to every interface inside the container', () => {
    const env = stage(dockerfile, 'runtime-base')?.instructions.filter((instruction) => instruction.keyword === 'ENV').map((instruction) => instruction.args).join(' ');
    expect(env).toMatch(/HOST=0\.0\.0\.0/);
    expect(env).toMatch(/NODE_ENV=production/);
  });

  it('never sets ALLOW_UNAUTHENTICATED: an app without its credentials refuses to start in the image (SPEC 10.1)', () => {
    for (const candidate of dockerfile.stages) {
      for (const instruction of candidate.instructions.filter((entry) => entry.keyword === 'ENV' || entry.keyword === 'ARG')) {
        expect({ stage: candidate.name, line: instruction.line, args: instruction.args }).not.toEqual(expect.objectContaining({ args: expect.stringMatching(/ALLOW_UNAUTHENTICATED/) }));
      }
    }
  });

  it('copies from the build context only files that exist', () => {
    for (const candidate of dockerfile.stages) {
      for (const copy of copies(candidate).filter((entry) => entry.from === undefined)) {
        for (const source of copy.sources) expect({ source, exists: existsSync(repoPath(source)) }).toEqual({ source, exists: true });
      }
    }
  });

  it('keeps host builds and dependencies out of the build context', () => {
    const ignored = readRepoFile('docker', 'Dockerfile.dockerignore').split('\n').map((line) => line.trim());
    expect(ignored).toEqual(expect.arrayContaining(['**/node_modules', 'dist', '.local', '.git']));
    for (const needed of ['docker', 'apps', 'libs', 'tools', 'package.json', 'package-lock.json']) expect(ignored).not.toContain(needed);
  });
});

describe('docker/healthcheck.cjs', () => {
  it("knows each app's default port", () => {
    const text = readRepoFile('docker', 'healthcheck.cjs');
    const block = /const DEFAULT_PORTS = \{([^}]*)\}/.exec(text)?.[1] ?? '';
    const ports = Object.fromEntries([...block.matchAll(/'?([a-z-]+)'?:\s*(\d+)/g)].map(([, app, port]) => [app, Number(port)]));
    expect(ports).toEqual(SPEC_APP_PORTS);
    for (const app of appNames()) {
      const configured = configuredDefaultPort(app);
      if (configured !== undefined) expect({ app, port: ports[app] }).toEqual({ app, port: configured });
    }
  });

  it('fails for an unreachable target and a missing file, passes for a present one', () => {
    const run = (...targets: string[]) => spawnSync(process.execPath, [repoPath('docker', 'healthcheck.cjs'), ...targets], { timeout: 10000 }).status;
    expect(run('http://127.0.0.1:1/ready')).toBe(1);
    expect(run(`file:${join(tmpdir(), 'smart-router-no-such-kubeconfig')}`)).toBe(1);
    expect(run(`file:${repoPath('docker', 'healthcheck.cjs')}`)).toBe(0);
  });
});

describe('docker/collect-dist.mjs', () => {
  let work: string;

  function write(path: string, text: string): void {
    mkdirSync(dirname(join(work, path)), { recursive: true });
    writeFileSync(join(work, path), text);
  }

  function stub(name: string, project = `libs/${name}`): void {
    write(`dist/node_modules/@smart-router/${name}/package.json`, JSON.stringify({ name: `@smart-router/${name}`, main: `../../../${project}/src/index.js` }));
    if (!existsSync(join(work, 'dist', project))) write(`dist/${project}/src/index.js`, '');
  }

  function collect(app: string) {
    return spawnSync(process.execPath, [repoPath('docker', 'collect-dist.mjs'), app, join(work, 'out')], { cwd: work, encoding: 'utf8', timeout: 10000 });
  }

  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'collect-dist-'));
    write('dist/apps/demo/src/main.js', 'require("@smart-router/alpha");');
    write('dist/libs/alpha/src/index.js', 'require("@smart-router/beta");');
    write('dist/libs/beta/src/index.js', 'require("node:fs");');
    write('dist/libs/beta/src/lua/script-1.lua', 'return 1');
    write('dist/apps/leaky/src/main.js', 'require("@smart-router/testing");');
    for (const name of ['alpha', 'beta', 'gamma', 'testing']) stub(name);
  });

  afterEach(() => rmSync(work, { recursive: true, force: true }));

  it('copies the app and exactly the libraries it requires, transitively, with their files', () => {
    const result = collect('demo');
    expect(result.status).toBe(0);
    expect(readdirSync(join(work, 'out', 'dist', 'libs')).sort()).toEqual(['alpha', 'beta']);
    expect(readdirSync(join(work, 'out', 'dist', 'node_modules', '@smart-router')).sort()).toEqual(['alpha', 'beta']);
    expect(existsSync(join(work, 'out', 'dist', 'libs', 'beta', 'src', 'lua', 'script-1.lua'))).toBe(true);
    expect(existsSync(join(work, 'out', 'dist', 'apps', 'demo', 'src', 'main.js'))).toBe(true);
    expect(existsSync(join(work, 'out', 'dist', 'apps', 'leaky'))).toBe(false);
  });

  it('refuses test helpers in an image', () => {
    const result = collect('leaky');
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/@smart-router\/testing, which never ships/);
  });

  it('refuses an app that was not built', () => {
    const result = collect('nope');
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/"nope" is not built/);
  });
});
