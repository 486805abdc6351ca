import { randomBytes, randomUUID } from 'node:crypto';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { WebSocket } from 'ws';
import { ConfigError, EnvReader } from '@smart-router/config';
import { FormFields, plivoRequestHeaders, twilioRequestHeaders } from './provider-signing';

export type CarrierProvider = 'twilio' | 'plivo';
export type CarrierCallState = 'ringing' | 'in-progress' | 'completed';

export interface CarrierStream {
  pod: string | null;
  /** ms since the epoch; null until the socket opened (a stream that never opened keeps null). */
  opened_at: number | null;
  /** When the first media frame came back from the agent (Twilio `media`, Plivo `playAudio`). */
  first_media_at: number | null;
  closed_at: number | null;
}

export interface CarrierOptions {
  /**
   * Where provider webhooks go: the router's public base URL (the gateway;
   * PUBLIC_BASE_URL). The carrier signs exactly the URLs it requests, as the
   * providers do, so this must be the URL the webhooks app believes it serves.
   */
  baseUrl: string;
  /**
   * Where the router really is when the carrier cannot reach it at its public
   * address (SIM_CARRIER_ROUTER_URL; compose: http://gateway:8000 while
   * PUBLIC_BASE_URL is http://127.0.0.1:8000, the host's view). Every request
   * and media WebSocket whose URL is on baseUrl's origin (or its ws:// /
   * wss:// form) is sent to this origin instead, path and query unchanged, as
   * a carrier behind split DNS would: signatures are still computed over the
   * public URL and the Host header stays the public host. Unset: URLs are
   * dialled as they are.
   */
  routerUrl?: string;
  /** Auth tokens to sign with; unset = unsigned requests (the router in open mode). */
  twilioAuthToken?: string;
  plivoAuthToken?: string;
  /** The account the REST surface answers for (and checks in Basic auth when a token is set). */
  twilioAccountSid?: string;
  plivoAuthId?: string;
  /** The REST surface's Basic-auth tokens (TWILIO_API_AUTH_TOKEN / PLIVO_API_AUTH_TOKEN); default: the signing token. */
  twilioApiAuthToken?: string;
  plivoApiAuthToken?: string;
  /** Bounds (defaults 1000 and 1000): a load generator must not grow without limit. */
  maxLiveCalls?: number;
  maxCompletedCalls?: number;
  /** The media frame interval (20 ms, as both providers send 8 kHz mulaw). */
  mediaIntervalMs?: number;
  /** How long one webhook may take before the carrier gives up on it (Twilio's 15 s default). */
  webhookTimeoutMs?: number;
}

/**
 * The carrier's options from the variables the router's apps use too
 * (README, Configuration): the first of TWILIO_AUTH_TOKENS / PLIVO_AUTH_TOKENS
 * signs (the current token of a rotation), TWILIO_ACCOUNT_SID and
 * PLIVO_AUTH_ID name the accounts its REST surface answers for, and
 * TWILIO_API_AUTH_TOKEN / PLIVO_API_AUTH_TOKEN (default: that signing token)
 * are what it demands in Basic auth, exactly as the reconciler reads them.
 */
export function carrierOptions(env: Readonly<Record<string, string | undefined>>, baseUrl: string): CarrierOptions {
  const first = (name: string) => env[name]?.split(',').map((value) => value.trim()).find((value) => value.length > 0);
  return {
    baseUrl: baseUrl.replace(/\/+$/, ''),
    routerUrl: readRouterUrl(env),
    twilioAuthToken: first('TWILIO_AUTH_TOKENS'),
    plivoAuthToken: first('PLIVO_AUTH_TOKENS'),
    twilioAccountSid: env.TWILIO_ACCOUNT_SID || undefined,
    plivoAuthId: env.PLIVO_AUTH_ID || undefined,
    twilioApiAuthToken: env.TWILIO_API_AUTH_TOKEN || undefined,
    plivoApiAuthToken: env.PLIVO_API_AUTH_TOKEN || undefined,
  };
}

/** SIM_CARRIER_ROUTER_URL: an http(s) origin (no path, query or credentials: only where to connect changes). */
function readRouterUrl(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const reader = new EnvReader(env);
  if (reader.optionalString('SIM_CARRIER_ROUTER_URL') === undefined) return undefined;
  const text = reader.url('SIM_CARRIER_ROUTER_URL', '', ['http:', 'https:']);
  const parsed = new URL(text);
  if (parsed.pathname !== '/' || parsed.search !== '' || parsed.hash !== '' || parsed.username !== '' || parsed.password !== '') {
    throw new ConfigError('SIM_CARRIER_ROUTER_URL', `must be an origin only (scheme, host, port), got "${parsed.origin}${parsed.pathname}…"`);
  }
  return parsed.origin;
}

