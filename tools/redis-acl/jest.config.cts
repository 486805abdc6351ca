// eslint-disable-next-line @typescript-eslint/no-require-imports
const { preset } = require('../../jest.preset.cjs');

export default { ...preset, displayName: 'redis-acl', rootDir: __dirname };
