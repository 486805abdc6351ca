import { createServer, IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { RawData, WebSocket, WebSocketServer } from 'ws';
import type Redis from 'ioredis';
import { WS_PATH } from '@smart-router/allocation';
import { SmartRouterClient } from '@smart-router/client';
import { answerClientError, guardServer, guardSocket, rawErrorResponse } from '@smart-router/http';
import type { RedisKeys } from '@smart-router/redis-keys';

/** Who holds a call, read from its call record (what a real voice agent knows from its own assignment). */
export function callOwnerInRedis(redis: Redis, keys: RedisKeys): (callSid: string) => Promise<string | null> {
  return async (callSid) => redis.hget(keys.call(callSid), 'pod_name');
}

export interface VoiceAgentsOptions {
  host: string;
  port: number;
  /** Base URL of the allocation API (release is called there, as the real agent does). */
  allocationApiUrl: string;
  /** Who is this call allocated to? (the real agent knows its own assignment). */
  podOfCall(callSid: string): Promise<string | null>;
  /** Is a pod of that name running? */
  podExists(podName: string): boolean;
  /** How long a closed call's release is retried (default RELEASE_RETRY). */
  releaseRetry?: Partial<ReleaseRetry>;
  /**
   * The pod's own bearer token (its projected ServiceAccount token, SPEC
   * 10.1), sent on connected and release; absent = no Authorization header.
   * Null = the pod is gone; a rejection = the API did not answer (retried like a 5xx).
   */
  agentToken?(podName: string): Promise<string | null>;
}

export interface ReleaseRetry {
  firstDelayMs: number;
  maxDelayMs: number;
  /** Give up after this long; the stale-call reaper (MAX_CALL_DURATION_SECONDS) frees what is left. */
  giveUpAfterMs: number;
}

/**
 * A voice agent whose call ended keeps running, so it keeps trying to hand the
 * pod back through an allocation-api outage (a crash, a rollout, Redis down):
 * exponential backoff from 0.25 s, doubling to 5 s, for up to 10 minutes. It
 * stops earlier when the call is no longer this pod's (a status callback, the
 * reaper or a pod replacement freed it). The soak that prompted this (issue 14)
 * saw calls stay allocated after an outage of a few seconds with 3 s of retries.
 */
export const RELEASE_RETRY: ReleaseRetry = { firstDelayMs: 250, maxDelayMs: 5000, giveUpAfterMs: 10 * 60 * 1000 };

/** Release answers that end the retries: done (200), already released (404), conflict (409). */
const RELEASE_SETTLED = new Set([200, 404, 409]);


/** Which provider's stream a socket carries, learnt from its `start` message (null: a plain socket). */
interface ProviderStream {
  provider: 'twilio' | 'plivo' | null;
  streamId: string;
}

/** The providers' stream messages other than media: nothing to answer. */
const PROVIDER_CONTROL_EVENTS = new Set(['connected', 'start', 'stop', 'mark', 'dtmf', 'playedStream', 'clearedAudio']);

interface StreamMessage {
  event?: unknown;
  streamSid?: unknown;
  start?: { streamId?: unknown };
  media?: { payload?: unknown };
}

function parseStreamMessage(text: string): StreamMessage | null {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as StreamMessage) : null;
  } catch {
    return null;
  }
}

/**
 * The agent's side of a provider's media stream (SPEC 11): a Twilio or Plivo
 * `start` tells which; each inbound `media` frame is answered with one frame
 * of outbound audio in that provider's shape (Twilio `media` with the
 * streamSid, Plivo `playAudio`); `connected`, `mark`, `stop`, `dtmf` need no
 * answer. Anything else on a socket that sent no provider `start` is echoed.
 */
function answerMessage(ws: WebSocket, stream: ProviderStream, data: RawData, isBinary: boolean): void {
  const message = isBinary ? null : parseStreamMessage(String(data));
  if (message?.event === 'start') {
    if (typeof message.streamSid === 'string') Object.assign(stream, { provider: 'twilio', streamId: message.streamSid });
    else if (typeof message.start?.streamId === 'string') Object.assign(stream, { provider: 'plivo', streamId: message.start.streamId });
  }
  if (message && typeof message.event === 'string' && PROVIDER_CONTROL_EVENTS.has(message.event)) return;
  if (stream.provider === null || !message) {
    ws.send(data, { binary: isBinary });
    return;
  }
  if (message.event !== 'media') return;
  const payload = typeof message.media?.payload === 'string' ? message.media.payload : '';
  if (stream.provider === 'twilio') ws.send(JSON.stringify({ event: 'media', streamSid: stream.streamId, media: { payload } }));
  else ws.send(JSON.stringify({ event: 'playAudio', media: { contentType: 'audio/x-mulaw', sampleRate: 8000, payload } }));
}

/**
 * Stands in for the voice-agent pods' WebSocket endpoint: accepts
 * `/ws/pod/{pod}/{call_sid}`, or its signed form (SPEC 10.1:
 * `/{allocation_id}/{expiry}/{signature}` after it; the edge checked the
 * signature, so the agent does not), only for a call allocated to that pod, and
 * reports the call connected when the socket opens (SPEC 9.2, so the connect
 * deadline keeps it) and releases it through the API when the socket closes
 * (the real voice agent's `finally` block).
 */
