import { TObject, TSchema } from '@sinclair/typebox';
import { ErrorBody, RouteContract } from './route-contract';

export interface OpenApiInfo {
  title: string;
  version: string;
  description?: string;
}

/** A plain JSON copy of a TypeBox schema (its symbol-keyed metadata dropped). */
function plain(schema: TSchema): Record<string, unknown> {
  return JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
}

function parameters(where: 'path' | 'query', schema: TSchema | undefined): Record<string, unknown>[] {
  if (!schema) return [];
  const object = schema as TObject;
  const required = new Set(object.required ?? []);
  return Object.entries(object.properties).map(([name, property]) => ({
    name, in: where, required: where === 'path' || required.has(name), schema: plain(property),
  }));
}

/**
 * The OpenAPI 3.1 document of one app, built from the same route contracts the
 * app validates and serializes with: nothing is written twice.
 */
export function openApiDocument(info: OpenApiInfo, routes: RouteContract[], securitySchemes: Record<string, unknown> = {}): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const responses: Record<string, unknown> = {};
    for (const [status, response] of Object.entries(route.responses)) {
      const description = response.codes?.length ? `${response.description} (code: ${response.codes.join(', ')})` : response.description;
      if (response.schema === ErrorBody) {
        responses[status] = { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
      } else if (response.schema) {
        responses[status] = { description, content: { 'application/json': { schema: plain(response.schema) } } };
      } else if (response.contentType) {
        const schema = response.contentType.startsWith('application/json') ? { type: 'object' } : { type: 'string' };
        responses[status] = { description, content: { [response.contentType]: { schema, ...(response.example ? { example: response.example } : {}) } } };
      } else {
        responses[status] = { description };
      }
    }
    const operation: Record<string, unknown> = {
      summary: route.summary,
      operationId: `${route.method.toLowerCase()}${route.path.replace(/[{}]/g, '').split(/[/_.-]/).filter(Boolean).map((part) => part[0].toUpperCase() + part.slice(1)).join('')}`,
      // Alternatives: a bearer token with the role, or the route's own scheme (either one suffices).
      security: [...(route.security ? [{ bearer: [route.security] }] : []), ...(route.scheme ? [{ [route.scheme]: [] }] : [])],
      responses,
    };
    const query = parameters('query', route.query);
    if (query.length) operation.parameters = query;
    if (route.body) {
      const types = route.bodyContentTypes ?? ['application/json'];
      operation.requestBody = { required: true, content: Object.fromEntries(types.map((type) => [type, { schema: plain(route.body as TSchema) }])) };
    }
    paths[route.path] ??= {};
    // Path parameters belong to the path (every method of it validates them the same way).
    const pathParameters = parameters('path', route.params);
    if (pathParameters.length) paths[route.path].parameters ??= pathParameters;
    paths[route.path][route.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.1.0',
    info,
    components: {
      securitySchemes: { ...securitySchemes, bearer: { type: 'http', scheme: 'bearer', description: 'static tokens from configuration; scopes name the role needed (viewer < operator)' } },
      schemas: { Error: plain(ErrorBody) },
    },
    paths,
  };
}
