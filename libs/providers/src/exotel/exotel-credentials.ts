import { ApiError } from '@smart-router/http';
import { matchesAny } from '../constant-time';
import { WebhookRequest, headerOf } from '../webhook-request';

export interface BasicCredential {
  user: string;
  password: string;
}

/**
 * Parses `user:password` entries (the password may contain `:`, the user may
 * not: RFC 7617). Throws with a message naming the bad entry's position.
 */
export function parseBasicCredentials(entries: readonly string[]): BasicCredential[] {
  return entries.map((entry, index) => {
    const colon = entry.indexOf(':');
    if (colon <= 0 || colon === entry.length - 1) throw new Error(`entry ${index + 1} must be user:password with both parts non-empty`);
    return { user: entry.slice(0, colon), password: entry.slice(colon + 1) };
  });
}

/**
 * Exotel signs nothing: its documented options are an IP allow-list or HTTP
 * Basic credentials, which Exotel sends as `Authorization: Basic` when they
 * are embedded in the configured URL (`https://user:pass@host/...`;
 * developer.exotel.com, Stream/Voicebot applet). No credentials configured =
 * not checked. Missing or wrong credentials answer 401, the Basic scheme's status.
 */
export class ExotelCredentials {
  private readonly accepted: string[];

  constructor(credentials: readonly BasicCredential[]) {
    this.accepted = credentials.map((credential) => `${credential.user}:${credential.password}`);
  }

  get enabled(): boolean {
    return this.accepted.length > 0;
  }

  verify(request: WebhookRequest): void {
    if (!this.enabled) return;
    const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(headerOf(request, 'authorization') ?? '');
    if (!match) throw new ApiError(401, 'CREDENTIALS_MISSING', 'missing basic credentials');
    const presented = Buffer.from(match[1], 'base64').toString('utf8');
    if (!matchesAny([presented], this.accepted)) throw new ApiError(401, 'CREDENTIALS_INVALID', 'invalid basic credentials');
  }
}
