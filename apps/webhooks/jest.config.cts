// eslint-disable-next-line @typescript-eslint/no-require-imports
const { preset } = require('../../jest.preset.cjs');

export default { ...preset, displayName: 'webhooks', rootDir: __dirname };