/** The http(s) origin of a URL and its WebSocket form (http -> ws, https -> wss). */
function origins(url: string): { http: string; ws: string } {
  const parsed = new URL(url);
  return { http: parsed.origin, ws: `${parsed.protocol === 'https:' ? 'wss:' : 'ws:'}//${parsed.host}` };
}

/** Largest document or callback answer the carrier reads through the routed path. */
const MAX_ANSWER_BYTES = 1024 * 1024;

/**
 * One HTTP request with an explicit Host header (fetch drops a Host header it
 * is given). Answers a fetch Response so callers cannot tell the difference.
 */
function requestWithHost(url: string, init: { method: string; headers: Record<string, string>; body?: string; signal: AbortSignal }): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    const target = new URL(url);
    const headers = { ...init.headers, ...(init.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(init.body)) }) };
    const request = (target.protocol === 'https:' ? httpsRequest : httpRequest)(target, { method: init.method, headers, signal: init.signal }, (incoming) => {
      const chunks: Buffer[] = [];
      let size = 0;
      incoming.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) incoming.destroy(new Error('answer too large'));
        else chunks.push(chunk);
      });
      incoming.on('error', reject);
      incoming.on('end', () => {
        const status = incoming.statusCode ?? 502;
        const empty = status === 204 || status === 205 || status === 304;
        resolve(new Response(empty ? null : Buffer.concat(chunks), { status: status < 200 || status > 599 ? 502 : status, headers: { 'content-type': String(incoming.headers['content-type'] ?? 'application/octet-stream') } }));
      });
    });
    request.on('error', reject);
    request.end(init.body);
  });
}

export class CarrierError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

/** One XML element of a TwiML / Plivo XML document. */
interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeXml(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_match, entity: string) => {
    if (entity[0] !== '#') return ENTITIES[entity.toLowerCase()];
    return String.fromCodePoint(entity[1].toLowerCase() === 'x' ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10));
  });
}

/**
 * Parses the small XML documents providers fetch (no DTDs, namespaces or
 * CDATA, which neither TwiML nor Plivo XML uses). Returns the root element.
 */
