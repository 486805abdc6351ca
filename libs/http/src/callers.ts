import { createHash } from 'node:crypto';
import { CanActivate, ExecutionContext, Injectable, SetMetadata, UseGuards, applyDecorators, createParamDecorator } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { CallScope, isMerchantId } from '@smart-router/allocation';
import { ConfigError } from '@smart-router/config';
import { ApiError } from './api-error';
import { SecretTable, bearerToken } from './bearer-auth';

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

/** Longest bearer token sent to a TokenReview; a projected ServiceAccount token is about 1 KiB. */
export const MAX_AGENT_TOKEN_BYTES = 8192;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * Could `token` be a ServiceAccount token (a JWT: three base64url segments,
 * at most MAX_AGENT_TOKEN_BYTES)? Anything else is 401 before the cluster is
 * asked, so garbage tokens cost no TokenReview.
 */
export function isJwtShaped(token: string): boolean {
  return token.length <= MAX_AGENT_TOKEN_BYTES && JWT_SHAPE.test(token);
}

/**
 * Does a JWT-shaped token's payload claim `sub: system:serviceaccount:…` (and, given one, `aud`
 * including `audience`)? Decoded, never verified: only to answer 403 rather than 401 on a route
 * no agent may call, without asking the cluster.
 */
export function claimsServiceAccount(token: string, audience?: string): boolean {
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as { sub?: unknown; aud?: unknown } | null;
    if (typeof claims?.sub !== 'string' || !claims.sub.startsWith('system:serviceaccount:')) return false;
    if (audience === undefined) return true;
    return claims.aud === audience || (Array.isArray(claims.aud) && claims.aud.includes(audience));
  } catch {
    return false;
  }
}

/** Too many TokenReviews in flight: the request is refused (503 AUTH_UNAVAILABLE), the cluster not asked. */
export class ReviewsSaturatedError extends Error {
  constructor(limit: number) {
    super(`${limit} TokenReviews already in flight`);
  }
}

/**
 * What became of a TokenReview the router wanted (smart_router_token_reviews_total{result}):
 * the cluster said yes (`authenticated`) or no (`refused`: unknown token, or bound to no pod);
 * not asked because too many were in flight (`saturated`); or no answer: `timeout` (the
 * request cancelled at its deadline) or `failed` (refused connection, an error status).
 */
export type TokenReviewResult = 'authenticated' | 'refused' | 'saturated' | 'timeout' | 'failed';

/** Why a review gave no answer: saturated, timeout (libs/kube's TokenReviewTimeoutError, by name) or failed. */
export function reviewFailure(error: unknown): Extract<TokenReviewResult, 'saturated' | 'timeout' | 'failed'> {
  if (error instanceof ReviewsSaturatedError) return 'saturated';
  if (error instanceof Error && error.name === 'TokenReviewTimeoutError') return 'timeout';
  return 'failed';
}