export class SimulatedVoiceAgents {
  private server: Server | null = null;
  private readonly wss = new WebSocketServer({ noServer: true });
  readonly open = new Map<string, WebSocket>();
  /** Upgrade requests that reached the agents at all, accepted or not (what the edge let through). */
  upgrades = 0;
  releases = 0;
  connects = 0;
  /** Release attempts that failed (refused, 5xx) and were retried. */
  releaseRetries = 0;
  /** Releases given up: the call was freed by someone else, or the retry window ended. */
  releasesAbandoned = 0;
  private readonly retry: ReleaseRetry;
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private stopped = false;

  private readonly client: SmartRouterClient;

  constructor(private readonly options: VoiceAgentsOptions) {
    this.client = new SmartRouterClient(options.allocationApiUrl, { timeoutMs: 5000 });
    this.retry = { ...RELEASE_RETRY, ...options.releaseRetry };
  }

  async start(): Promise<number> {
    const server = createServer((_request, response) => {
      response.writeHead(426, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'websocket upgrade required', code: 'UPGRADE_REQUIRED' }));
    });
    server.on('upgrade', (request, socket, head) => void this.onUpgrade(request, socket, head));
    server.on('clientError', answerClientError);
    guardServer(server);
    this.server = server;
    await new Promise<void>((resolve) => server.listen(this.options.port, this.options.host, resolve));
    const address = server.address();
    return typeof address === 'object' && address ? address.port : this.options.port;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.retryTimers) clearTimeout(timer);
    for (const socket of this.open.values()) socket.terminate();
    const server = this.server;
    this.server = null;
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  private refuse(socket: Duplex, status: number, code: string, message: string): void {
    socket.end(rawErrorResponse({ status, code, message }));
  }

  private async onUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // Nobody else listens for this socket's errors from here on, and the caller may reset it while we look the call up (SPEC 10.2).
    guardSocket(socket);
    this.upgrades += 1;
    const match = WS_PATH.exec(new URL(request.url ?? '/', 'http://agents').pathname);
    if (!match) return this.refuse(socket, 404, 'NOT_FOUND', 'route not found');
    const [, pod, , callSid] = match;
    if (!this.options.podExists(pod)) return this.refuse(socket, 404, 'POD_NOT_FOUND', 'pod not found');
    let owner: string | null;
    try {
      owner = await this.options.podOfCall(callSid);
    } catch {
      return this.refuse(socket, 503, 'SERVICE_UNAVAILABLE', 'call lookup failed, retry shortly');
    }
    if (owner !== pod) return this.refuse(socket, 403, 'CALL_NOT_ON_POD', 'call is not allocated to this pod');
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      const key = `${pod}/${callSid}`;
      this.open.set(key, ws);
      ws.send(JSON.stringify({ event: 'connected', pod, call_sid: callSid }));
      void this.reportConnected(pod, callSid);
      // A frame no WebSocket may send (unmasked, reserved bits) is an 'error' here: drop that client, not the process.
      ws.on('error', () => ws.terminate());
      const stream: ProviderStream = { provider: null, streamId: '' };
      ws.on('message', (data, isBinary) => answerMessage(ws, stream, data, isBinary));
      ws.on('close', () => {
        this.open.delete(key);
        void this.release(pod, callSid);
      });
    });
  }

  /** `POST /api/v1/connected`; 404 means the call already ended (nothing to keep). */
  private async reportConnected(pod: string, callSid: string): Promise<void> {
    // A lost report costs the call at the connect deadline: retry a refused connection or a 5xx briefly.
    for (let attempt = 1; attempt <= 5 && !this.stopped; attempt += 1) {
      const status = await this.asPod(pod).then((headers) => this.client.connected({ call_sid: callSid }, headers)).then((answer) => answer.status, () => 0);
      if (status === 200 || status === 404) {
        this.connects += 1;
        return;
      }
      if (status !== 0 && status < 500) return;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }

  /**
   * The real agent's `finally` block: release, and retry a refused connection
   * or a 5xx (RELEASE_RETRY) until it is settled or the call is no longer ours.
   */
  private async release(pod: string, callSid: string): Promise<void> {
    const deadline = Date.now() + this.retry.giveUpAfterMs;
    for (let delay = this.retry.firstDelayMs; !this.stopped; delay = Math.min(delay * 2, this.retry.maxDelayMs)) {
      const status = await this.asPod(pod).then((headers) => this.client.release({ call_sid: callSid, reason: 'websocket_closed' }, headers)).then((answer) => answer.status, () => 0);
      if (RELEASE_SETTLED.has(status)) {
        this.releases += 1;
        return;
      }
      // Another 4xx will not change by asking again (bad id, missing token).
      if (status !== 0 && status !== 408 && status !== 429 && status < 500) return;
      if (Date.now() + delay > deadline || !(await this.stillOurs(pod, callSid))) {
        this.releasesAbandoned += 1;
        return;
      }
      this.releaseRetries += 1;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.retryTimers.delete(timer);
          resolve();
        }, delay);
        this.retryTimers.add(timer);
      });
    }
  }

  /** The pod's Authorization header (none without agentToken, or once the pod is gone). */
  private async asPod(pod: string): Promise<Record<string, string>> {
    const token = this.options.agentToken ? await this.options.agentToken(pod) : null;
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  /** Is the call still allocated to this pod? Unknown (Redis down) counts as yes: keep trying. */
  private async stillOurs(pod: string, callSid: string): Promise<boolean> {
    try {
      return (await this.options.podOfCall(callSid)) === pod;
    } catch {
      return true;
    }
  }
}
