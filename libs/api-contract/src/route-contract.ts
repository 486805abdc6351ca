import { Static, TSchema, Type } from '@sinclair/typebox';

/**
 * What a field's 400 says, carried inside its JSON schema as the OpenAPI
 * extension `x-errors`: `missing` when absent, null or empty, `invalid` for
 * any other schema failure. One definition gives validation, the error
 * answer and the documentation.
 */
export interface FieldErrors {
  missing?: { code: string; message: string };
  invalid: { code: string; message: string };
}

export const ERRORS_KEYWORD = 'x-errors';

/** Every error answer: `{"error": message, "code": CODE}`. */
export const ErrorBody = Type.Object(
  { error: Type.String({ description: 'human-readable reason' }), code: Type.String({ pattern: '^[A-Z0-9_]+$', description: 'stable machine code' }) },
  { additionalProperties: false },
);
export type ErrorBody = Static<typeof ErrorBody>;

export interface ResponseContract {
  description: string;
  /** JSON body (serialized by fast-json-stringify); absent for non-JSON answers. */
  schema?: TSchema;
  /** Content type when not JSON (XML answers, Prometheus text, HTML). */
  contentType?: string;
  /** Error codes this status can carry (documented on the error body). */
  codes?: string[];
  /** Example body (non-JSON answers). */
  example?: string;
}

/** One route, defined once: the app validates and serializes with it, /openapi.json documents it, the client is typed by it. */
export interface RouteContract {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';
  /** OpenAPI path (`/api/v1/pod/{pod_name}`). */
  path: string;
  summary: string;
  /** Bearer token role needed; absent = open (probes) or `scheme`. */
  security?: 'viewer' | 'operator';
  /** Another security scheme of the document (provider signatures, agent tokens), by name; with `security`, either one is accepted. */
  scheme?: string;
  params?: TSchema;
  query?: TSchema;
  body?: TSchema;
  /** Request body content types when not JSON only (provider form posts); the app parses and checks these itself. */
  bodyContentTypes?: string[];
  responses: Record<number, ResponseContract>;
}

/** An error response with its codes. */
export function errorResponse(description: string, ...codes: string[]): ResponseContract {
  return { description, schema: ErrorBody, codes };
}

/** A string field with its own 400s (see FieldErrors). */
export function field<T extends TSchema>(schema: T, errors: FieldErrors): T {
  return { ...schema, [ERRORS_KEYWORD]: errors };
}

/** Fastify route path (`:param`) of an OpenAPI path (`{param}`). */
export function fastifyPath(path: string): string {
  return path.replace(/\{([^}]+)\}/g, ':$1');
}
