import { createHash, timingSafeEqual } from 'node:crypto';
import { CanActivate, ExecutionContext, Injectable, SetMetadata, UseGuards, applyDecorators, createParamDecorator } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { CallScope, isMerchantId } from '@smart-router/allocation';
import { ConfigError } from '@smart-router/config';
import { ApiError } from './api-error';

// Who calls the allocation API (SPEC 10.1), declared on each route with
// @Callers and resolved once per request by CallerGuard; handlers receive the
// resolved caller through @Caller() and pass its scope to the library, which
// enforces it (the release and connect scripts check it atomically).

/** A static dispatcher token from `API_TOKENS`: `secret` (unscoped) or `secret@merchant_a|merchant_b`. */
export interface DispatcherToken {
  secret: string;
  /** null = unscoped: any merchant, any call. */
  merchants: readonly string[] | null;
}

/**
 * Parses `API_TOKENS` entries. The scope follows the LAST `@` (merchant ids
 * never contain one), so a secret may hold `@` only when it carries a scope.
 * A bad entry stops the app naming the variable and the entry's position,
 * never the secret.
 */
export function parseApiTokens(entries: readonly string[], variable = 'API_TOKENS'): DispatcherToken[] {
  return entries.map((entry, index) => {
    const at = entry.lastIndexOf('@');
    const secret = at < 0 ? entry : entry.slice(0, at);
    const where = `entry ${index + 1}`;
    if (secret === '') throw new ConfigError(variable, `${where} has an empty secret`);
    if (at < 0) return { secret, merchants: null };
    const merchants = entry.slice(at + 1).split('|');
    if (merchants.some((merchant) => !isMerchantId(merchant))) {
      throw new ConfigError(variable, `${where} has a bad merchant scope: after "@" give merchant_ids (1-128 chars of A-Za-z0-9._:-) separated by "|"`);
    }
    return { secret, merchants: [...new Set(merchants)] };
  });
}

/** A voice agent, as its Kubernetes ServiceAccount token says (TokenReview). */
export interface AgentIdentity {
  podName: string;
  podUid: string | null;
  /** `system:serviceaccount:{namespace}:{name}` */
  username: string;
}

export type Caller =
  /** No credential, served only in open mode (ALLOW_UNAUTHENTICATED with no API_TOKENS): an unscoped dispatcher. */
  | { kind: 'open' }
  | { kind: 'dispatcher'; merchants: readonly string[] | null }
  | ({ kind: 'agent' } & AgentIdentity);

/** Who a route admits; an `open` caller counts as a dispatcher. */
export type CallerKind = 'dispatcher' | 'agent';

/** What the library must limit a caller to when it acts on a call. */
export function scopeOf(caller: Caller): CallScope {
  if (caller.kind === 'agent') return { podName: caller.podName };
  if (caller.kind === 'dispatcher' && caller.merchants) return { merchants: caller.merchants };
  return {};
}

/**
 * Validates a bearer token that is not a static token. Resolves null when
 * the token is not a valid agent identity (401); rejects when it could not be
 * checked (503: fail closed, never read as "not authenticated").
 */
export interface AgentTokenVerifier {
  verify(token: string): Promise<AgentIdentity | null>;
}

/** A review of one token by the cluster: null = not authenticated; throws when the API could not answer. */
export type AgentTokenReview = (token: string) => Promise<{ podName: string | null; podUid: string | null; username: string } | null>;

/**
 * TokenReview results cached for at most `ttlMs`, keyed by a SHA-256 of the
 * token (never the token), bounded to `maxEntries` (oldest out first).
 * Concurrent requests with one token share one review. A failed review is
 * not cached. A token of a deleted pod stops working within `ttlMs`.
 */
export class CachedAgentTokens implements AgentTokenVerifier {
  private readonly entries = new Map<string, { expiresAt: number; identity: Promise<AgentIdentity | null> }>();

  constructor(private readonly review: AgentTokenReview, private readonly ttlMs: number, private readonly maxEntries = 10000, private readonly now = () => Date.now()) {}

  get size(): number {
    return this.entries.size;
  }

  verify(token: string): Promise<AgentIdentity | null> {
    const key = createHash('sha256').update(token).digest('base64');
    const now = this.now();
    const cached = this.entries.get(key);
    if (cached && cached.expiresAt > now) return cached.identity;
    this.entries.delete(key);
    const identity = this.review(token).then((reviewed) =>
      // A token that authenticates but names no pod is not a voice agent's (a plain ServiceAccount token).
      reviewed && reviewed.podName ? { podName: reviewed.podName, podUid: reviewed.podUid, username: reviewed.username } : null,
    );
    if (this.ttlMs <= 0) return identity;
    const entry = { expiresAt: now + this.ttlMs, identity };
    this.entries.set(key, entry);
    identity.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    return identity;
  }
}

