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
  /**
   * SPEC 11: every pod's agent posts `POST /api/v1/heartbeat` this often (ms)
   * with its calls' frame counters; 0 or absent = no heartbeats (the pods are
   * never enrolled, so the router never judges their liveness).
   */
  heartbeatIntervalMs?: number;
  /** The running pods to heartbeat for (required with heartbeatIntervalMs). */
  pods?(): string[];
  /** The pod's UID now (undefined = gone): a crashed agent comes back with its pod's new incarnation. */
  podUid?(podName: string): string | undefined;
}

/** One open media socket's frame counters (what a real agent's main loop bumps). */
interface MediaSocket {
  ws: WebSocket;
  pod: string;
  callSid: string;
  allocationId: number | null;
  framesIn: number;
  framesOut: number;
}

/** What `POST /sim/agents/{pod}/{action}` may do to a pod's agent (SPEC 11). */
export type AgentFault = 'freeze' | 'thaw' | 'crash';

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
  /** SPEC 11: the pod a re-homed call streamed from (Twilio customParameters, Plivo extra_headers); '' = none. */
  rehomeFrom: string;
}

/** A re-homed call as the agent that received it learnt it (SPEC 11 `rehome_from`). */
export interface RehomedCall {
  pod: string;
  call_sid: string;
  rehome_from: string;
  at: number;
}

/** Most re-homed calls remembered (the newest kept): the sim is also a load generator. */
const REHOMED_KEPT = 1000;

/** The providers' stream messages other than media: nothing to answer. */
const PROVIDER_CONTROL_EVENTS = new Set(['connected', 'start', 'stop', 'mark', 'dtmf', 'playedStream', 'clearedAudio']);

interface StreamMessage {
  event?: unknown;
  streamSid?: unknown;
  start?: { streamId?: unknown; customParameters?: Record<string, unknown> };
  extra_headers?: unknown;
  media?: { payload?: unknown };
}

