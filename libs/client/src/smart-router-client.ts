import { AllocateRequest, AllocateResponse, ConnectedRequest, ConnectedResponse, ErrorBody, HeartbeatRequest, HeartbeatResponse, ReleaseRequest, ReleaseResponse, allocationRoutes } from '@smart-router/api-contract';

/** An answer: the success body on 200, the error body (`{error, code}`) otherwise. */
export type Answer<T> = { ok: true; status: 200; body: T } | { ok: false; status: number; body: ErrorBody };

export interface ClientOptions {
  /** Bearer token (API_TOKENS). */
  token?: string;
  /** Extra headers on every request (e.g. `traceparent`). */
  headers?: Record<string, string>;
  /** Abandon a request after this long (the promise rejects). */
  timeoutMs?: number;
}

/**
 * Typed client of the allocation API, typed by the same route contracts the
 * server validates and serializes with (@smart-router/api-contract). Used by
 * the simulated voice agents, the benchmark and the end-to-end tests.
 */
export class SmartRouterClient {
  readonly paths = { allocate: allocationRoutes.allocate.path, release: allocationRoutes.release.path, connected: allocationRoutes.connected.path, heartbeat: allocationRoutes.heartbeat.path } as const;
  /** Request bodies as sent (load generators send them themselves). */
  readonly encode = {
    allocate: (body: AllocateRequest): string => JSON.stringify(body),
    release: (body: ReleaseRequest): string => JSON.stringify(body),
  };

  constructor(readonly baseUrl: string, private readonly options: ClientOptions = {}) {}

  allocate(body: AllocateRequest, headers: Record<string, string> = {}): Promise<Answer<AllocateResponse>> {
    return this.post(this.paths.allocate, this.encode.allocate(body), headers);
  }

  release(body: ReleaseRequest, headers: Record<string, string> = {}): Promise<Answer<ReleaseResponse>> {
    return this.post(this.paths.release, this.encode.release(body), headers);
  }

  /** The call's media stream reached its voice agent (SPEC 9.2). */
  connected(body: ConnectedRequest, headers: Record<string, string> = {}): Promise<Answer<ConnectedResponse>> {
    return this.post(this.paths.connected, JSON.stringify(body), headers);
  }

  /** A voice agent is alive, with its calls' media counters (SPEC 11). */
  heartbeat(body: HeartbeatRequest, headers: Record<string, string> = {}): Promise<Answer<HeartbeatResponse>> {
    return this.post(this.paths.heartbeat, JSON.stringify(body), headers);
  }

  private async post<T>(path: string, body: string, headers: Record<string, string>): Promise<Answer<T>> {
    const response = await fetch(this.baseUrl + path, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.options.token ? { authorization: `Bearer ${this.options.token}` } : {}),
        ...this.options.headers,
        ...headers,
      },
      body,
      ...(this.options.timeoutMs ? { signal: AbortSignal.timeout(this.options.timeoutMs) } : {}),
    });
    const text = await response.text();
    let parsed: T & ErrorBody;
    try {
      parsed = JSON.parse(text) as T & ErrorBody;
    } catch {
      // Not ours (a proxy's error page): still an answer with a status.
      parsed = { error: text.slice(0, 200), code: 'NOT_JSON' } as T & ErrorBody;
    }
    return response.status === 200 ? { ok: true, status: 200, body: parsed } : { ok: false, status: response.status, body: parsed };
  }
}
