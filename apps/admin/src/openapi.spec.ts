import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { PoolFixture, createPoolFixture, openApiProblems, sharedRedisUrl } from '@smart-router/testing';
import { bootstrap } from './main';

describe('admin /openapi.json', () => {
  let pool: PoolFixture;
  let app: NestFastifyApplication;
  beforeAll(async () => {
    pool = await createPoolFixture({ url: sharedRedisUrl() });
    app = await bootstrap({ REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error' });
  });
  afterAll(async () => {
    await app.close();
    await pool.close();
  });

  it('is valid OpenAPI, documents every served route, and every documented route answers', async () => {
    expect(await openApiProblems(app)).toEqual([]);
  });
});
