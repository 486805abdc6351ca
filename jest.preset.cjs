// Shared by every project: swc transform, library aliases, real Redis.
const { join } = require('node:path');

const root = __dirname;

exports.preset = {
  testEnvironment: 'node',
  transform: { '^.+\\.(t|j|mj)s$': ['@swc/jest', { swcrc: true, cwd: root }] },
  transformIgnorePatterns: ['/node_modules/(?!(@kubernetes/client-node|openid-client|jose|oauth4webapi)/)'],
  moduleFileExtensions: ['ts', 'js', 'mjs', 'cjs', 'json'],
  moduleNameMapper: {
    '^@smart-router/sim$': join(root, 'tools/sim/src/index.ts'),
    '^@smart-router/gateway$': join(root, 'tools/gateway/src/index.ts'),
    '^@smart-router/stack$': join(root, 'tools/stack/src/index.ts'),
    '^@smart-router/(.*)$': join(root, 'libs/$1/src/index.ts'),
  },
  testMatch: ['**/*.spec.ts'],
  testTimeout: 30000,
};