const JWT_LIKE = /[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g;

/**
 * The log line's account of a failed review: one line, at most 300 characters, no stack,
 * no token material (anything JWT-shaped is masked; an API error's body could echo a request).
 * For the Kubernetes client's ApiException: its HTTP code and the Status's reason and message.
 */
export function describeReviewFailure(error: unknown): string {
  const kind = reviewFailure(error);
  let text: string;
  const apiError = error as { code?: unknown; body?: unknown } | null;
  if (kind === 'failed' && apiError && typeof apiError.code === 'number') {
    let status: { reason?: unknown; message?: unknown } = {};
    try {
      status = (typeof apiError.body === 'string' ? JSON.parse(apiError.body) : apiError.body) ?? {};
    } catch {
      // not a Status object
    }
    const said = [status.reason, status.message].filter((part) => typeof part === 'string').join(': ');
    text = `TokenReview API answered HTTP ${apiError.code}${said ? ` ${said}` : ''}`;
  } else {
    text = error instanceof Error ? error.message : String(error);
  }
  return `${kind}: ${text.replace(JWT_LIKE, '[token]').replace(/\s+/g, ' ').trim()}`.slice(0, 300);
}

export interface AgentTokenCacheOptions {
  /** How long an accepted review is reused (AGENT_TOKEN_CACHE_SECONDS); 0 = review every request. */
  ttlMs: number;
  /** How long a refusal is reused: short, so a token that becomes valid is not stuck (default min(ttlMs, 5 s)). */
  refusalTtlMs?: number;
  /** Entries kept per cache (accepted, refused), least recently used out first. */
  maxEntries?: number;
  /** Distinct reviews in flight at once; beyond, 503 AUTH_UNAVAILABLE without asking the cluster. */
  maxInFlight?: number;
  /** Told what became of each review the cache wanted (not of answers it reused). */
  onReview?: (result: TokenReviewResult) => void;
  /**
   * Whether an authenticated identity is one of the voice agents (agentNamespacePolicy, the pod
   * record's UID): false = refused like an unauthenticated token (401, cached as a refusal, counted
   * `refused`); a rejection = could not be checked (503, not cached). Asked once per review, its
   * answer cached with the review.
   */
  admit?: (identity: AgentIdentity) => boolean | Promise<boolean>;
  now?: () => number;
}

export const REFUSAL_CACHE_MS = 5000;
export const MAX_REVIEWS_IN_FLIGHT = 32;

/**
 * TokenReview results, keyed by a SHA-256 of the token (never the token):
 * accepted identities reused for at most `ttlMs`, refusals apart and briefly
 * (`refusalTtlMs`), each cache bounded (least recently used out first).
 * Concurrent requests with one token share one review (also with a TTL of 0);
 * at most `maxInFlight` distinct reviews run at once, beyond that the request
 * fails (503), so a flood of tokens cannot flood the Kubernetes API. A failed
 * review is not cached. A token of a deleted pod stops working within `ttlMs`.
 */
export class CachedAgentTokens implements AgentTokenVerifier {
  private readonly accepted = new Map<string, { expiresAt: number; identity: AgentIdentity }>();
  private readonly refused = new Map<string, number>();
  private readonly inFlight = new Map<string, Promise<AgentIdentity | null>>();
  private readonly ttlMs: number;
  private readonly refusalTtlMs: number;
  private readonly maxEntries: number;
  private readonly maxInFlight: number;
  private readonly now: () => number;
  private readonly onReview: (result: TokenReviewResult) => void;
  private readonly admit: (identity: AgentIdentity) => boolean | Promise<boolean>;

  constructor(private readonly review: AgentTokenReview, options: AgentTokenCacheOptions) {
    this.onReview = options.onReview ?? (() => undefined);
    this.admit = options.admit ?? (() => true);
    this.ttlMs = options.ttlMs;
    this.refusalTtlMs = Math.min(options.refusalTtlMs ?? REFUSAL_CACHE_MS, options.ttlMs);
    this.maxEntries = options.maxEntries ?? 10000;
    this.maxInFlight = options.maxInFlight ?? MAX_REVIEWS_IN_FLIGHT;
    this.now = options.now ?? (() => Date.now());
  }

  /** Entries held in both caches. */
  get size(): number {
    return this.accepted.size + this.refused.size;
  }

  verify(token: string): Promise<AgentIdentity | null> {
    const key = createHash('sha256').update(token).digest('base64');
    const now = this.now();
    const hit = this.accepted.get(key);
    if (hit) {
      this.accepted.delete(key);
      if (hit.expiresAt > now) {
        this.accepted.set(key, hit);
        return Promise.resolve(hit.identity);
      }
    }
    const refusedUntil = this.refused.get(key);
    if (refusedUntil !== undefined) {
      this.refused.delete(key);
      if (refusedUntil > now) {
        this.refused.set(key, refusedUntil);
        return Promise.resolve(null);
      }
    }
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    if (this.inFlight.size >= this.maxInFlight) {
      this.onReview('saturated');
      return Promise.reject(new ReviewsSaturatedError(this.maxInFlight));
    }
    const identity = this.review(token).then(async (reviewed) => {
      // A token that authenticates but names no pod is not a voice agent's (a plain ServiceAccount token).
      const named = reviewed && reviewed.podName ? { podName: reviewed.podName, podUid: reviewed.podUid, username: reviewed.username } : null;
      // The review answered; a failing admission check (Redis) rejects: not a refusal, not cached, 503.
      const found = named && (await this.admit(named)) ? named : null;
      const at = this.now();
      if (found && this.ttlMs > 0) remember(this.accepted, key, { expiresAt: at + this.ttlMs, identity: found }, this.maxEntries);
      if (!found && this.refusalTtlMs > 0) remember(this.refused, key, at + this.refusalTtlMs, this.maxEntries);
      this.onReview(found ? 'authenticated' : 'refused');
      return found;
    }, (error: unknown) => {
      // Only the review's own failure: a failing admission check (thrown above) is counted by its owner.
      this.onReview(reviewFailure(error));
      throw error;
    });
    this.inFlight.set(key, identity);
    const settled = () => {
      if (this.inFlight.get(key) === identity) this.inFlight.delete(key);
    };
    identity.then(settled, settled);
    return identity;
  }
}

/** The pod record an agent identity was checked against could not be read (Redis): 503, never read as a refusal. */
export class AgentAdmissionError extends Error {
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
    this.name = 'AgentAdmissionError';
  }
}

/**
 * Which ServiceAccounts are voice agents (AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNTS): a TokenReview
 * authenticates any pod-bound token of the cluster, so a pod named like ours in another namespace,
 * or another workload's ServiceAccount, must not pass for our agent. `serviceAccounts` empty = any
 * ServiceAccount of `namespace`.
 */
