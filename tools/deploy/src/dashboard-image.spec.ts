import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, repoPath } from './repository';

describe('the admin image carries the dashboard (SPEC 9.4)', () => {
  it('collects the built static assets with the admin app, as docker/Dockerfile does', () => {
    // npm test builds before it tests; the Dockerfile's build stage runs the same build.mjs.
    expect(existsSync(repoPath('dist', 'apps', 'admin', 'src', 'main.js'))).toBe(true);
    const out = mkdtempSync(join(tmpdir(), 'sr-collect-'));
    try {
      const run = spawnSync(process.execPath, ['docker/collect-dist.mjs', 'admin', out], { cwd: ROOT, encoding: 'utf8' });
      expect(run.status).toBe(0);
      const assets = readdirSync(join(out, 'dist', 'apps', 'admin', 'src', 'dashboard')).sort();
      expect(assets).toEqual(readdirSync(repoPath('apps', 'admin', 'src', 'dashboard')).sort());
      expect(assets).toEqual(expect.arrayContaining(['index.html', 'dashboard.js', 'dashboard.css']));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
