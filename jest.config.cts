import type { Config } from 'jest';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const projects = ['apps', 'libs', 'tools'].flatMap((group) =>
  existsSync(join(__dirname, group))
    ? readdirSync(join(__dirname, group))
        .map((name) => join(__dirname, group, name, 'jest.config.cts'))
        .filter((file) => existsSync(file))
    : [],
);

/**
 * One Jest run for the whole workspace. The global setup starts a real
 * redis-server (Jest would hang forever retrying a missing one); the counts
 * reporter feeds the `N passed, N failed` line that CI reads.
 */
const config: Config = {
  projects,
  globalSetup: '<rootDir>/tools/jest/global-setup.cjs',
  globalTeardown: '<rootDir>/tools/jest/global-teardown.cjs',
  reporters: ['default', '<rootDir>/tools/jest/counts-reporter.cjs'],
  maxWorkers: 2,
  // A global option: projects cannot set it. Polling helpers have their own, shorter deadlines.
  testTimeout: 30000,
};

export default config;
