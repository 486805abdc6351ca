import { RouteContract, errorResponse } from './route-contract';

/** The header carrying the URI the client asked the edge for (nginx: `$request_uri`). */
export const ORIGINAL_URI_HEADER = 'x-original-uri';

/**
 * SPEC 10.1: the edge asks allocation-api whether a media WebSocket upgrade may
 * reach its pod (nginx `auth_request`, the local gateway the same way).
 *
 * Who may call it: the edge only. It is never on the public path (nginx serves
 * it from an `internal;` location, tools/gateway does not route it) and needs
 * no token: it answers only yes or no about a URL the caller already holds,
 * changes nothing, and the signature it checks is the credential. Inside the
 * cluster the allocation-api NetworkPolicy limits who reaches it.
 */
export const mediaAuthRoutes = {
  mediaAuth: {
    method: 'GET',
    path: '/internal/media-auth',
    summary: `Edge check of a media WebSocket URL, given in the ${ORIGINAL_URI_HEADER} header (X-Original-URI): 204 when its signature is valid and unexpired and the call is still on that pod under that allocation_id; with no MEDIA_URL_SECRET any well-formed seed path. Edge only (never routed publicly), no token: it answers only yes or no`,
    responses: {
      204: { description: 'the upgrade may go to the pod' },
      403: errorResponse('missing, malformed, wrongly signed, truncated or expired URL, or the call was released or moved', 'MEDIA_URL_REFUSED'),
      503: errorResponse('Redis unavailable: refused (fail closed), retry', 'REDIS_UNAVAILABLE'),
    },
  },
} satisfies Record<string, RouteContract>;
