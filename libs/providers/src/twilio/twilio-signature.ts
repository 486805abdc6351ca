import { createHash, createHmac } from 'node:crypto';
import { constantTimeEqual, matchesAny } from '../constant-time';
import { signatureInvalid, signatureMissing } from '../provider-adapter';
import { ParamMap, WebhookRequest, formParams, headerOf, parseParams, queryText } from '../webhook-request';

export const TWILIO_SIGNATURE_HEADER = 'X-Twilio-Signature';

/**
 * Twilio's request signature (twilio.com/docs/usage/webhooks/webhooks-security,
 * twilio-node `webhooks.ts`): base64(HMAC-SHA1(auth token, url + every POST
 * parameter sorted by name as name+value)). A repeated parameter contributes
 * each distinct value, sorted, as name+value.
 */
export function twilioSignature(authToken: string, url: string, params: ParamMap): string {
  let data = url;
  for (const name of [...params.keys()].sort()) {
    for (const value of [...new Set(params.get(name))].sort()) data += name + value;
  }
  return createHmac('sha1', authToken).update(Buffer.from(data, 'utf8')).digest('base64');
}

const DEFAULT_PORTS: Record<string, string> = { 'http:': '80', 'https:': '443' };
const RAW_URL = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#@]*@)?(\[[^\]]*\]|[^/?#:]*)(?::(\d*))?(.*)$/is;

/**
 * The spellings of one URL Twilio may have signed. Twilio's back end is
 * inconsistent about the default port (twilio-node checks the URL with and
 * without it), and twilio-node normalises through WHATWG `URL` while older
 * signatures cover the raw text (an unencoded `'` in the query): accept both.
 */
export function twilioUrlVariants(url: string): string[] {
  const variants = new Set<string>([url]);
  const raw = RAW_URL.exec(url);
  if (raw) {
    const [, scheme, userinfo = '', host, port, rest] = raw;
    variants.add(scheme + userinfo + host + rest);
    const defaultPort = DEFAULT_PORTS[scheme.slice(0, -2).toLowerCase()];
    if (port === undefined && defaultPort) variants.add(`${scheme}${userinfo}${host}:${defaultPort}${rest}`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [...variants];
  }
  const defaultPort = DEFAULT_PORTS[parsed.protocol];
  if (!parsed.port && defaultPort) {
    const credentials = parsed.username || parsed.password ? `${parsed.username}${parsed.password ? `:${parsed.password}` : ''}@` : '';
    variants.add(`${parsed.protocol}//${credentials}${parsed.host}:${defaultPort}${parsed.pathname}${parsed.search}${parsed.hash}`);
  }
  parsed.port = '';
  variants.add(parsed.toString());
  return [...variants];
}

/**
 * Validates a Twilio signature against several auth tokens (rotation: the old
 * and the new token are both configured for a while).
 *
 * A URL carrying `bodySHA256` is Twilio's JSON-body variant: the HMAC covers
 * the URL alone and the raw body must hash to that value.
 */
export function isValidTwilioSignature(authTokens: readonly string[], signature: string, url: string, params: ParamMap, rawBody?: Buffer): boolean {
  const bodyHash = parseParams(queryText(url)).get('bodySHA256')?.[0];
  const signedParams: ParamMap = bodyHash === undefined ? params : new Map();
  const variants = twilioUrlVariants(url);
  const expected = authTokens.flatMap((token) => variants.map((variant) => twilioSignature(token, variant, signedParams)));
  const signed = matchesAny([signature], expected);
  if (bodyHash === undefined) return signed;
  const actualHash = createHash('sha256').update(rawBody ?? Buffer.alloc(0)).digest('hex');
  return constantTimeEqual(bodyHash, actualHash) && signed;
}

/** X-Twilio-Signature check for one app; no tokens configured = not checked. */
export class TwilioSignature {
  constructor(private readonly authTokens: readonly string[]) {}

  get enabled(): boolean {
    return this.authTokens.length > 0;
  }

  verify(request: WebhookRequest): void {
    if (!this.enabled) return;
    const signature = headerOf(request, TWILIO_SIGNATURE_HEADER);
    if (signature === undefined) throw signatureMissing(TWILIO_SIGNATURE_HEADER);
    if (!isValidTwilioSignature(this.authTokens, signature, request.url, formParams(request), request.rawBody)) {
      throw signatureInvalid(TWILIO_SIGNATURE_HEADER);
    }
  }
}
