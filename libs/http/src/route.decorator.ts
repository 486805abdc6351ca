import { applyDecorators, Delete, Get, HttpCode, Patch, Post, Put } from '@nestjs/common';
import { RouteSchema } from '@nestjs/platform-fastify';
import { RouteContract, fastifyPath } from '@smart-router/api-contract';
import { AcceptsBody } from './media-types';

const METHODS = { GET: Get, POST: Post, PUT: Put, DELETE: Delete, PATCH: Patch };

/**
 * Mounts a handler on its route contract: path and method, success status, and
 * the Fastify schema (request validated by Ajv, JSON responses serialized by
 * fast-json-stringify per status). Use under a `@Controller()` without prefix:
 * the contract holds the whole path.
 */
export function Route(contract: RouteContract): MethodDecorator {
  const response: Record<number, unknown> = {};
  for (const [status, answer] of Object.entries(contract.responses)) if (answer.schema) response[Number(status)] = answer.schema;
  const success = Math.min(...Object.keys(contract.responses).map(Number).filter((status) => status < 300));
  return applyDecorators(
    METHODS[contract.method](fastifyPath(contract.path)),
    HttpCode(success),
    RouteSchema({
      ...(contract.body && !contract.bodyContentTypes ? { body: contract.body } : {}),
      ...(contract.params ? { params: contract.params } : {}),
      ...(contract.query ? { querystring: contract.query } : {}),
      response,
    }),
    // Which request bodies the route takes (default JSON only; installMediaTypeCheck enforces it).
    ...(contract.bodyContentTypes ? [AcceptsBody(contract.bodyContentTypes)] : []),
  );
}
