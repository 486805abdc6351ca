import { Type } from '@sinclair/typebox';
import { RouteContract } from './route-contract';

/** Only up or down: `/ready` is public, so why it is down is logged, never answered (SPEC 10.1). */
const ReadyBody = Type.Object({ status: Type.Union([Type.Literal('up'), Type.Literal('down')]) }, { additionalProperties: false });

/** Served by every app beside its own routes (SPEC section 2). */
export const operationalRoutes = {
  health: {
    method: 'GET', path: '/health', summary: 'Liveness: the process serves HTTP',
    responses: { 200: { description: 'alive', schema: Type.Object({ status: Type.Literal('ok') }) } },
  },
  ready: {
    method: 'GET', path: '/ready', summary: 'Readiness: dependencies answer (a real Lua round trip on Redis); 503 from the start of shutdown',
    responses: { 200: { description: 'ready: `{"status":"up"}`', schema: ReadyBody }, 503: { description: 'not ready or shutting down: `{"status":"down"}` (the reason is in the app log)', schema: ReadyBody } },
  },
  metrics: {
    method: 'GET', path: '/metrics', summary: 'Prometheus metrics (never on the public path)',
    responses: { 200: { description: 'Prometheus text exposition 0.0.4', contentType: 'text/plain; version=0.0.4' } },
  },
  openapi: {
    method: 'GET', path: '/openapi.json', summary: 'This document',
    responses: { 200: { description: 'OpenAPI 3.1 document', contentType: 'application/json' } },
  },
} satisfies Record<string, RouteContract>;
