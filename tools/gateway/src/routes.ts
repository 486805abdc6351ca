import { WS_PATH } from '@smart-router/allocation';

/**
 * SPEC section 2 routing, the same table nginx implements in docker-compose
 * and Kubernetes (docker/nginx): one base URL in front of every service.
 */
export interface Upstreams {
  allocationApi: string;
  webhooks: string;
  admin: string;
  /** Where simulated (or real) voice-agent pods take `/ws/pod/{pod}/{call_sid}` (signed: `/{allocation_id}/{expiry}/{signature}` after it). */
  voiceAgents: string;
}

export type Route = { upstream: keyof Upstreams } | { status: number; body: { error: string; code: string } };

const WEBHOOK_PATH = /^\/(api\/v1\/(twilio|plivo|exotel)(\/|$)|agent\/voice\/breeze-buddy\/(twilio|plivo|exotel)\/callback(\/|$))/;
const ADMIN_PATH = /^\/api\/v1\/(status|drain|undrain)$|^\/api\/v1\/(pod|admin)\/|^\/dashboard(\/|$)/;
export { WS_PATH };

export function route(pathname: string): Route {
  if (pathname === '/api/v1/allocate' || pathname === '/api/v1/release' || pathname === '/api/v1/connected') return { upstream: 'allocationApi' };
  if (WEBHOOK_PATH.test(pathname)) return { upstream: 'webhooks' };
  if (ADMIN_PATH.test(pathname)) return { upstream: 'admin' };
  if (pathname.startsWith('/ws/pod/')) {
    return WS_PATH.test(pathname) ? { upstream: 'voiceAgents' } : { status: 400, body: { error: 'invalid pod or call_sid in path', code: 'INVALID_PATH' } };
  }
  // The seeds probe /health and /ready on the public URL; they reach the hot-path service.
  if (pathname === '/health' || pathname === '/ready') return { upstream: 'allocationApi' };
  if (pathname === '/metrics') return { status: 404, body: { error: 'metrics are not served on the public path', code: 'NOT_FOUND' } };
  return { status: 404, body: { error: 'route not found', code: 'NOT_FOUND' } };
}
