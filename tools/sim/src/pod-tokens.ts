/** The audience the router accepts voice-agent tokens for (AGENT_TOKEN_AUDIENCE under `npm start`, compose and k8s). */
export const AGENT_TOKEN_AUDIENCE = 'smart-router';

export interface PodTokenSourceOptions {
  /** The simulated Kubernetes API (http://127.0.0.1:8001). */
  apiUrl: string;
  namespace: string;
  /** The voice agents' ServiceAccount. */
  serviceAccount: string;
  audience?: string;
  /** Requested lifetime; a token is renewed once less than a fifth of it is left. */
  expirationSeconds?: number;
  timeoutMs?: number;
}

interface Held {
  uid: string;
  token: string;
  renewAt: number;
}

/**
 * The projected ServiceAccount token each simulated pod would find mounted
 * (SPEC 10.1): one TokenRequest per pod incarnation, through the simulated
 * API's REST endpoints as a kubelet would ask. A pod recreated under the same
 * name has a new UID and gets a new token; the old one no longer reviews.
 */
export class PodTokenSource {
  private readonly held = new Map<string, Held>();
  private readonly audience: string;
  private readonly expirationSeconds: number;

  constructor(private readonly options: PodTokenSourceOptions) {
    this.audience = options.audience ?? AGENT_TOKEN_AUDIENCE;
    this.expirationSeconds = options.expirationSeconds ?? 3600;
  }

  /** The pod's current token, or null when the pod does not exist. Rejects when the API does not answer. */
  async tokenFor(pod: string): Promise<string | null> {
    const uid = await this.podUid(pod);
    if (!uid) {
      this.held.delete(pod);
      return null;
    }
    const held = this.held.get(pod);
    if (held && held.uid === uid && held.renewAt > Date.now()) return held.token;
    const answer = await this.request('POST', `/api/v1/namespaces/${this.options.namespace}/serviceaccounts/${this.options.serviceAccount}/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { audiences: [this.audience], expirationSeconds: this.expirationSeconds, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod, uid } },
    });
    if (answer.status === 404 || answer.status === 409) return null; // the pod went (or came back) meanwhile
    const token = (answer.body as { status?: { token?: string } }).status?.token;
    if (answer.status !== 201 || !token) throw new Error(`TokenRequest for ${pod} answered ${answer.status}`);
    this.held.set(pod, { uid, token, renewAt: Date.now() + this.expirationSeconds * 800 });
    return token;
  }

  private async podUid(pod: string): Promise<string | null> {
    const answer = await this.request('GET', `/api/v1/namespaces/${this.options.namespace}/pods/${encodeURIComponent(pod)}`);
    if (answer.status === 404) return null;
    if (answer.status !== 200) throw new Error(`GET pod ${pod} answered ${answer.status}`);
    return (answer.body as { metadata?: { uid?: string } }).metadata?.uid ?? null;
  }

  private async request(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const response = await fetch(this.options.apiUrl + path, {
      method,
      headers: { accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 5000),
    });
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
    return { status: response.status, body: parsed };
  }
}
