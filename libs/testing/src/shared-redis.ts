/**
 * The redis-server started once for the whole test run by the Jest global
 * setup. Tests isolate themselves with a unique key prefix; tests that stop,
 * pause or flush Redis start their own RedisServer instead.
 */
export function sharedRedisUrl(): string {
  const port = process.env.SR_TEST_REDIS_PORT;
  if (!port) throw new Error('SR_TEST_REDIS_PORT is not set: run tests through `npm test` (jest globalSetup starts Redis)');
  return `redis://127.0.0.1:${port}`;
}
