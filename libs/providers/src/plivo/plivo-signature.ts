import { createHmac } from 'node:crypto';
import { matchesAny } from '../constant-time';
import { signatureInvalid, signatureMissing } from '../provider-adapter';
import { ParamMap, WebhookRequest, formParams, headerOf, parseParams, queryText } from '../webhook-request';

export const PLIVO_SIGNATURE_HEADER = 'X-Plivo-Signature-V3';
export const PLIVO_MAIN_ACCOUNT_SIGNATURE_HEADER = 'X-Plivo-Signature-Ma-V3';
export const PLIVO_NONCE_HEADER = 'X-Plivo-Signature-V3-Nonce';

/** A header carries one signature per active auth token; more than this is not a real request. */
const MAX_SIGNATURES = 8;

function merge(...maps: ParamMap[]): Map<string, string[]> {
  const merged = new Map<string, string[]>();
  for (const map of maps) {
    for (const [name, values] of map) merged.set(name, [...(merged.get(name) ?? []), ...values]);
  }
  return merged;
}

/** `a=1&b=2`: names sorted, values sorted within a name (plivo-node `get_sorted_query_string`). */
function sortedQuery(params: ParamMap): string {
  return [...params.keys()].sort().flatMap((name) => [...(params.get(name) ?? [])].sort().map((value) => `${name}=${value}`)).join('&');
}

/** `a1b2`: the same order, no separators (plivo-node `get_sorted_params_string`). */
function sortedParams(params: ParamMap): string {
  return [...params.keys()].sort().flatMap((name) => [...(params.get(name) ?? [])].sort().map((value) => name + value)).join('');
}

/**
 * The string Plivo's V3 signature covers, before `.nonce` (plivo-node
 * `lib/utils/v3Security.js`, plivo-go `GenerateUrl`; they agree):
 * - base = `scheme://host[:port]/path`, query and fragment removed;
 * - GET: the query and the callback params merged, `?k=v&k=v` sorted;
 * - POST: `?` + the sorted query, then `.` when both a query and params
 *   exist, then the sorted POST params as `k` + `v` with no separators.
 * Query values are compared decoded, as plivo-node does.
 */
export function plivoV3SignedUrl(method: string, url: string, params: ParamMap): string {
  const withoutFragment = url.split('#', 1)[0];
  const base = withoutFragment.split('?', 1)[0];
  const query = parseParams(queryText(withoutFragment));
  if (method.toUpperCase() === 'GET') {
    const all = sortedQuery(merge(query, params));
    return all.length > 0 ? `${base}?${all}` : base;
  }
  const sortedQueryText = sortedQuery(query);
  const postText = sortedParams(params);
  let signed = base;
  if (sortedQueryText.length > 0 || postText.length > 0) signed += `?${sortedQueryText}`;
  if (sortedQueryText.length > 0 && postText.length > 0) signed += '.';
  return signed + postText;
}

/** base64(HMAC-SHA256(auth token, signed url + "." + nonce)). */
export function plivoV3Signature(authToken: string, method: string, url: string, nonce: string, params: ParamMap): string {
  return createHmac('sha256', authToken).update(Buffer.from(`${plivoV3SignedUrl(method, url, params)}.${nonce}`, 'utf8')).digest('base64');
}

/** The header may list several comma-separated signatures (one per active token): any match is enough. */
export function isValidPlivoV3Signature(authTokens: readonly string[], header: string, method: string, url: string, nonce: string, params: ParamMap): boolean {
  const presented = header.split(',').map((value) => value.trim()).filter((value) => value.length > 0).slice(0, MAX_SIGNATURES);
  return matchesAny(presented, authTokens.map((token) => plivoV3Signature(token, method, url, nonce, params)));
}

/**
 * X-Plivo-Signature-V3 check for one app; no tokens configured = not checked.
 * V2 is not accepted: it signs neither the body nor the query, so a captured
 * header authenticates any forged request. `-Ma-V3` (signed with the main
 * account's token) is accepted alongside `-V3`, both against the configured tokens.
 */
export class PlivoSignature {
  constructor(private readonly authTokens: readonly string[]) {}

  get enabled(): boolean {
    return this.authTokens.length > 0;
  }

  verify(request: WebhookRequest): void {
    if (!this.enabled) return;
    const signatures = [headerOf(request, PLIVO_SIGNATURE_HEADER), headerOf(request, PLIVO_MAIN_ACCOUNT_SIGNATURE_HEADER)].filter((value): value is string => value !== undefined);
    const nonce = headerOf(request, PLIVO_NONCE_HEADER);
    if (signatures.length === 0) throw signatureMissing(PLIVO_SIGNATURE_HEADER);
    if (nonce === undefined) throw signatureMissing(PLIVO_NONCE_HEADER);
    const params = formParams(request);
    if (!isValidPlivoV3Signature(this.authTokens, signatures.join(','), request.method, request.url, nonce, params)) {
      throw signatureInvalid(PLIVO_SIGNATURE_HEADER);
    }
  }
}
