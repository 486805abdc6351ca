import { timingSafeEqual, createHash } from 'node:crypto';
import { ApiError } from './api-error';

export type Role = 'viewer' | 'operator';

/**
 * Static bearer tokens from configuration. With no token configured the API
 * is open: the app only starts that way with ALLOW_UNAUTHENTICATED=true (SPEC
 * 10.1; its config refuses otherwise) and says so at start-up.
 */
export class BearerTokens {
  private readonly tokens: { digest: Buffer; role: Role }[];

  constructor(operatorTokens: string[], viewerTokens: string[] = []) {
    this.tokens = [
      ...operatorTokens.map((token) => ({ digest: digest(token), role: 'operator' as const })),
      ...viewerTokens.map((token) => ({ digest: digest(token), role: 'viewer' as const })),
    ];
  }

  get enabled(): boolean {
    return this.tokens.length > 0;
  }

  /** Throws 401 without a known token and 403 when the role is too weak. */
  authorize(header: string | undefined, needed: Role): void {
    if (!this.enabled) return;
    const role = this.roleOf(header);
    if (needed === 'operator' && role !== 'operator') throw ApiError.forbidden('this action needs an operator token');
  }

  /** The strongest role the header's token carries (operator when no token is configured); 401 without a known token. */
  roleOf(header: string | undefined): Role {
    if (!this.enabled) return 'operator';
    const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    if (!match) throw ApiError.unauthorized();
    const presented = digest(match[1]);
    // Compare against every token so timing does not reveal which one matched.
    let role: Role | null = null;
    for (const token of this.tokens) {
      if (timingSafeEqual(token.digest, presented) && role !== 'operator') role = token.role;
    }
    if (!role) throw ApiError.unauthorized();
    return role;
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