export function parseProviderXml(xml: string): XmlElement {
  const root: XmlElement = { name: '#document', attributes: {}, children: [], text: '' };
  const stack = [root];
  const token = /<\?[\s\S]*?\?>|<!--[\s\S]*?-->|<\/\s*([A-Za-z][\w.-]*)\s*>|<([A-Za-z][\w.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|([^<]+)/g;
  for (let match = token.exec(xml); match; match = token.exec(xml)) {
    const [, closing, opening, attributeText, selfClosing, text] = match;
    const current = stack[stack.length - 1];
    if (text !== undefined) current.text += decodeXml(text);
    else if (closing !== undefined) {
      if (current.name !== closing || stack.length === 1) throw new CarrierError(502, 'BAD_DOCUMENT', `unexpected </${closing}>`);
      stack.pop();
    } else if (opening !== undefined) {
      const attributes: Record<string, string> = {};
      for (const [, name, double, single] of (attributeText ?? '').matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) attributes[name] = decodeXml(double ?? single ?? '');
      const element: XmlElement = { name: opening, attributes, children: [], text: '' };
      current.children.push(element);
      if (!selfClosing) stack.push(element);
    }
  }
  if (stack.length !== 1) throw new CarrierError(502, 'BAD_DOCUMENT', `unclosed <${stack[stack.length - 1].name}>`);
  const response = root.children.find((element) => element.name === 'Response');
  if (!response) throw new CarrierError(502, 'BAD_DOCUMENT', 'no <Response>');
  return response;
}

/** Why a stream ended: the caller hung up, the call was redirected (REST), or the far end closed or never opened it. */
type StreamEnd = 'hangup' | 'redirect' | 'remote' | 'dropped' | 'failed';

interface Redirect {
  url: string;
  method: string;
}

interface LiveCall {
  sid: string;
  provider: CarrierProvider;
  merchantId?: string;
  from: string;
  to: string;
  state: CarrierCallState;
  startedAt: number;
  streams: CarrierStream[];
  /** Ends the open stream (if any) with this reason; resolves once its status callback was posted. */
  endStream: ((reason: StreamEnd) => Promise<void>) | null;
  hungUp: boolean;
  redirect: Redirect | null;
  /** The call's loop waiting for a hang-up or a redirect (a Plivo stream without keepCallAlive). */
  waiter: (() => void) | null;
  done: Promise<void>;
}

/** 160 bytes of mulaw silence: 20 ms at 8 kHz. */
const SILENCE_FRAME = Buffer.alloc(160, 0xff).toString('base64');
const TWILIO_API_VERSION = '2010-04-01';
const MAX_DOCUMENTS_PER_CALL = 20;

function wake(call: LiveCall): void {
  const waiter = call.waiter;
  call.waiter = null;
  waiter?.();
}

/**
 * A simulated telephony carrier playing Twilio and Plivo as they document
 * themselves (SPEC 11): it places an inbound call by posting the signed answer
 * webhook, follows the returned document (TwiML `<Connect action><Stream>`,
 * `<Say>`, `<Hangup/>`, `<Redirect>`; Plivo `<Stream keepCallAlive>`,
 * `<Speak>`, `<Redirect>`, `<Hangup/>`), opens the media WebSocket and speaks
 * the provider's stream messages, posts the signed stream-status callbacks,
 * requests `action` / the next `<Redirect>` when a stream ends, and posts the
 * final status callback when the caller hangs up. It also serves the two REST
 * calls the router uses to move a live call (Twilio's call update, Plivo's
 * A-leg transfer). Everything is in memory and bounded.
 */
export class SimCarrier {
  private readonly live = new Map<string, LiveCall>();
  /** Completed calls, oldest first (a Map keeps insertion order), capped at maxCompletedCalls. */
  private readonly completed = new Map<string, { state: CarrierCallState; streams: CarrierStream[] }>();
  private readonly maxLive: number;
  private readonly maxCompleted: number;
  private readonly mediaIntervalMs: number;
  private readonly webhookTimeoutMs: number;
  readonly twilioAccountSid: string;
  readonly plivoAuthId: string;
  private stopped = false;
  /** The public origins (baseUrl's, http and ws forms) and where requests for them go; null = no routing. */
  private readonly routing: { from: { http: string; ws: string }; to: { http: string; ws: string } } | null;
  /**
   * Fault injection: the providers' REST calls (Twilio's call update, Plivo's transfer) are answered
   * this many ms late (0 = at once), as a hung provider; one the client gave up on meanwhile does nothing.
   */
  restDelayMs = 0;
  /** Webhook requests the carrier made, by outcome (for tests and load runs). */
  readonly counters = { webhooks: 0, webhookFailures: 0, streamsOpened: 0, streamFailures: 0 };

  constructor(private readonly options: CarrierOptions) {
    this.maxLive = options.maxLiveCalls ?? 1000;
    this.maxCompleted = options.maxCompletedCalls ?? 1000;
    this.mediaIntervalMs = options.mediaIntervalMs ?? 20;
    this.webhookTimeoutMs = options.webhookTimeoutMs ?? 15000;
    this.twilioAccountSid = options.twilioAccountSid || 'ACsimulated00000000000000000000000';
    this.plivoAuthId = options.plivoAuthId || 'MASIMULATED0000000000';
    this.routing = options.routerUrl ? { from: origins(options.baseUrl), to: origins(options.routerUrl) } : null;
  }

  /**
   * Where a request for a public URL really goes (see CarrierOptions.routerUrl):
   * the router's origin, and the public host for the Host header, when the URL
   * is on the public origin; otherwise the URL itself. Media URLs on another
   * origin (a VOICE_AGENT_BASE_URL host unlike PUBLIC_BASE_URL's) are dialled
   * as they are.
   */
  private route(url: string): { url: string; host?: string } {
    if (!this.routing) return { url };
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return { url };
    }
    const to = parsed.origin === this.routing.from.http ? this.routing.to.http : parsed.origin === this.routing.from.ws ? this.routing.to.ws : null;
    if (to === null) return { url };
    return { url: `${to}${parsed.pathname}${parsed.search}`, host: parsed.host };
  }

  get liveCalls(): number {
    return this.live.size;
  }

  /** Places an inbound call: the answer webhook is posted at once; the call runs on its own. */
  placeCall(input: { provider: CarrierProvider; merchantId?: string; from?: string }): string {
    if (this.stopped) throw new CarrierError(503, 'CARRIER_STOPPED', 'the carrier is stopping');
    if (this.live.size >= this.maxLive) throw new CarrierError(429, 'TOO_MANY_CALLS', `at most ${this.maxLive} live calls`);
    const sid = input.provider === 'twilio' ? `CA${randomBytes(16).toString('hex')}` : randomUUID();
    const call: LiveCall = {
      sid,
      provider: input.provider,
      merchantId: input.merchantId,
      from: input.from ?? '+15550001111',
      to: '+15550002222',
      state: 'ringing',
      startedAt: Date.now(),
      streams: [],
      endStream: null,
      hungUp: false,
      redirect: null,
      waiter: null,
      done: Promise.resolve(),
    };
    call.done = (async () => {
      try {
        await this.run(call);
      } catch {
        // A broken document or an unreachable router ends the call like a carrier error would.
      }
      await this.finish(call);
    })();
    this.live.set(sid, call);
    return sid;
  }

  view(sid: string): { state: CarrierCallState; streams: CarrierStream[] } | undefined {
    const call = this.live.get(sid);
    if (call) return { state: call.state, streams: call.streams.map((stream) => ({ ...stream })) };
    const ended = this.completed.get(sid);
    return ended && { state: ended.state, streams: ended.streams.map((stream) => ({ ...stream })) };
  }

  /** The caller hangs up; resolves once the final status callback was posted. */
  async hangUp(sid: string): Promise<boolean> {
    const call = this.live.get(sid);
    if (!call) return this.completed.has(sid);
    call.hungUp = true;
    void call.endStream?.('hangup');
    wake(call);
    await call.done;
    return true;
  }

  /** Moves a live call to a new document (REST): the open stream ends, the URL is fetched, the new document followed. */
  redirect(sid: string, target: Redirect): boolean {
    const call = this.live.get(sid);
    if (!call || call.hungUp) return false;
    call.redirect = target;
    void call.endStream?.('redirect');
    wake(call);
    return true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.live.keys()].map((sid) => this.hangUp(sid)));
  }

  // ---- the call ----

  private baseFields(call: LiveCall, status: string): FormFields {
    if (call.provider === 'twilio') {
      return { AccountSid: this.twilioAccountSid, ApiVersion: TWILIO_API_VERSION, CallSid: call.sid, CallStatus: status, Direction: 'inbound', From: call.from, To: call.to };
    }
    return { CallUUID: call.sid, CallStatus: status, Direction: 'inbound', From: call.from, To: call.to, Event: 'StartApp' };
  }

  private answerUrl(call: LiveCall): string {
    const query = call.merchantId === undefined ? '' : `?merchant_id=${encodeURIComponent(call.merchantId)}`;
    return `${this.options.baseUrl}/api/v1/${call.provider}/answer${query}`;
  }

  /** A signed webhook, form-encoded (GET puts the fields in the query, as both providers do). */
  private async webhook(call: LiveCall, method: string, url: string, fields: FormFields, idempotencyToken = randomUUID()): Promise<Response> {
    this.counters.webhooks += 1;
    const get = method.toUpperCase() === 'GET';
    let target = url;
    if (get) {
      const parsed = new URL(url);
      for (const [name, value] of Object.entries(fields)) parsed.searchParams.append(name, value);
      target = parsed.toString();
    }
    // Twilio signs the URL it requests (fields in it, for GET); Plivo signs the URL and the fields by method.
    const signing = call.provider === 'twilio'
      ? twilioRequestHeaders(this.options.twilioAuthToken, target, get ? {} : fields, idempotencyToken)
      : plivoRequestHeaders(this.options.plivoAuthToken, method, url, fields);
    const headers: Record<string, string> = { ...signing, 'user-agent': call.provider === 'twilio' ? 'TwilioProxy/1.1' : 'PlivoHTTP/1.0 (sim)' };
    if (!get) headers['content-type'] = 'application/x-www-form-urlencoded';
    // Signed over the public URL above; sent where the router really is (split DNS) with the public Host.
    const routed = this.route(target);
    const init = { method: method.toUpperCase(), headers, body: get ? undefined : new URLSearchParams(fields).toString(), signal: AbortSignal.timeout(this.webhookTimeoutMs) };
    const sent = routed.host === undefined ? fetch(target, init) : requestWithHost(routed.url, { ...init, headers: { ...headers, host: routed.host } });
    const response = await sent.catch((error: unknown) => {
      this.counters.webhookFailures += 1;
      throw error;
    });
    if (response.status >= 400) this.counters.webhookFailures += 1;
    return response;
  }

  /** Fetches a document (answer, action, redirect); Twilio retries a failed one once, Plivo up to 3 times (SPEC 5). */
  private async fetchDocument(call: LiveCall, method: string, url: string, fields: FormFields): Promise<XmlElement> {
    const attempts = call.provider === 'twilio' ? 2 : 4;
    // A retry is the same webhook: Twilio sends the same idempotency token again.
    const idempotencyToken = randomUUID();
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts && !call.hungUp; attempt += 1) {
      try {
        const response = await this.webhook(call, method, url, fields, idempotencyToken);
        const text = await response.text();
        // A document that does not parse is the carrier's "application error": no retry.
        if (response.status >= 200 && response.status < 300) return parseProviderXml(text);
        lastError = new CarrierError(502, 'WEBHOOK_FAILED', `${url} answered ${response.status}`);
        if (response.status < 500) break;
      } catch (error) {
        if (error instanceof CarrierError) throw error;
        lastError = error;
      }
    }
    throw lastError ?? new CarrierError(502, 'WEBHOOK_FAILED', `${url} failed`);
  }

  private async run(call: LiveCall): Promise<void> {
    let next: Redirect | null = { url: this.answerUrl(call), method: 'POST' };
    for (let documents = 0; next && documents < MAX_DOCUMENTS_PER_CALL && !call.hungUp; documents += 1) {
      const status = call.state === 'ringing' ? 'ringing' : 'in-progress';
      const document = await this.fetchDocument(call, next.method, next.url, this.baseFields(call, status));
      call.state = 'in-progress';
      next = await this.follow(call, document);
    }
  }

  /** Runs a document's verbs in order; returns the next document to fetch, or null when the call ends. */
  private async follow(call: LiveCall, document: XmlElement): Promise<Redirect | null> {
    for (const verb of document.children) {
      if (call.hungUp) return null;
      if (call.redirect) return this.takeRedirect(call);
      switch (verb.name) {
        case 'Hangup':
          return null;
        case 'Redirect':
          return { url: verb.text.trim(), method: verb.attributes.method ?? 'POST' };
        case 'Connect': {
          // Twilio: <Connect [action]><Stream/></Connect>: later verbs run only after the stream ends.
          const stream = verb.children.find((child) => child.name === 'Stream');
          if (!stream) break;
          const ended = await this.stream(call, stream.attributes.url ?? '', stream);
          if (ended === 'hangup') return null;
          if (ended === 'redirect') return this.takeRedirect(call);
          if (verb.attributes.action) return { url: verb.attributes.action, method: verb.attributes.method ?? 'POST' };
          break;
        }
        case 'Stream': {
          // Plivo: the URL is the text; keepCallAlive="true" holds later verbs until the stream ends.
          const keep = verb.attributes.keepCallAlive === 'true';
          const running = this.stream(call, verb.text.trim(), verb);
          if (!keep) {
            void running;
            break;
          }
          const ended = await running;
          if (ended === 'hangup') return null;
          if (ended === 'redirect') return this.takeRedirect(call);
          break;
        }
        default:
          // <Say>, <Speak>, <Play>, <Wait>, <Pause>: nothing to simulate beyond moving on.
          break;
      }
    }
    // A non-blocking Plivo stream keeps the call up until the caller hangs up or a REST transfer moves it.
    if (call.endStream && !call.hungUp && !call.redirect) {
      await new Promise<void>((resolve) => (call.waiter = resolve));
      if (call.redirect) return this.takeRedirect(call);
    }
    // The end of the document ends the call (both providers hang up).
    return null;
  }

  private takeRedirect(call: LiveCall): Redirect | null {
    const target = call.redirect;
    call.redirect = null;
    return target;
  }

  /**
   * One media stream: the WebSocket, the provider's messages, frames every
   * 20 ms, and the stream-status callbacks. Resolves with why it ended.
   */
  private stream(call: LiveCall, url: string, element: XmlElement): Promise<StreamEnd> {
    const record: CarrierStream = { pod: /\/ws\/pod\/([^/?#]+)/.exec(url)?.[1] ?? null, opened_at: null, first_media_at: null, closed_at: null };
    call.streams.push(record);
    const twilio = call.provider === 'twilio';
    const streamSid = twilio ? `MZ${randomBytes(16).toString('hex')}` : randomUUID();
    const callbackUrl = twilio ? element.attributes.statusCallback : element.attributes.statusCallbackUrl;
    const callbackMethod = element.attributes.statusCallbackMethod ?? 'POST';
    const parameters: Record<string, string> = {};
    for (const child of element.children) if (child.name === 'Parameter' && child.attributes.name) parameters[child.attributes.name] = child.attributes.value ?? '';
    const callback = (event: 'started' | 'stopped' | 'failed', error?: string) => {
      if (!callbackUrl) return Promise.resolve();
      const fields: FormFields = twilio
        ? {
            AccountSid: this.twilioAccountSid, CallSid: call.sid, StreamSid: streamSid, StreamName: element.attributes.name ?? streamSid,
            StreamEvent: { started: 'stream-started', stopped: 'stream-stopped', failed: 'stream-error' }[event], Timestamp: new Date().toISOString(),
            ...(error ? { StreamError: error } : {}),
          }
        : {
            CallUUID: call.sid, StreamID: streamSid, Event: { started: 'StartStream', stopped: 'StopStream', failed: 'DroppedStream' }[event],
            Timestamp: new Date().toISOString(), From: call.from, To: call.to, Direction: 'inbound',
          };
      return this.webhook(call, callbackMethod, callbackUrl, fields).then((response) => response.body?.cancel(), () => undefined);
    };

    return new Promise<StreamEnd>((resolve) => {
      // Twilio signs the upgrade too, over the wss URL with no parameters; Plivo signs it as a GET.
      const headers = twilio ? twilioRequestHeaders(this.options.twilioAuthToken, url, {}) : plivoRequestHeaders(this.options.plivoAuthToken, 'GET', url, {});
      let socket: WebSocket;
      try {
        // Signed over the public URL; dialled where the router really is, with the public Host (see route()).
        const routed = this.route(url);
        socket = new WebSocket(routed.url, { headers: routed.host === undefined ? headers : { ...headers, host: routed.host }, handshakeTimeout: 10000 });
      } catch {
        record.closed_at = Date.now();
        this.counters.streamFailures += 1;
        void callback('failed', 'malformed stream URL').then(() => resolve('failed'));
        return;
      }
      let sequence = 0;
      let chunk = 0;
      let timer: NodeJS.Timeout | null = null;
      let ending: StreamEnd | null = null;
      let posted: Promise<void> = Promise.resolve();
      const send = (message: Record<string, unknown>) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
      };
      const finish = (reason: StreamEnd): Promise<void> => {
        if (ending) return posted;
        ending = reason;
        if (timer) clearInterval(timer);
        if (call.endStream === end) call.endStream = null;
        const opened = record.opened_at !== null;
        record.closed_at = Date.now();
        if (!opened) this.counters.streamFailures += 1;
        // Stopped on purpose (hang-up, redirect) or closed cleanly by the far end: stopped; never opened or dropped: failed.
        const event = !opened || reason === 'failed' || reason === 'dropped' ? 'failed' : 'stopped';
        posted = callback(event, opened ? (reason === 'dropped' ? 'stream dropped' : undefined) : 'connection failed').then(() => {
          wake(call);
          resolve(reason);
        });
        return posted;
      };
      const end = (reason: StreamEnd): Promise<void> => {
        if (twilio && socket.readyState === WebSocket.OPEN) send({ event: 'stop', sequenceNumber: String(++sequence), streamSid, stop: { accountSid: this.twilioAccountSid, callSid: call.sid } });
        const done = finish(reason);
        socket.close(1000);
        setTimeout(() => socket.terminate(), 1000).unref();
        return done;
      };
      // One open stream per call: a document with several non-blocking Plivo <Stream>s ends the
      // earlier one as it opens the next, so hang-up and redirect always reach every socket
      // (no socket or media timer outlives its call, however many streams a document names).
      const previous = call.endStream;
      call.endStream = end;
      if (previous) void previous('hangup');
      socket.on('open', () => {
        record.opened_at = Date.now();
        this.counters.streamsOpened += 1;
        if (twilio) {
          send({ event: 'connected', protocol: 'Call', version: '1.0.0' });
          send({
            event: 'start', sequenceNumber: String(++sequence), streamSid,
            start: { accountSid: this.twilioAccountSid, streamSid, callSid: call.sid, tracks: ['inbound'], customParameters: parameters, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
          });
        } else {
          send({
            event: 'start', sequenceNumber: sequence++,
            start: { callId: call.sid, streamId: streamSid, accountId: this.plivoAuthId, tracks: ['inbound'], mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000 } },
            extra_headers: element.attributes.extraHeaders ?? '',
          });
        }
        void callback('started');
        const startedAt = Date.now();
        timer = setInterval(() => {
          chunk += 1;
          const media = { track: 'inbound', chunk: String(chunk), timestamp: String(Date.now() - startedAt), payload: SILENCE_FRAME };
          if (twilio) send({ event: 'media', sequenceNumber: String(++sequence), streamSid, media });
          else send({ event: 'media', sequenceNumber: sequence++, streamId: streamSid, media: { ...media, chunk } });
        }, this.mediaIntervalMs);
      });
      socket.on('message', (data, binary) => {
        if (binary) return;
        let message: { event?: unknown; mark?: { name?: unknown } };
        try {
          message = JSON.parse(String(data)) as typeof message;
        } catch {
          return;
        }
        // The agent's audio back to the caller: Twilio `media` with our streamSid, Plivo `playAudio`.
        if ((twilio && message.event === 'media') || (!twilio && message.event === 'playAudio')) record.first_media_at ??= Date.now();
        // Twilio answers a `mark` once the audio before it has played; here, at once.
        if (twilio && message.event === 'mark') send({ event: 'mark', sequenceNumber: String(++sequence), streamSid, mark: message.mark });
      });
      socket.on('unexpected-response', (_request, response) => {
        response.resume();
        void finish('failed');
        socket.terminate();
      });
      socket.on('error', () => void finish(record.opened_at === null ? 'failed' : 'dropped'));
      // The agent closed it: cleanly (1000, 1005: no code) is a stop; anything else is a dropped stream.
      socket.on('close', (code) => void finish(record.opened_at === null ? 'failed' : code === 1000 || code === 1005 ? 'remote' : 'dropped'));
    });
  }

  /** The caller is gone: close what is open and post the final status callback (Twilio `completed`, Plivo hangup). */
  private async finish(call: LiveCall): Promise<void> {
    call.hungUp = true;
    // The stream's stop callback is posted before the final one, as the providers order them.
    await call.endStream?.('hangup');
    const wasAnswered = call.state !== 'ringing';
    call.state = 'completed';
    const duration = String(Math.round((Date.now() - call.startedAt) / 1000));
    const fields: FormFields = call.provider === 'twilio'
      ? { ...this.baseFields(call, wasAnswered ? 'completed' : 'failed'), CallDuration: duration }
      : { ...this.baseFields(call, wasAnswered ? 'completed' : 'failed'), Event: 'Hangup', HangupCause: 'NORMAL_CLEARING', Duration: duration, BillDuration: duration };
    const path = call.provider === 'twilio' ? 'status' : 'hangup';
    await this.webhook(call, 'POST', `${this.options.baseUrl}/api/v1/${call.provider}/${path}`, fields).then((response) => response.body?.cancel(), () => undefined);
    this.live.delete(call.sid);
    this.completed.set(call.sid, { state: 'completed', streams: call.streams });
    while (this.completed.size > this.maxCompleted) this.completed.delete(this.completed.keys().next().value!);
  }

  // ---- HTTP: /sim/carrier/calls and the providers' REST calls ----

  /** Serves the carrier's routes; false when the path is not one of them. */
  async handle(request: IncomingMessage, response: ServerResponse, url: URL): Promise<boolean> {
    const method = request.method ?? 'GET';
    const path = url.pathname;
    const send = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
    };
    try {
      if (path === '/sim/carrier/calls' || path === '/sim/carrier/calls/') {
        if (method !== 'POST') throw new CarrierError(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed here`);
        const body = await readJson(request);
        const provider = body.provider;
        if (provider !== 'twilio' && provider !== 'plivo') throw new CarrierError(400, 'INVALID_PROVIDER', 'provider must be "twilio" or "plivo"');
        for (const field of ['merchant_id', 'from'] as const) {
          if (body[field] !== undefined && (typeof body[field] !== 'string' || (body[field] as string).length > 128)) throw new CarrierError(400, 'INVALID_FIELD', `${field} must be a string of at most 128 characters`);
        }
        send(201, { call_sid: this.placeCall({ provider, merchantId: body.merchant_id as string | undefined, from: body.from as string | undefined }) });
        return true;
      }
      let match = /^\/sim\/carrier\/calls\/([^/]+)$/.exec(path);
      if (match) {
        const sid = decodeURIComponent(match[1]);
        if (method === 'GET') {
          const view = this.view(sid);
          if (!view) throw new CarrierError(404, 'CALL_NOT_FOUND', 'no such call');
          send(200, view);
        } else if (method === 'DELETE') {
          if (!(await this.hangUp(sid))) throw new CarrierError(404, 'CALL_NOT_FOUND', 'no such call');
          send(200, { call_sid: sid, ...this.view(sid) });
        } else throw new CarrierError(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed here`);
        return true;
      }
      // Twilio: update a live call (twilio.com/docs/voice/api/call-resource#update-a-call-resource).
      match = /^\/2010-04-01\/Accounts\/([^/]+)\/Calls\/([^/]+)\.json$/.exec(path);
      if ((match || /^\/v1\/Account\/[^/]+\/Call\/[^/]+\/?$/.test(path)) && !(await this.restDelay(response))) return true;
      if (match) {
        if (method !== 'POST') throw new CarrierError(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed here`);
        this.checkBasicAuth(request, decodeURIComponent(match[1]), this.twilioAccountSid, this.options.twilioApiAuthToken ?? this.options.twilioAuthToken);
        const sid = decodeURIComponent(match[2]);
        const fields = new URLSearchParams(await readText(request));
        const call = this.live.get(sid);
        if (!call || call.provider !== 'twilio') return sendTwilioError(response, 404, 20404, `The requested resource ${path} was not found`), true;
        if (fields.get('Status') === 'completed' || fields.get('Status') === 'canceled') {
          await this.hangUp(sid);
        } else {
          const target = fields.get('Url');
          if (!target || !/^https?:\/\//.test(target)) return sendTwilioError(response, 400, 21205, 'Url is not a valid URL'), true;
          this.redirect(sid, { url: target, method: fields.get('Method') ?? 'POST' });
        }
        send(200, { sid, account_sid: this.twilioAccountSid, status: this.view(sid)?.state ?? 'completed', direction: 'inbound', from: call.from, to: call.to, api_version: TWILIO_API_VERSION, uri: path });
        return true;
      }
      // Plivo: transfer a live call (plivo.com/docs/voice/api/call/transfer-a-call).
      match = /^\/v1\/Account\/([^/]+)\/Call\/([^/]+)\/?$/.exec(path);
      if (match) {
        if (method !== 'POST') throw new CarrierError(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed here`);
        this.checkBasicAuth(request, decodeURIComponent(match[1]), this.plivoAuthId, this.options.plivoApiAuthToken ?? this.options.plivoAuthToken);
        const sid = decodeURIComponent(match[2]);
        const fields = await readFields(request);
        const call = this.live.get(sid);
        if (!call || call.provider !== 'plivo') throw new CarrierError(404, 'NOT_FOUND', 'call not found');
        const legs = fields.legs ?? 'aleg';
        const target = fields.aleg_url;
        if ((legs !== 'aleg' && legs !== 'both') || !target || !/^https?:\/\//.test(target)) throw new CarrierError(400, 'INVALID_REQUEST', 'legs=aleg needs an aleg_url');
        this.redirect(sid, { url: target, method: fields.aleg_method ?? 'POST' });
        send(202, { api_id: randomUUID(), message: 'call transferred' });
        return true;
      }
      return false;
    } catch (error) {
      if (error instanceof CarrierError) send(error.status, { error: error.message, code: error.code });
      else send(500, { error: 'internal error', code: 'INTERNAL' });
      return true;
    }
  }

  /** Waits restDelayMs; false when the client closed the request meanwhile (then nothing is done). */
  private async restDelay(response: ServerResponse): Promise<boolean> {
    if (this.restDelayMs <= 0) return true;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.restDelayMs);
      response.once('close', done);
      function done() {
        clearTimeout(timer);
        response.off('close', done);
        resolve();
      }
    });
    return !response.destroyed && !response.writableEnded;
  }

  /** The SDKs authenticate with Basic (account id : auth token); checked when the carrier has a token. */
  private checkBasicAuth(request: IncomingMessage, account: string, expectedAccount: string, token: string | undefined): void {
    if (account !== expectedAccount) throw new CarrierError(404, 'ACCOUNT_NOT_FOUND', 'unknown account');
    if (!token) return;
    const header = request.headers.authorization ?? '';
    const decoded = header.startsWith('Basic ') ? Buffer.from(header.slice(6), 'base64').toString('utf8') : '';
    if (decoded !== `${expectedAccount}:${token}`) throw new CarrierError(401, 'UNAUTHORIZED', 'authentication failed');
  }
}

function sendTwilioError(response: ServerResponse, status: number, code: number, message: string): void {
  const text = JSON.stringify({ code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status });
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

const MAX_BODY = 64 * 1024;

async function readText(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new CarrierError(413, 'BODY_TOO_LARGE', 'request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/i.test(request.headers['content-type'] ?? '')) throw new CarrierError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send application/json');
  const text = await readText(request);
  let value: unknown;
  try {
    value = JSON.parse(text || '{}');
  } catch {
    throw new CarrierError(400, 'INVALID_JSON', 'request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CarrierError(400, 'INVALID_JSON', 'request body must be a JSON object');
  return value as Record<string, unknown>;
}

/** Plivo's SDK posts JSON; curl users post forms: both. */
async function readFields(request: IncomingMessage): Promise<Record<string, string>> {
  const type = request.headers['content-type'] ?? '';
  if (/^application\/json\b/i.test(type)) {
    const body = await readJson(request);
    return Object.fromEntries(Object.entries(body).filter(([, value]) => typeof value === 'string')) as Record<string, string>;
  }
  return Object.fromEntries(new URLSearchParams(await readText(request)));
}
