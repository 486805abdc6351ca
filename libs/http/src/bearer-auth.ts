import { timingSafeEqual, createHash } from 'node:crypto';
import { ApiError } from './api-error';

export type Role = 'viewer' | 'operator';

/**
 * Static bearer tokens from configuration. With no token configured the API
 * is open: the app only starts that way with ALLOW_UNAUTHENTICATED=true (SPEC
 * 10.1; its config refuses otherwise) and says so at start-up.
 */
export class BearerTokens {
  private readonly tokens: SecretTable<Role>;

  constructor(operatorTokens: string[], viewerTokens: string[] = []) {
    this.tokens = new SecretTable([
      ...operatorTokens.map((secret) => ({ secret, grant: 'operator' as const })),
      ...viewerTokens.map((secret) => ({ secret, grant: 'viewer' as const })),
    ]);
  }

  get enabled(): boolean {
    return this.tokens.size > 0;
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
    const token = bearerToken(header);
    if (token === null) throw ApiError.unauthorized();
    const roles = this.tokens.grants(token);
    if (roles.length === 0) throw ApiError.unauthorized();
    return roles.includes('operator') ? 'operator' : roles[0];
  }
}

/** The token of an `Authorization: Bearer <token>` header (scheme in any case); null when it is not one. */
export function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  return match ? match[1] : null;
}

/**
 * Static secrets from configuration, each with what it grants, held as
 * SHA-256 digests. Shared by admin's BearerTokens and allocation-api's
 * CallerAuthenticator.
 */
export class SecretTable<T> {
  private readonly entries: { digest: Buffer; grant: T }[];

  constructor(entries: readonly { secret: string; grant: T }[]) {
    this.entries = entries.map((entry) => ({ digest: digest(entry.secret), grant: entry.grant }));
  }

  get size(): number {
    return this.entries.length;
  }

  /** What `token` grants, in configuration order; empty when unknown. */
  grants(token: string): T[] {
    const presented = digest(token);
    // Compare against every secret so timing does not reveal which one matched.
    const found: T[] = [];
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, presented)) found.push(entry.grant);
    }
    return found;
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
