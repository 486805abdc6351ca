import { createHmac, timingSafeEqual } from 'node:crypto';
import { WS_PATH } from './validation';

/**
 * Signed media URLs (SPEC 10.1 "Media URLs are credentials").
 *
 * With `MEDIA_URL_SECRET` set, a ws_url is
 *   `{VOICE_AGENT_BASE_URL}/ws/pod/{pod}/{call_sid}/{allocation_id}/{expiry}/{signature}`
 * - allocation_id: the call's fencing token (`0` for a record written before
 *   fencing, which has none);
 * - expiry: Unix seconds, allocation time + MEDIA_URL_TTL_SECONDS;
 * - signature: HMAC-SHA256 over `smart-router-media-v1/{pod}/{call_sid}/{allocation_id}/{expiry}`,
 *   base64url without padding (43 characters).
 * Everything sits in the path because Twilio's `<Stream url>` takes no query
 * string. No component may contain `/` (pod: DNS label, call_sid: [A-Za-z0-9._:-],
 * the rest digits), so the signed text is unambiguous.
 *
 * Rotation: several secrets verify (comma-separated in MEDIA_URL_SECRET), the
 * first one signs. Put the new secret first and keep the old one second for at
 * least MEDIA_URL_TTL_SECONDS (URLs it signed expire by then), then drop it.
 */
export const MEDIA_SIGNATURE_LENGTH = 43;
const SIGNED_PREFIX = 'smart-router-media-v1';
/** Shortest secret accepted: a signature is only as strong as its key. */
export const MIN_MEDIA_SECRET_LENGTH = 16;

/** Which call a media path is for. */
export interface MediaTarget {
  podName: string;
  callSid: string;
  /** null = the call record has no allocation_id (written before fencing), `0` in the URL. */
  allocationId: number | null;
}

/** Why a path was refused; never told to the caller (the edge answers a bare 403). */
export type MediaRefusal = 'malformed' | 'unsigned' | 'bad_signature' | 'expired';

export type MediaPathCheck = { ok: true; target: MediaTarget; expiresAt: number | null } | { ok: false; reason: MediaRefusal };

/** `/ws/pod/...` split into its parts (no check of the signature). */
export function parseMediaPath(path: string): (MediaTarget & { signed: { expiresAt: number; signature: string; allocationText: string; expiryText: string } | null }) | null {
  const match = WS_PATH.exec(path);
  if (!match) return null;
  const [, podName, , callSid, allocationText, expiryText, signature] = match;
  if (allocationText === undefined) return { podName, callSid, allocationId: null, signed: null };
  const allocationId = Number(allocationText);
  return {
    podName,
    callSid,
    allocationId: allocationId === 0 ? null : allocationId,
    signed: { expiresAt: Number(expiryText), signature, allocationText, expiryText },
  };
}

export class MediaUrlSigner {
  private readonly keys: Buffer[];

  /** `secrets`: the first signs, all verify (rotation); none = the seed URL format, unsigned. */
  constructor(secrets: readonly string[], readonly ttlSeconds: number) {
    this.keys = secrets.map((secret) => Buffer.from(secret, 'utf8'));
  }

  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /**
   * The URL's expiry for an allocation made at `allocatedAtMs`: allocation
   * time + TTL, so every repeat of the same allocation (a provider retry) gets
   * the same URL. Once that has passed the URL is signed from `nowMs` instead:
   * a repeated allocate always answers a URL that works.
   */
  expiryFor(allocatedAtMs: number, nowMs: number): number {
    const fromAllocation = Math.floor(allocatedAtMs / 1000) + this.ttlSeconds;
    return fromAllocation > Math.floor(nowMs / 1000) ? fromAllocation : Math.floor(nowMs / 1000) + this.ttlSeconds;
  }

  /** The path of a ws_url: the seed form when no secret is configured. */
  path(target: MediaTarget, expiresAt: number): string {
    const seed = `/ws/pod/${target.podName}/${target.callSid}`;
    if (!this.enabled) return seed;
    const allocation = String(target.allocationId ?? 0);
    return `${seed}/${allocation}/${expiresAt}/${this.signature(this.keys[0], target.podName, target.callSid, allocation, String(expiresAt))}`;
  }

  /**
   * Checks a request path (no query string) at `nowMs`. Without a secret only
   * the seed form is accepted (nothing to verify: the seed's behaviour). With
   * one, only a signed path whose signature matches some configured secret and
   * whose expiry is still ahead. Whether the call is still on that pod is the
   * caller's Redis read (MediaUrls in libs/pool-state).
   */
  verify(path: string, nowMs: number): MediaPathCheck {
    const parsed = parseMediaPath(path);
    if (!parsed) return { ok: false, reason: 'malformed' };
    const target = { podName: parsed.podName, callSid: parsed.callSid, allocationId: parsed.allocationId };
    if (!this.enabled) return parsed.signed ? { ok: false, reason: 'malformed' } : { ok: true, target, expiresAt: null };
    const signed = parsed.signed;
    if (!signed) return { ok: false, reason: 'unsigned' };
    // Only the canonical spelling is ever issued: `0` or no leading zero, digits only.
    if (!/^(0|[1-9][0-9]*)$/.test(signed.allocationText) || !Number.isSafeInteger(Number(signed.allocationText)) || !/^[1-9][0-9]*$/.test(signed.expiryText)) {
      return { ok: false, reason: 'malformed' };
    }
    const presented = Buffer.from(signed.signature, 'utf8');
    let matched = false;
    // Every key is tried, with no early exit, so timing says nothing about which one (or whether one) matched.
    for (const key of this.keys) {
      const expected = Buffer.from(this.signature(key, parsed.podName, parsed.callSid, signed.allocationText, signed.expiryText), 'utf8');
      if (presented.length === expected.length && timingSafeEqual(presented, expected)) matched = true;
    }
    if (!matched) return { ok: false, reason: 'bad_signature' };
    if (signed.expiresAt <= Math.floor(nowMs / 1000)) return { ok: false, reason: 'expired' };
    return { ok: true, target, expiresAt: signed.expiresAt };
  }

  private signature(key: Buffer, podName: string, callSid: string, allocation: string, expiry: string): string {
    return createHmac('sha256', key).update(`${SIGNED_PREFIX}/${podName}/${callSid}/${allocation}/${expiry}`).digest('base64url');
  }
}
