module.exports = async function globalTeardown() {
  const child = globalThis.__SR_REDIS__;
  if (child) child.kill('SIGKILL');
};