/** `rehome_from` of a `start` message: Twilio's `<Parameter>`, or Plivo's `extraHeaders` (`a=b;c=d`). */
function rehomeFromOf(message: StreamMessage): string {
  const parameter = message.start?.customParameters?.rehome_from;
  if (typeof parameter === 'string') return parameter;
  if (typeof message.extra_headers !== 'string') return '';
  for (const pair of message.extra_headers.split(/[;,]/)) {
    const [name, value] = pair.split('=', 2).map((part) => part.trim());
    if (name === 'rehome_from' && value) return value;
  }
  return '';
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
 * True when it sent a frame (the outbound media counter).
 */
function answerMessage(ws: WebSocket, stream: ProviderStream, data: RawData, isBinary: boolean): boolean {
  const message = isBinary ? null : parseStreamMessage(String(data));
  if (message?.event === 'start') {
    if (typeof message.streamSid === 'string') Object.assign(stream, { provider: 'twilio', streamId: message.streamSid });
    else if (typeof message.start?.streamId === 'string') Object.assign(stream, { provider: 'plivo', streamId: message.start.streamId });
    stream.rehomeFrom = rehomeFromOf(message);
  }
  if (message && typeof message.event === 'string' && PROVIDER_CONTROL_EVENTS.has(message.event)) return false;
  if (stream.provider === null || !message) {
    ws.send(data, { binary: isBinary });
    return true;
  }
  if (message.event !== 'media') return false;
  const payload = typeof message.media?.payload === 'string' ? message.media.payload : '';
  if (stream.provider === 'twilio') ws.send(JSON.stringify({ event: 'media', streamSid: stream.streamId, media: { payload } }));
  else ws.send(JSON.stringify({ event: 'playAudio', media: { contentType: 'audio/x-mulaw', sampleRate: 8000, payload } }));
  return true;
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
  private readonly media = new Map<string, MediaSocket>();
  /** Frozen agents (SPEC 11): the loop answers nothing; each entry resolves its waiters at thaw. */
  private readonly frozen = new Map<string, { thawed: Promise<void>; thaw: () => void }>();
  /** Crashed agents: the UID of the incarnation that crashed; a new UID (pod recreated) runs a fresh agent. */
  private readonly crashed = new Map<string, string | undefined>();
  private heartbeatTimer: NodeJS.Timeout | null = null;
  heartbeats = 0;
  heartbeatFailures = 0;
  /** Upgrade requests that reached the agents at all, accepted or not (what the edge let through). */
  upgrades = 0;
  releases = 0;
  connects = 0;
  /** Calls that arrived re-homed from another pod (SPEC 11), newest last; `GET /sim/agents/rehomed`. */
  readonly rehomed: RehomedCall[] = [];
  rehomedCount = 0;
  /** Late releases refused as stale (409: the call moved on under a new allocation_id). */
  staleReleases = 0;
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
    if ((this.options.heartbeatIntervalMs ?? 0) > 0) this.scheduleHeartbeats();
    return typeof address === 'object' && address ? address.port : this.options.port;
  }

  /**
   * Freeze: the pod's agent answers nothing (no heartbeat, no echo, no
   * connected/release until thawed; sockets stay open). Thaw: it resumes, and
   * whatever it held back (a release of a call that closed meanwhile) goes out
   * late. Crash: its sockets are destroyed, nothing is released, and it stays
   * silent until its pod is recreated (new UID) or it is thawed.
   */
  fault(pod: string, action: AgentFault): { pod: string; state: 'frozen' | 'running' | 'crashed'; sockets: number } {
    const sockets = [...this.media.values()].filter((socket) => socket.pod === pod);
    if (action === 'freeze') {
      if (!this.frozen.has(pod)) {
        let thaw: () => void = () => undefined;
        const thawed = new Promise<void>((resolve) => (thaw = resolve));
        this.frozen.set(pod, { thawed, thaw });
      }
      return { pod, state: 'frozen', sockets: sockets.length };
    }
    if (action === 'thaw') {
      this.frozen.get(pod)?.thaw();
      this.frozen.delete(pod);
      this.crashed.delete(pod);
      // A loop that unblocks runs its overdue heartbeat at once, as a real agent's late timer fires.
      if ((this.options.heartbeatIntervalMs ?? 0) > 0 && !this.stopped) void this.heartbeat(pod);
      return { pod, state: 'running', sockets: sockets.length };
    }
    this.crashed.set(pod, this.options.podUid?.(pod));
    for (const socket of sockets) socket.ws.terminate();
    return { pod, state: 'crashed', sockets: sockets.length };
  }

  /** Frozen or crashed: this pod's agent does nothing now. */
  private silent(pod: string): boolean {
    if (this.frozen.has(pod)) return true;
    if (!this.crashed.has(pod)) return false;
    const crashedUid = this.crashed.get(pod);
    const uid = this.options.podUid?.(pod);
    if (uid !== undefined && uid !== crashedUid) {
      // The pod was recreated: a fresh agent runs in it.
      this.crashed.delete(pod);
      return false;
    }
    return true;
  }

  /** Resolves when the pod's agent is not frozen (at once when it is not). */
  private whenThawed(pod: string): Promise<void> {
    return this.frozen.get(pod)?.thawed ?? Promise.resolve();
  }

  private scheduleHeartbeats(): void {
    const interval = this.options.heartbeatIntervalMs ?? 0;
    this.heartbeatTimer = setTimeout(() => {
      void this.heartbeatAll().finally(() => {
        if (!this.stopped) this.scheduleHeartbeats();
      });
    }, interval);
    this.heartbeatTimer.unref?.();
  }

  /** One heartbeat per running pod, each with its own token and its calls' counters. */
  private async heartbeatAll(): Promise<void> {
    const pods = (this.options.pods?.() ?? []).filter((pod) => !this.silent(pod));
    await Promise.all(pods.map((pod) => this.heartbeat(pod)));
  }

  private async heartbeat(pod: string): Promise<void> {
    const calls = [...this.media.values()].filter((socket) => socket.pod === pod).map((socket) => ({
      call_sid: socket.callSid,
      ...(socket.allocationId === null ? {} : { allocation_id: socket.allocationId }),
      media_in: socket.framesIn,
      media_out: socket.framesOut,
    }));
    try {
      const headers = await this.asPod(pod);
      if (headers === null) {
        this.heartbeatFailures += 1;
        return;
      }
      const answer = await this.client.heartbeat({ pod_name: pod, calls }, headers);
      if (answer.status === 200) this.heartbeats += 1;
      else this.heartbeatFailures += 1;
    } catch {
      this.heartbeatFailures += 1;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    for (const { thaw } of this.frozen.values()) thaw();
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
    const allocationId = signedAllocationId(new URL(request.url ?? '/', 'http://agents').pathname, callSid);
    if (!this.options.podExists(pod)) return this.refuse(socket, 404, 'POD_NOT_FOUND', 'pod not found');
    // A frozen agent answers nothing (the upgrade waits for the thaw); a crashed one has no listener.
    await this.whenThawed(pod);
    if (this.silent(pod)) return void socket.destroy();
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
      const media: MediaSocket = { ws, pod, callSid, allocationId, framesIn: 0, framesOut: 0 };
      this.media.set(key, media);
      ws.send(JSON.stringify({ event: 'connected', pod, call_sid: callSid }));
      void this.reportConnected(pod, callSid, allocationId);
      // A frame no WebSocket may send (unmasked, reserved bits) is an 'error' here: drop that client, not the process.
      ws.on('error', () => ws.terminate());
      const stream: ProviderStream = { provider: null, streamId: '', rehomeFrom: '' };
      ws.on('message', (data, isBinary) => {
        // A frozen or crashed agent's loop neither reads nor answers: its counters stand still.
        if (this.silent(pod)) return;
        media.framesIn += 1;
        const knewRehome = stream.rehomeFrom !== '';
        if (answerMessage(ws, stream, data, isBinary)) media.framesOut += 1;
        if (!knewRehome && stream.rehomeFrom !== '') this.recordRehomed({ pod, call_sid: callSid, rehome_from: stream.rehomeFrom, at: Date.now() });
      });
      ws.on('close', () => {
        if (this.open.get(key) === ws) this.open.delete(key);
        if (this.media.get(key) === media) this.media.delete(key);
        // A crashed agent releases nothing: the router finds out by its silence (SPEC 11).
        if (this.crashed.has(pod) && this.silent(pod)) return;
        void this.release(pod, callSid, allocationId);
      });
    });
  }

  /** `POST /api/v1/connected`; 404 means the call already ended (nothing to keep). */
  private async reportConnected(pod: string, callSid: string, allocationId: number | null): Promise<void> {
    // A lost report costs the call at the connect deadline: retry a refused connection or a 5xx briefly.
    await this.whenThawed(pod);
    for (let attempt = 1; attempt <= 5 && !this.stopped; attempt += 1) {
      const status = await this.asPod(pod).then((headers) => (headers === null ? { status: 401 } : this.client.connected({ call_sid: callSid, ...(allocationId === null ? {} : { allocation_id: allocationId }) }, headers))).then((answer) => answer.status, () => 0);
      // 409: the call moved on under a new allocation_id (SPEC 11) while this agent was frozen.
      if (status === 200 || status === 404 || status === 409) {
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
  private recordRehomed(call: RehomedCall): void {
    this.rehomedCount += 1;
    this.rehomed.push(call);
    if (this.rehomed.length > REHOMED_KEPT) this.rehomed.shift();
  }

  /**
   * `allocationId` (known from a signed ws_url): the release names the
   * allocation it ends, so a call re-homed meanwhile (SPEC 11) answers 409
   * STALE_ALLOCATION and stays on its new pod.
   */
  private async release(pod: string, callSid: string, allocationId: number | null = null): Promise<void> {
    // A frozen agent's `finally` block runs when its loop does: after the thaw (the late release of SPEC 11).
    await this.whenThawed(pod);
    const deadline = Date.now() + this.retry.giveUpAfterMs;
    for (let delay = this.retry.firstDelayMs; !this.stopped; delay = Math.min(delay * 2, this.retry.maxDelayMs)) {
      const status = await this.asPod(pod).then((headers) => (headers === null ? { status: 401 } : this.client.release({ call_sid: callSid, reason: 'websocket_closed', ...(allocationId === null ? {} : { allocation_id: allocationId }) }, headers))).then((answer) => answer.status, () => 0);
      if (RELEASE_SETTLED.has(status)) {
        this.releases += 1;
        if (status === 409) this.staleReleases += 1;
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

  /**
   * The pod's Authorization header ({} without agentToken). null once the pod is
   * gone or replaced: a real agent then holds a dead token and gets 401, so the
   * request is not sent (anonymous, it would pass in open mode and prove nothing).
   */
  private async asPod(pod: string): Promise<Record<string, string> | null> {
    if (!this.options.agentToken) return {};
    const token = await this.options.agentToken(pod);
    return token ? { authorization: `Bearer ${token}` } : null;
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

/** The allocation_id of a signed media URL (`/ws/pod/{pod}/{call_sid}/{allocation_id}/{expiry}/{signature}`), else null. */
function signedAllocationId(path: string, callSid: string): number | null {
  const parts = path.split('/');
  const index = parts.indexOf(callSid);
  const id = index >= 0 ? Number(parts[index + 1]) : NaN;
  return Number.isSafeInteger(id) && id > 0 ? id : null;
}
