/** Identifier rules shared by every HTTP entry point (SPEC section 3). */
export const CALL_SID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const MERCHANT_ID_PATTERN = CALL_SID_PATTERN;
/** DNS-1123 label: what Kubernetes allows as a pod name segment. */
export const POD_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function isCallSid(value: unknown): value is string {
  return typeof value === 'string' && CALL_SID_PATTERN.test(value);
}

export function isMerchantId(value: unknown): value is string {
  return typeof value === 'string' && MERCHANT_ID_PATTERN.test(value);
}

export function isPodName(value: unknown): value is string {
  return typeof value === 'string' && POD_NAME_PATTERN.test(value);
}

const inner = (pattern: RegExp) => pattern.source.slice(1, -1);

/**
 * A media WebSocket path, as routed by every edge (tools/gateway, both nginx
 * configs): the seed form `/ws/pod/{pod_name}/{call_sid}`, or the signed form
 * with `/{allocation_id}/{expiry}/{signature}` after it (SPEC 10.1, media-url.ts).
 * Group 1 is the pod, group 3 the call, groups 4-6 the signed tail. The tail's
 * syntax is deliberately loose (a truncated or garbled signature still routes,
 * so the edge's check answers it 403, not the router 400); media-url.ts
 * verifies it exactly.
 */
export const WS_PATH = new RegExp(`^/ws/pod/(${inner(POD_NAME_PATTERN)})/(${inner(CALL_SID_PATTERN)})(?:/([0-9]{1,16})/([0-9]{1,12})/([A-Za-z0-9_-]{1,128}))?$`);
