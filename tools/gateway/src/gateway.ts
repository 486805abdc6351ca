import { Agent, ClientRequest, createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { Duplex, PassThrough } from 'node:stream';
import httpProxy from 'http-proxy';
import { answerClientError, answerForStatus, guardServer, guardSocket, HOST_REQUIRED, lacksRequiredHost, rawErrorResponse } from '@smart-router/http';
import { DEFAULT_EDGE_LIMITS, EdgeLimits, MediaSocketBudget, RATE_LIMITED, RateLimiter } from './edge-limits';
import { Upstreams, route } from './routes';

export type UpstreamPools = { [name in keyof Upstreams]: string | string[] };

export interface GatewayOptions {
  host: string;
  port: number;
  upstreams: UpstreamPools;
  /** SPEC 10.2 edge limits (default DEFAULT_EDGE_LIMITS; `readEdgeLimits` parses them from EDGE_* variables). */
  limits?: EdgeLimits;
  /**
   * SPEC 10.1: ask allocation-api (`GET /internal/media-auth`, the original URI
   * in X-Original-URI, as nginx's `auth_request` does) before a media WebSocket
   * upgrade reaches its pod. On when the stack runs with MEDIA_URL_SECRET.
   */
  mediaAuth?: boolean;
}

/** The edge's refusal of a media upgrade: the same JSON as nginx's own 403 page. */
const MEDIA_REFUSED = answerForStatus(403);
/** The check could not be answered (allocation-api or its Redis down): refused too, fail closed. */
const MEDIA_CHECK_UNAVAILABLE = answerForStatus(503);
/** How long the media check may take before the upgrade is refused. */
const MEDIA_CHECK_TIMEOUT_MS = 3000;

/** Request bodies are buffered (so a failed connect can be retried elsewhere) up to this size. */
const MAX_BUFFERED_BODY = 64 * 1024;
/** Errors that mean the upstream never processed the request, or is going away. */
const RETRYABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE']);

/** Headers a client could send to pose as someone else; the gateway replaces them with what it saw, as nginx does. */
const FORWARDED_HEADERS = ['forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip'];

function forwardedHeaders(request: IncomingMessage): Record<string, string> {
  const address = request.socket.remoteAddress ?? '';
  return { 'x-forwarded-for': address, 'x-real-ip': address, 'x-forwarded-proto': 'http', 'x-forwarded-host': request.headers.host ?? '' };
}

/** Overwrites the client's forwarded headers on an outgoing proxy request (HTTP and WebSocket alike). */
function setForwardedHeaders(proxyRequest: ClientRequest, request: IncomingMessage): void {
  for (const name of FORWARDED_HEADERS) proxyRequest.removeHeader(name);
  for (const [name, value] of Object.entries(forwardedHeaders(request))) proxyRequest.setHeader(name, value);
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

/**
 * The local stack's stand-in for the nginx router: HTTP and WebSocket
 * upgrades proxied by path. X-Forwarded-* headers carry the URL the provider
 * called, which Twilio signature checks need; like nginx, the gateway writes
 * them from what it saw and never passes on a client's own (SPEC 10.1).
 *
 * The SPEC 10.2 edge limits, as in nginx: a token bucket per client address
 * on every routed request and upgrade (429 RATE_LIMITED), and open media
 * sockets capped per address and in all, so sockets held for whole calls
 * can never take the room webhooks need.
 *
 * Each upstream may be a pool of instances, taken round-robin. A request whose
 * connection fails (refused or reset: the instance is restarting) is retried
 * on the next instance, like nginx's `proxy_next_upstream error
 * non_idempotent`. That is safe here because every routed POST is idempotent
 * by call id: allocate returns the same pod, a repeated release answers 404,
 * which voice agents treat as success.
 */
export class Gateway {
  // No keep-alive to upstreams: a restarting instance must never get a request on a half-closed socket.
  private readonly proxy = httpProxy.createProxyServer({ xfwd: false, ws: true, proxyTimeout: 30000, agent: new Agent({ keepAlive: false }) });
  private server: Server | null = null;
  private readonly pools: { [name in keyof Upstreams]: string[] };
  private turn = 0;
  readonly limits: EdgeLimits;
  private readonly rate: RateLimiter;
  readonly mediaSockets: MediaSocketBudget;

  constructor(private readonly options: GatewayOptions) {
    this.pools = Object.fromEntries(Object.entries(options.upstreams).map(([name, targets]) => [name, [targets].flat()])) as { [name in keyof Upstreams]: string[] };
    this.limits = { ...DEFAULT_EDGE_LIMITS, ...options.limits };
    this.rate = new RateLimiter(this.limits.ratePerSecond, this.limits.rateBurst);
    this.mediaSockets = new MediaSocketBudget(this.limits);
    this.proxy.on('proxyReq', (proxyRequest, request) => setForwardedHeaders(proxyRequest, request));
    // SPEC 10.2: no socket of ours may end the process with an unhandled 'error' (libs/http socket-guard.ts).
    // The upstream side of a proxied upgrade: http-proxy listens on it only once the pod answers 101.
    this.proxy.on('proxyReqWs', (proxyRequest, request, socket) => {
      setForwardedHeaders(proxyRequest, request);
      guardSocket(socket);
      proxyRequest.on('socket', guardSocket);
    });
    // A client gone while its request was proxied: nothing to answer, drop what is left of it.
    this.proxy.on('econnreset', (_error, _request, response) => response.destroy());
    // Every proxy call passes its own callback; this only keeps a stray one from throwing.
    this.proxy.on('error', (_error, _request, target) => target.destroy());
  }

  /** Replaces an upstream's instances (scale out, rolling restart). */
  setUpstream(name: keyof Upstreams, targets: string[]): void {
    this.pools[name] = [...targets];
  }

  upstream(name: keyof Upstreams): string[] {
    return [...this.pools[name]];
  }

  async start(): Promise<number> {
    const server = createServer({ requireHostHeader: false }, (request, response) => this.onRequest(request, response));
    server.on('upgrade', (request, socket, head) => this.onUpgrade(request, socket, head));
    // An oversized request line or headers, or a malformed request: JSON like every other error.
    server.on('clientError', answerClientError);
    guardServer(server);
    this.server = server;
    await new Promise<void>((resolve) => server.listen(this.options.port, this.options.host, resolve));
    const address = server.address();
    return typeof address === 'object' && address ? address.port : this.options.port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.proxy.close();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  private onRequest(request: IncomingMessage, response: ServerResponse): void {
    if (lacksRequiredHost(request)) return sendJson(response, HOST_REQUIRED.status, { error: HOST_REQUIRED.message, code: HOST_REQUIRED.code });
    const pathname = new URL(request.url ?? '/', 'http://gateway').pathname;
    const decision = route(pathname);
    if ('status' in decision) return sendJson(response, decision.status, decision.body);
    // Only routed requests count, as in nginx, whose `return` locations answer before limit_req runs.
    if (!this.rate.admit(request.socket.remoteAddress ?? '')) return sendJson(response, RATE_LIMITED.status, { error: RATE_LIMITED.message, code: RATE_LIMITED.code });
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BUFFERED_BODY) tooLarge = true;
      else chunks.push(chunk);
    });
    request.on('end', () => {
      if (tooLarge) return sendJson(response, 413, { error: 'request body too large', code: 'PAYLOAD_TOO_LARGE' });
      this.forward(request, response, this.pools[decision.upstream], Buffer.concat(chunks), this.turn++, 0);
    });
  }

  /** Tries `targets` round-robin from `first`, moving on after a connection failure. */
  private forward(request: IncomingMessage, response: ServerResponse, targets: string[], body: Buffer, first: number, attempt: number): void {
    if (targets.length === 0) return sendJson(response, 502, { error: 'upstream unavailable', code: 'BAD_GATEWAY' });
    const target = targets[(first + attempt) % targets.length];
    const buffer = new PassThrough();
    buffer.end(body);
    this.proxy.web(request, response, { target, buffer }, (error: NodeJS.ErrnoException) => {
      // Retry across the pool (and once more on the same instance when it is alone) before giving up.
      if (!response.headersSent && RETRYABLE.has(error.code ?? '') && attempt < Math.max(targets.length, 2) * 2) {
        setTimeout(() => this.forward(request, response, targets, body, first, attempt + 1), attempt === 0 ? 0 : 50 * attempt);
        return;
      }
      if (!response.headersSent) sendJson(response, 502, { error: 'upstream unavailable', code: 'BAD_GATEWAY' });
      else response.end();
    });
  }

  private onUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    // Node stops listening for this socket's errors here, and a refusal below may meet a reset.
    guardSocket(socket);
    const pathname = new URL(request.url ?? '/', 'http://gateway').pathname;
    const decision = route(pathname);
    if ('status' in decision || decision.upstream !== 'voiceAgents') {
      socket.end(rawErrorResponse({ status: 404, code: 'NOT_FOUND', message: 'route not found' }));
      return;
    }
    const address = request.socket.remoteAddress ?? '';
    // SPEC 10.2 then 10.1: the address's request rate, the media URL's signature, then a place in the socket budget.
    if (!this.rate.admit(address)) {
      socket.end(rawErrorResponse(RATE_LIMITED));
      return;
    }
    if (!this.options.mediaAuth) return this.proxyMedia(request, socket, head, address);
    void this.mediaCheck(request.url ?? '/').then((status) => {
      if (socket.destroyed) return;
      if (status === 204) return this.proxyMedia(request, socket, head, address);
      // nginx's auth_request: 403 denies, anything else is an error (allocation-api answers only 204, 403 or 503); both refuse.
      socket.end(rawErrorResponse(status === 403 ? MEDIA_REFUSED : MEDIA_CHECK_UNAVAILABLE));
    }).catch(() => socket.destroy()); // a socket reset between the check and the proxy never becomes an unhandled rejection
  }

  /** Proxies an admitted media upgrade to the voice agents while it holds a place in the socket budget. */
  private proxyMedia(request: IncomingMessage, socket: Duplex, head: Buffer, address: string): void {
    const release = this.mediaSockets.open(address);
    if (!release) {
      socket.end(rawErrorResponse(RATE_LIMITED));
      return;
    }
    socket.once('close', release);
    this.proxy.ws(request, socket, head, { target: this.pools.voiceAgents[0] }, () => socket.destroy());
  }

  /**
   * allocation-api's answer for a media URL: 204 may pass, anything else
   * refuses. Tries each instance once on a connection failure (a restarting
   * replica), like nginx's proxy_next_upstream; 0 when none answered.
   */
  private async mediaCheck(uri: string): Promise<number> {
    const targets = this.pools.allocationApi;
    const first = this.turn++;
    for (let attempt = 0; attempt < targets.length; attempt += 1) {
      const target = targets[(first + attempt) % targets.length];
      try {
        const response = await fetch(`${target.replace(/\/+$/, '')}/internal/media-auth`, {
          headers: { 'x-original-uri': uri },
          signal: AbortSignal.timeout(MEDIA_CHECK_TIMEOUT_MS),
        });
        await response.body?.cancel();
        return response.status;
      } catch {
        // Refused, reset or timed out: the next instance, then refuse.
      }
    }
    return 0;
  }
}