export function agentNamespacePolicy(namespace: string, serviceAccounts: readonly string[] = []): (identity: AgentIdentity) => boolean {
  const allowed = new Set(serviceAccounts);
  return (identity) => {
    const parts = identity.username.split(':');
    if (parts.length !== 4 || parts[0] !== 'system' || parts[1] !== 'serviceaccount') return false;
    return parts[2] === namespace && parts[3] !== '' && (allowed.size === 0 || allowed.has(parts[3]));
  };
}

/** Sets `key` as the most recent entry of a bounded map (insertion order = recency), dropping the least recent beyond `max`. */
function remember<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value as string);
}

export interface CallerPolicy {
  dispatcherTokens: readonly DispatcherToken[];
  /** Set when AGENT_TOKEN_AUDIENCE is: bearer tokens that are not static tokens are reviewed. */
  agents: AgentTokenVerifier | null;
  /** ALLOW_UNAUTHENTICATED: serve requests without a credential when no API_TOKENS are configured. */
  allowUnauthenticated: boolean;
  /** AGENT_TOKEN_AUDIENCE: on routes no agent may call, only a token claiming it (unverified) is 403 rather than 401. */
  agentAudience?: string;
}

/**
 * The 503 of an identity that could not be checked (too many reviews in flight, or the
 * TokenReview API failed or timed out). The log line says which (logDetail); the client is
 * told only to retry.
 */
export class IdentityUnavailableError extends ApiError {
  constructor(override readonly cause: unknown) {
    super(503, 'AUTH_UNAVAILABLE', 'caller identity could not be checked, retry shortly');
    this.logDetail = describeReviewFailure(cause);
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
  private readonly tokens: SecretTable<Caller>;
  private readonly openWithoutToken: boolean;
  private readonly nothingConfigured: boolean;

  constructor(private readonly policy: CallerPolicy) {
    this.tokens = new SecretTable(policy.dispatcherTokens.map((token) => ({ secret: token.secret, grant: { kind: 'dispatcher', merchants: token.merchants } as Caller })));
    this.nothingConfigured = this.tokens.size === 0 && policy.agents === null;
    this.openWithoutToken = this.tokens.size === 0 && (policy.agents === null || policy.allowUnauthenticated);
  }

  /** How the start-up log describes it (counts, never values). */
  describe(): string {
    const scoped = this.policy.dispatcherTokens.filter((token) => token.merchants).length;
    const parts = [`${this.tokens.size} dispatcher tokens (${scoped} merchant-scoped)`];
    if (this.policy.agents) parts.push('voice-agent ServiceAccount tokens (TokenReview)');
    if (this.openWithoutToken) parts.push('OPEN: requests without a token are served');
    return parts.join(', ');
  }

  /**
   * `admitted`: the caller kinds the route takes. Without 'agent' a token that is not a static
   * token is 401 at once, never reviewed: an anonymous client cannot spend the cluster's
   * TokenReviews (nor the in-flight bound) on a dispatcher-only route.
   */
  async authenticate(header: string | undefined, admitted: readonly CallerKind[] = ['dispatcher', 'agent']): Promise<Caller> {
    if (this.nothingConfigured) return { kind: 'open' };
    const presented = header?.trim() ?? '';
    if (presented === '') {
      if (this.openWithoutToken) return { kind: 'open' };
      throw ApiError.unauthorized();
    }
    const token = bearerToken(presented);
    if (token === null) throw ApiError.unauthorized();
    const [found] = this.tokens.grants(token);
    if (found) return found;
    // Not a JWT at all: 401 without a TokenReview (a flood of garbage never reaches the cluster).
    if (!this.policy.agents || !isJwtShaped(token)) throw ApiError.unauthorized();
    if (!admitted.includes('agent')) {
      // Never reviewed here. A token that SAYS it is a ServiceAccount's for our audience (unverified
      // `sub`, `aud`) gets the answer an agent gets on this route, 403 FORBIDDEN; anything else 401.
      // Neither grants anything.
      if (claimsServiceAccount(token, this.policy.agentAudience)) throw ApiError.forbidden('voice-agent identities may not call this route');
      throw ApiError.unauthorized();
    }
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

const CALLERS = 'smart-router:callers';

type CallerRequest = FastifyRequest & { caller?: Caller };

/** Resolves the caller (401/503) and refuses a kind the route does not admit (403 FORBIDDEN). */
@Injectable()
export class CallerGuard implements CanActivate {
  constructor(private readonly reflector: Reflector, private readonly authenticator: CallerAuthenticator) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const admitted = this.reflector.get<CallerKind[] | undefined>(CALLERS, context.getHandler()) ?? [];
    const request = context.switchToHttp().getRequest<CallerRequest>();
    const caller = await this.authenticator.authenticate(request.headers.authorization, admitted);
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