export interface CallerPolicy {
  dispatcherTokens: readonly DispatcherToken[];
  /** Set when AGENT_TOKEN_AUDIENCE is: bearer tokens that are not static tokens are reviewed. */
  agents: AgentTokenVerifier | null;
  /** ALLOW_UNAUTHENTICATED: serve requests without a credential when no API_TOKENS are configured. */
  allowUnauthenticated: boolean;
}

/** The 503 of an identity that could not be checked (the TokenReview API failed). */
export class IdentityUnavailableError extends ApiError {
  constructor(override readonly cause: unknown) {
    super(503, 'AUTH_UNAVAILABLE', 'caller identity could not be checked, retry shortly');
  }
}

/**
 * Resolves the caller of a request from its Authorization header. Configured
 * credentials are always enforced: with API_TOKENS, or with agent tokens and
 * no ALLOW_UNAUTHENTICATED, a request without a known credential is 401. With
 * nothing configured at all (the app refuses to start so unless
 * ALLOW_UNAUTHENTICATED) every request is served as `open`.
 */
export class CallerAuthenticator {
  private readonly tokens: { digest: Buffer; caller: Caller }[];
  private readonly openWithoutToken: boolean;
  private readonly nothingConfigured: boolean;

  constructor(private readonly policy: CallerPolicy) {
    this.tokens = policy.dispatcherTokens.map((token) => ({ digest: tokenDigest(token.secret), caller: { kind: 'dispatcher', merchants: token.merchants } }));
    this.nothingConfigured = this.tokens.length === 0 && policy.agents === null;
    this.openWithoutToken = this.tokens.length === 0 && (policy.agents === null || policy.allowUnauthenticated);
  }

  /** How the start-up log describes it (counts, never values). */
  describe(): string {
    const scoped = this.policy.dispatcherTokens.filter((token) => token.merchants).length;
    const parts = [`${this.tokens.length} dispatcher tokens (${scoped} merchant-scoped)`];
    if (this.policy.agents) parts.push('voice-agent ServiceAccount tokens (TokenReview)');
    if (this.openWithoutToken) parts.push('OPEN: requests without a token are served');
    return parts.join(', ');
  }

  async authenticate(header: string | undefined): Promise<Caller> {
    if (this.nothingConfigured) return { kind: 'open' };
    const presented = header?.trim() ?? '';
    if (presented === '') {
      if (this.openWithoutToken) return { kind: 'open' };
      throw ApiError.unauthorized();
    }
    const match = /^Bearer\s+(\S+)$/i.exec(presented);
    if (!match) throw ApiError.unauthorized();
    const token = match[1];
    const digest = tokenDigest(token);
    // Compare against every token so timing does not reveal which one matched.
    let found: Caller | null = null;
    for (const candidate of this.tokens) {
      if (timingSafeEqual(candidate.digest, digest) && !found) found = candidate.caller;
    }
    if (found) return found;
    if (!this.policy.agents) throw ApiError.unauthorized();
    let identity: AgentIdentity | null;
    try {
      identity = await this.policy.agents.verify(token);
    } catch (error) {
      throw new IdentityUnavailableError(error);
    }
    if (!identity) throw ApiError.unauthorized();
    return { kind: 'agent', ...identity };
  }
}

function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

const CALLERS = 'smart-router:callers';

type CallerRequest = FastifyRequest & { caller?: Caller };

/** Resolves the caller (401/503) and refuses a kind the route does not admit (403 FORBIDDEN). */
@Injectable()
export class CallerGuard implements CanActivate {
  constructor(private readonly reflector: Reflector, private readonly authenticator: CallerAuthenticator) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const admitted = this.reflector.get<CallerKind[] | undefined>(CALLERS, context.getHandler()) ?? [];
    const request = context.switchToHttp().getRequest<CallerRequest>();
    const caller = await this.authenticator.authenticate(request.headers.authorization);
    const kind: CallerKind = caller.kind === 'agent' ? 'agent' : 'dispatcher';
    if (!admitted.includes(kind)) throw ApiError.forbidden(kind === 'agent' ? 'voice-agent identities may not call this route' : 'dispatcher tokens may not call this route');
    request.caller = caller;
    return true;
  }
}

/** Who may call this route (SPEC 10.1); the handler gets the caller through `@Caller()`. */
export function Callers(...kinds: CallerKind[]): MethodDecorator {
  return applyDecorators(SetMetadata(CALLERS, kinds), UseGuards(CallerGuard));
}

/** The caller CallerGuard resolved for this request. */
export const Caller = createParamDecorator((_data: unknown, context: ExecutionContext): Caller => {
  const caller = context.switchToHttp().getRequest<CallerRequest>().caller;
  if (!caller) throw new Error('@Caller() on a route without @Callers(...)');
  return caller;
});
