import SwaggerParser from '@apidevtools/swagger-parser';
import Ajv2020 from 'ajv/dist/2020';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { SERVED_ROUTES } from '@smart-router/http';
import { PoolFixture, createPoolFixture } from './pool-fixture';
import { sharedRedisUrl } from './shared-redis';

const METHODS = ['get', 'post', 'put', 'delete', 'patch'];

/** A Fastify route pattern (`/api/v1/:provider/allocate`, `.../callback/*`) as a RegExp. */
function routePattern(path: string): RegExp {
  const source = path.split('/').map((segment) => (segment === '*' ? '.*' : segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/');
  return new RegExp(`^${source}$`);
}

/** A concrete URL for a documented path: every `{param}` gets a well-formed sample value. */
function samplePath(path: string): string {
  return path.replace(/\{([^}]+)\}/g, (_, name: string) => (name === 'name' || name === 'pod_name' ? 'voice-agent-0' : `sample-${name}`));
}

/**
 * Checks an app's /openapi.json: valid OpenAPI (validated by
 * @apidevtools/swagger-parser, not by us), every route the app serves is in
 * it, and every documented operation answers something other than the
 * router's "route not found". Returns the problems found (none = pass).
 */
export async function openApiProblems(app: NestFastifyApplication): Promise<string[]> {
  const address = app.getHttpServer().address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const document = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
  const problems: string[] = [];
  try {
    await SwaggerParser.validate(structuredClone(document) as never);
  } catch (error) {
    problems.push(`invalid OpenAPI document: ${(error as Error).message}`);
  }
  // OpenAPI 3.1's meta-schema leaves schema objects open: compile each one as JSON Schema 2020-12 too.
  const ajv = new Ajv2020({ strict: false });
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      const schemas = JSON.stringify(operation).match(/"schema":/g) ? collectSchemas(operation) : [];
      for (const schema of schemas) {
        try {
          ajv.compile(schema);
        } catch (error) {
          problems.push(`${method.toUpperCase()} ${path}: invalid JSON schema: ${(error as Error).message}`);
        }
      }
    }
  }
  const documented = Object.entries(document.paths).flatMap(([path, item]) => METHODS.filter((method) => item[method]).map((method) => ({ method: method.toUpperCase(), path })));
  const servedRoutes = SERVED_ROUTES.get(app) ?? [];
  if (servedRoutes.length === 0) problems.push('no served routes recorded (app not started by startHttpApp?)');
  for (const served of servedRoutes) {
    const pattern = routePattern(served.path);
    if (!documented.some((entry) => entry.method === served.method && pattern.test(samplePath(entry.path)))) problems.push(`served but not documented: ${served.method} ${served.path}`);
  }
  for (const entry of documented) {
    const hasBody = entry.method === 'POST' || entry.method === 'PUT' || entry.method === 'PATCH';
    const response = await fetch(base + samplePath(entry.path), { method: entry.method, ...(hasBody ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {}) });
    // Only a 404 body is read: a live feed (server-sent events) never ends.
    if (response.status !== 404) {
      await response.body?.cancel();
      continue;
    }
    if ((await response.text()).includes('route not found')) problems.push(`documented but not served: ${entry.method} ${entry.path}`);
  }
  return problems;
}

/** Every `schema` object under an operation, except bare references to components. */
function collectSchemas(node: unknown, found: object[] = []): object[] {
  if (node === null || typeof node !== 'object') return found;
  for (const [key, value] of Object.entries(node)) {
    if (key === 'schema' && value && typeof value === 'object' && !('$ref' in value)) found.push(value);
    else collectSchemas(value, found);
  }
  return found;
}

/** The OpenAPI test of one HTTP app, started in-process by its `bootstrap(env)` on the shared test Redis. */
export function describeOpenApi(name: string, bootstrap: (env: Record<string, string>) => Promise<NestFastifyApplication>): void {
  // Jest's globals, read when called (this library is also built for the benchmark, outside Jest).
  const { describe, it, expect, beforeAll, afterAll } = globalThis as unknown as typeof import('@jest/globals');
  describe(`${name} /openapi.json`, () => {
    let pool: PoolFixture;
    let app: NestFastifyApplication;
    beforeAll(async () => {
      pool = await createPoolFixture({ url: sharedRedisUrl() });
      app = await bootstrap({ REDIS_URL: sharedRedisUrl(), REDIS_PREFIX: pool.keys.prefix, HTTP_PORT: '0', LOG_LEVEL: 'error', ALLOW_UNAUTHENTICATED: 'true' });
    });
    afterAll(async () => {
      await app.close();
      await pool.close();
    });

    it('is valid OpenAPI, documents every served route, and every documented route answers', async () => {
      expect(await openApiProblems(app)).toEqual([]);
    });
  });
}
