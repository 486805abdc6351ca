import { AuthenticationV1Api, KubeConfig, Observable, type ObservableMiddleware } from '@kubernetes/client-node';

/** The extra field a bound ServiceAccount token of a pod carries in its TokenReview. */
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';

export interface ReviewedToken {
  username: string;
  /** The pod the token is bound to; null for a token not bound to a pod. */
  podName: string | null;
  podUid: string | null;
}

export class TokenReviewTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`TokenReview did not answer within ${timeoutMs} ms`);
    // The caller (libs/http, which does not depend on this library) tells a timeout by this name.
    this.name = 'TokenReviewTimeoutError';
  }
}

/**
 * Asks the Kubernetes API who a bearer token belongs to (TokenReview,
 * authentication.k8s.io/v1), for one audience: a token minted for another
 * audience is not authenticated. Needs `create tokenreviews`
 * (ClusterRole system:auth-delegator). Resolves null when the token is not
 * authenticated; rejects when the API did not answer (the caller fails closed).
 */
export class TokenReviewRepository {
  private readonly api: AuthenticationV1Api;

  constructor(config: KubeConfig, private readonly audience: string, private readonly timeoutMs = 3000) {
    this.api = config.makeApiClient(AuthenticationV1Api);
  }

  async review(token: string): Promise<ReviewedToken | null> {
    // The request itself is cancelled at the deadline (its socket closed), not merely
    // abandoned: the promise settles only once the HTTP request has, so a caller that
    // bounds reviews in flight (CachedAgentTokens) bounds requests at the API server too.
    const signal = AbortSignal.timeout(this.timeoutMs);
    const withSignal: ObservableMiddleware = {
      pre: (context) => {
        context.setSignal(signal);
        return new Observable(Promise.resolve(context));
      },
      post: (context) => new Observable(Promise.resolve(context)),
    };
    let review;
    try {
      review = await this.api.createTokenReview(
        { body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.audience] } } },
        { middleware: [withSignal], middlewareMergeStrategy: 'append' },
      );
    } catch (error) {
      if (signal.aborted) throw new TokenReviewTimeoutError(this.timeoutMs);
      throw error;
    }
    const status = review.status;
    if (!status?.authenticated || !status.user?.username) return null;
    // The API server answers only for the audiences asked; refuse anything else all the same.
    if (status.audiences && !status.audiences.includes(this.audience)) return null;
    const extra = status.user.extra ?? {};
    return { username: status.user.username, podName: extra[POD_NAME_EXTRA]?.[0] ?? null, podUid: extra[POD_UID_EXTRA]?.[0] ?? null };
  }
}
