import { createServer, IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { isValidPlivoV3Signature, isValidTwilioSignature, parseParams } from '@smart-router/providers';
import { waitFor } from '@smart-router/testing';
import { SimCarrier, carrierOptions } from './carrier';

/**
 * The carrier's document following, against a small router of this test's
 * own (real HTTP and WebSocket servers): which requests it makes, in which
 * order, signed, and what it does when a stream ends (`<Connect action>`,
 * Plivo's `<Redirect>` after a keepCallAlive stream), on `<Hangup/>`, and
 * within its bounds.
 */

interface Seen {
  path: string;
  fields: Record<string, string>;
  signed: boolean;
  /** The Host header: the URL the carrier believes it calls, also behind split DNS (routerUrl). */
  host: string;
}

const TWILIO_TOKEN = 'spec-twilio';
const PLIVO_TOKEN = 'spec-plivo';

let server: Server;
let wss: WebSocketServer;
let base: string;
let seen: Seen[];
/** The document each path answers (a function of how often it was asked). */
let documents: Record<string, (count: number) => string>;
/** The agent side: what each socket received; close one to end its stream from the far end. */
let sockets: { path: string; host: string; socket: WebSocket; received: Record<string, unknown>[] }[];

function verify(request: IncomingMessage, url: string, body: string): boolean {
  const params = parseParams(body);
  if (request.headers['x-twilio-signature']) return isValidTwilioSignature([TWILIO_TOKEN], String(request.headers['x-twilio-signature']), url, params);
  if (request.headers['x-plivo-signature-v3']) {
    return isValidPlivoV3Signature([PLIVO_TOKEN], String(request.headers['x-plivo-signature-v3']), request.method ?? 'POST', url, String(request.headers['x-plivo-signature-v3-nonce']), params);
  }
  return false;
}

beforeAll(async () => {
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = new URL(request.url!, base).pathname;
      // The signed URL as a router behind a proxy rebuilds it: scheme and Host (base's own host unless routed).
      seen.push({ path, fields: Object.fromEntries(new URLSearchParams(body)), signed: verify(request, `http://${request.headers.host}${request.url}`, body), host: String(request.headers.host) });
      const count = seen.filter((entry) => entry.path === path).length;
      const document = documents[path];
      if (document) response.writeHead(200, { 'content-type': 'text/xml' }).end(document(count));
      else response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  wss = new WebSocketServer({ server });
  wss.on('connection', (socket, request) => {
    const entry = { path: request.url!, host: String(request.headers.host), socket, received: [] as Record<string, unknown>[] };
    sockets.push(entry);
    socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as Record<string, unknown>;
      entry.received.push(message);
      if (message.event === 'media') socket.send(JSON.stringify(entry.path.includes('plivo') ? { event: 'playAudio', media: { payload: 'AA==' } } : { event: 'media', streamSid: message.streamSid, media: { payload: 'AA==' } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
});

afterAll(async () => {
  for (const client of wss.clients) client.terminate();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  seen = [];
  sockets = [];
  documents = {};
});

const ws = () => base.replace('http', 'ws');

describe('SimCarrier', () => {
  it('Twilio: <Connect action> is requested when the agent ends the stream; the next document is followed; <Hangup/> posts completed', async () => {
    const carrier = new SimCarrier({ baseUrl: base, twilioAuthToken: TWILIO_TOKEN, mediaIntervalMs: 5 });
    documents['/api/v1/twilio/answer'] = () =>
      `<Response><Connect action="${base}/api/v1/twilio/stream-ended?allocation_id=7"><Stream url="${ws()}/ws/pod/voice-agent-1/x" statusCallback="${base}/api/v1/twilio/stream-status" statusCallbackMethod="POST"><Parameter name="rehome_from" value="voice-agent-0"/></Stream></Connect></Response>`;
    documents['/api/v1/twilio/stream-ended'] = (count) =>
      count === 1 ? `<Response><Connect action="${base}/api/v1/twilio/stream-ended"><Stream url="${ws()}/ws/pod/voice-agent-2/x"/></Connect></Response>` : '<Response><Hangup/></Response>';
    const sid = carrier.placeCall({ provider: 'twilio', merchantId: 'm1' });
    await waitFor(() => carrier.view(sid)?.streams[0]?.first_media_at, { what: 'media on the first stream' });
    const first = sockets[0];
    expect(first.received.slice(0, 2).map((message) => message.event)).toEqual(['connected', 'start']);
    expect(first.received[1]).toMatchObject({ streamSid: expect.stringMatching(/^MZ/), start: { callSid: sid, customParameters: { rehome_from: 'voice-agent-0' }, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000 } } });
    first.socket.close(1000);
    await waitFor(() => carrier.view(sid)?.streams[1]?.first_media_at, { what: 'media on the stream the action document opened' });
    sockets[1].socket.close(1000);
    await waitFor(() => carrier.view(sid)?.state === 'completed', { what: 'the call to end on <Hangup/>' });
    // The carrier posts the final status callback after the call has ended, as Twilio does.
    await waitFor(() => seen.some((entry) => entry.path === '/api/v1/twilio/status'), { what: 'the final status callback' });
    expect(carrier.view(sid)!.streams.map((stream) => stream.pod)).toEqual(['voice-agent-1', 'voice-agent-2']);
    expect(seen.map((entry) => `${entry.path} ${entry.fields.StreamEvent ?? entry.fields.CallStatus}`)).toEqual([
      '/api/v1/twilio/answer ringing',
      '/api/v1/twilio/stream-status stream-started',
      '/api/v1/twilio/stream-status stream-stopped',
      '/api/v1/twilio/stream-ended in-progress',
      '/api/v1/twilio/stream-ended in-progress',
      '/api/v1/twilio/status completed',
    ]);
    expect(seen.every((entry) => entry.signed)).toBe(true);
    expect(seen[0].fields).toMatchObject({ CallSid: sid, AccountSid: expect.stringMatching(/^AC/), From: expect.any(String), To: expect.any(String), Direction: 'inbound' });
  });

  it('Plivo: the <Redirect> after a keepCallAlive stream runs when the stream ends; DELETE hangs up with the stop callback first', async () => {
    const carrier = new SimCarrier({ baseUrl: base, plivoAuthToken: PLIVO_TOKEN, mediaIntervalMs: 5 });
    documents['/api/v1/plivo/answer'] = () =>
      `<Response><Stream keepCallAlive="true" bidirectional="true" statusCallbackUrl="${base}/api/v1/plivo/stream-status" extraHeaders="rehome_from=voice-agent-3">${ws()}/ws/pod/voice-agent-1/plivo</Stream><Redirect>${base}/api/v1/plivo/stream-ended?allocation_id=3</Redirect></Response>`;
    documents['/api/v1/plivo/stream-ended'] = () => `<Response><Stream keepCallAlive="true" statusCallbackUrl="${base}/api/v1/plivo/stream-status">${ws()}/ws/pod/voice-agent-4/plivo</Stream></Response>`;
    const sid = carrier.placeCall({ provider: 'plivo' });
    await waitFor(() => carrier.view(sid)?.streams[0]?.first_media_at, { what: 'playAudio on the first stream' });
    expect(sockets[0].received[0]).toMatchObject({ event: 'start', start: { callId: sid, streamId: expect.any(String) }, extra_headers: 'rehome_from=voice-agent-3' });
    sockets[0].socket.close(1000);
    await waitFor(() => carrier.view(sid)?.streams[1]?.first_media_at, { what: 'the redirected document streaming' });
    expect(await carrier.hangUp(sid)).toBe(true);
    expect(carrier.view(sid)!.state).toBe('completed');
    expect(seen.map((entry) => `${entry.path} ${entry.fields.Event}`)).toEqual([
      '/api/v1/plivo/answer StartApp',
      '/api/v1/plivo/stream-status StartStream',
      '/api/v1/plivo/stream-status StopStream',
      '/api/v1/plivo/stream-ended StartApp',
      '/api/v1/plivo/stream-status StartStream',
      '/api/v1/plivo/stream-status StopStream',
      '/api/v1/plivo/hangup Hangup',
    ]);
    expect(seen.every((entry) => entry.signed)).toBe(true);
  });

  it('Plivo: a document naming many non-blocking streams keeps one open at a time, and the hang-up closes every socket', async () => {
    const carrier = new SimCarrier({ baseUrl: base, plivoAuthToken: PLIVO_TOKEN, mediaIntervalMs: 5 });
    const streams = Array.from({ length: 50 }, (_, index) => `<Stream statusCallbackUrl="${base}/api/v1/plivo/stream-status">${ws()}/ws/pod/voice-agent-${index}/plivo</Stream>`).join('');
    documents['/api/v1/plivo/answer'] = () => `<Response>${streams}</Response>`;
    const sid = carrier.placeCall({ provider: 'plivo' });
    await waitFor(() => carrier.view(sid)?.streams.length === 50, { what: 'the 50 streams started' });
    expect(await carrier.hangUp(sid)).toBe(true);
    // Every socket that reached the agent side is closed once the caller hangs up (none left running its media timer).
    await waitFor(() => sockets.every((entry) => entry.socket.readyState === WebSocket.CLOSED), { what: 'every media socket closed' });
    expect(carrier.view(sid)!.streams.every((stream) => stream.closed_at !== null)).toBe(true);
  });

  it('a stream that cannot open is a stream-error callback; the failure document <Say><Hangup/> ends the call; unsigned without tokens', async () => {
    const carrier = new SimCarrier({ baseUrl: base });
    documents['/api/v1/twilio/answer'] = (count) =>
      count === 1 ? `<Response><Connect action="${base}/api/v1/twilio/answer"><Stream url="ws://127.0.0.1:1/ws/pod/p/x" statusCallback="${base}/api/v1/twilio/stream-status"/></Connect></Response>` : '<Response><Say>sorry</Say><Hangup/></Response>';
    const sid = carrier.placeCall({ provider: 'twilio' });
    await waitFor(() => carrier.view(sid)?.state === 'completed', { what: 'the call to end' });
    await waitFor(() => seen.some((entry) => entry.path === '/api/v1/twilio/status'), { what: 'the final status callback' });
    expect(seen.map((entry) => `${entry.path} ${entry.fields.StreamEvent ?? entry.fields.CallStatus}`)).toEqual([
      '/api/v1/twilio/answer ringing',
      '/api/v1/twilio/stream-status stream-error',
      '/api/v1/twilio/answer in-progress',
      '/api/v1/twilio/status completed',
    ]);
    expect(carrier.view(sid)!.streams[0]).toMatchObject({ opened_at: null, first_media_at: null, closed_at: expect.any(Number) });
    expect(seen.some((entry) => entry.signed)).toBe(false);
  });

  it('REST (Twilio call update, Plivo transfer) demands Basic account:API token: a wrong token, the signing token or no header is 401; without an API token the signing token is it', async () => {
    const TWILIO_API = 'spec-twilio-rest';
    const PLIVO_API = 'spec-plivo-rest';
    const rest = async (carrier: SimCarrier, run: (url: string) => Promise<void>) => {
      const surface = createServer((request, response) => {
        void carrier.handle(request, response, new URL(request.url!, 'http://carrier')).then((served) => {
          if (!served) response.writeHead(404).end();
        });
      });
      await new Promise<void>((resolve) => surface.listen(0, '127.0.0.1', resolve));
      try {
        await run(`http://127.0.0.1:${(surface.address() as AddressInfo).port}`);
      } finally {
        await carrier.stop();
        await new Promise((resolve) => surface.close(resolve));
      }
    };
    const basic = (account: string, token: string) => `Basic ${Buffer.from(`${account}:${token}`).toString('base64')}`;
    const post = async (url: string, body: string, authorization?: string) => {
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization ? { authorization } : {}) }, body });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    documents['/api/v1/twilio/answer'] = () => `<Response><Connect><Stream url="${ws()}/ws/pod/p/twilio"/></Connect></Response>`;
    documents['/api/v1/plivo/answer'] = () => `<Response><Stream keepCallAlive="true" bidirectional="true">${ws()}/ws/pod/p/plivo</Stream></Response>`;
    documents['/api/v1/plivo/next'] = () => '<Response><Hangup/></Response>';

    for (const apiTokens of [true, false]) {
      const twilioKey = apiTokens ? TWILIO_API : TWILIO_TOKEN;
      const plivoKey = apiTokens ? PLIVO_API : PLIVO_TOKEN;
      const carrier = new SimCarrier({
        baseUrl: base, twilioAuthToken: TWILIO_TOKEN, plivoAuthToken: PLIVO_TOKEN, mediaIntervalMs: 5,
        ...(apiTokens ? { twilioApiAuthToken: TWILIO_API, plivoApiAuthToken: PLIVO_API } : {}),
      });
      await rest(carrier, async (url) => {
        const twilioCall = carrier.placeCall({ provider: 'twilio' });
        const plivoCall = carrier.placeCall({ provider: 'plivo' });
        await waitFor(() => carrier.view(twilioCall)?.streams[0]?.first_media_at && carrier.view(plivoCall)?.streams[0]?.first_media_at, { what: 'both calls streaming' });
        const twilio = `${url}/2010-04-01/Accounts/${carrier.twilioAccountSid}/Calls/${twilioCall}.json`;
        const plivo = `${url}/v1/Account/${carrier.plivoAuthId}/Call/${plivoCall}/`;
        const transfer = `legs=aleg&aleg_url=${encodeURIComponent(`${base}/api/v1/plivo/next`)}`;
        const refused = [undefined, basic(carrier.twilioAccountSid, 'wrong'), basic('ACother', twilioKey), `Bearer ${twilioKey}`, ...(apiTokens ? [basic(carrier.twilioAccountSid, TWILIO_TOKEN)] : [])];
        for (const authorization of refused) {
          expect({ authorization, answer: await post(twilio, 'Status=completed', authorization) }).toEqual({ authorization, answer: { status: 401, body: { error: expect.any(String), code: 'UNAUTHORIZED' } } });
        }
        const refusedPlivo = [undefined, basic(carrier.plivoAuthId, 'wrong'), basic('MAother', plivoKey), `Bearer ${plivoKey}`, ...(apiTokens ? [basic(carrier.plivoAuthId, PLIVO_TOKEN)] : [])];
        for (const authorization of refusedPlivo) {
          expect({ authorization, answer: await post(plivo, transfer, authorization) }).toEqual({ authorization, answer: { status: 401, body: { error: expect.any(String), code: 'UNAUTHORIZED' } } });
        }
        // Refused requests changed nothing.
        expect([carrier.view(twilioCall)?.state, carrier.view(plivoCall)?.streams.length]).toEqual([expect.not.stringMatching(/^completed$/), 1]);
        expect(await post(twilio, 'Status=completed', basic(carrier.twilioAccountSid, twilioKey))).toMatchObject({ status: 200, body: { sid: twilioCall } });
        expect(carrier.view(twilioCall)?.state).toBe('completed');
        expect(await post(plivo, transfer, basic(carrier.plivoAuthId, plivoKey))).toMatchObject({ status: 202, body: { message: 'call transferred' } });
        await waitFor(() => carrier.view(plivoCall)?.state === 'completed', { what: 'the transferred Plivo call to hang up' });
      });
    }
  });

  it('behind split DNS (SIM_CARRIER_ROUTER_URL): calls on an unreachable public URL reach the router at its other address, signed over the public URL, with the public Host', async () => {
    // `.invalid` never resolves: every request that arrives here was routed.
    const PUBLIC = 'http://router.public.invalid:8000';
    const PUBLIC_WS = 'ws://router.public.invalid:8000';
    const carrier = new SimCarrier({ ...carrierOptions({ SIM_CARRIER_ROUTER_URL: `${base}/`, TWILIO_AUTH_TOKENS: TWILIO_TOKEN, PLIVO_AUTH_TOKENS: PLIVO_TOKEN }, PUBLIC), mediaIntervalMs: 5 });
    documents['/api/v1/twilio/answer'] = () =>
      `<Response><Connect action="${PUBLIC}/api/v1/twilio/stream-ended"><Stream url="${PUBLIC_WS}/ws/pod/voice-agent-1/tw" statusCallback="${PUBLIC}/api/v1/twilio/stream-status"/></Connect></Response>`;
    documents['/api/v1/twilio/stream-ended'] = () => `<Response><Connect><Stream url="${PUBLIC_WS}/ws/pod/voice-agent-2/tw" statusCallback="${PUBLIC}/api/v1/twilio/stream-status"/></Connect></Response>`;
    documents['/api/v1/plivo/answer'] = () =>
      `<Response><Stream keepCallAlive="true" statusCallbackUrl="${PUBLIC}/api/v1/plivo/stream-status">${PUBLIC_WS}/ws/pod/voice-agent-3/plivo</Stream><Redirect>${PUBLIC}/api/v1/plivo/stream-ended</Redirect></Response>`;
    documents['/api/v1/plivo/stream-ended'] = () => `<Response><Stream keepCallAlive="true" statusCallbackUrl="${PUBLIC}/api/v1/plivo/stream-status">${PUBLIC_WS}/ws/pod/voice-agent-4/plivo</Stream></Response>`;

    // Twilio: moved by the REST call update the reconciler makes, to PUBLIC_BASE_URL's stream-ended URL.
    const twilio = carrier.placeCall({ provider: 'twilio', merchantId: 'm1' });
    await waitFor(() => carrier.view(twilio)?.streams[0]?.first_media_at, { what: 'media on the Twilio stream' });
    expect(carrier.redirect(twilio, { url: `${PUBLIC}/api/v1/twilio/stream-ended?allocation_id=9`, method: 'POST' })).toBe(true);
    await waitFor(() => carrier.view(twilio)?.streams[1]?.first_media_at, { what: 'media on the stream the redirect opened' });
    await carrier.hangUp(twilio);
    // Plivo: its agent goes away; the <Redirect> after the keepCallAlive stream runs.
    const plivo = carrier.placeCall({ provider: 'plivo' });
    await waitFor(() => carrier.view(plivo)?.streams[0]?.first_media_at, { what: 'playAudio on the Plivo stream' });
    sockets.find((entry) => entry.path.includes('voice-agent-3'))!.socket.close(1000);
    await waitFor(() => carrier.view(plivo)?.streams[1]?.first_media_at, { what: 'the redirected Plivo document streaming' });
    await carrier.hangUp(plivo);

    expect([carrier.view(twilio)?.streams.map((stream) => stream.pod), carrier.view(plivo)?.streams.map((stream) => stream.pod)]).toEqual([
      ['voice-agent-1', 'voice-agent-2'],
      ['voice-agent-3', 'voice-agent-4'],
    ]);
    expect(seen.map((entry) => `${entry.path} ${entry.fields.StreamEvent ?? entry.fields.Event ?? entry.fields.CallStatus}`)).toEqual([
      '/api/v1/twilio/answer ringing',
      '/api/v1/twilio/stream-status stream-started',
      '/api/v1/twilio/stream-status stream-stopped',
      '/api/v1/twilio/stream-ended in-progress',
      '/api/v1/twilio/stream-status stream-started',
      '/api/v1/twilio/stream-status stream-stopped',
      '/api/v1/twilio/status completed',
      '/api/v1/plivo/answer StartApp',
      '/api/v1/plivo/stream-status StartStream',
      '/api/v1/plivo/stream-status StopStream',
      '/api/v1/plivo/stream-ended StartApp',
      '/api/v1/plivo/stream-status StartStream',
      '/api/v1/plivo/stream-status StopStream',
      '/api/v1/plivo/hangup Hangup',
    ]);
    // Signed over the public URL (the harness checks them against http://{Host}{path}), with the public Host.
    expect(seen.filter((entry) => !entry.signed || entry.host !== 'router.public.invalid:8000')).toEqual([]);
    expect(sockets.map((entry) => entry.host)).toEqual(Array(4).fill('router.public.invalid:8000'));
    expect(carrier.counters).toMatchObject({ webhookFailures: 0, streamFailures: 0, streamsOpened: 4 });
  });

  it('SIM_CARRIER_ROUTER_URL: unset dials URLs as they are; a value that is not an http(s) origin stops the sim naming it', () => {
    expect(carrierOptions({}, 'http://127.0.0.1:8000').routerUrl).toBeUndefined();
    expect(carrierOptions({ SIM_CARRIER_ROUTER_URL: '' }, 'http://127.0.0.1:8000').routerUrl).toBeUndefined();
    expect(carrierOptions({ SIM_CARRIER_ROUTER_URL: 'http://gateway:8000/' }, 'http://127.0.0.1:8000').routerUrl).toBe('http://gateway:8000');
    for (const value of ['gateway:8000', 'ftp://gateway:8000', 'ws://gateway:8000', 'http://gateway:8000/api', 'http://gateway:8000?x=1', 'http://user:secret@gateway:8000', 'not a url']) {
      expect(() => carrierOptions({ SIM_CARRIER_ROUTER_URL: value }, 'http://127.0.0.1:8000')).toThrow(/SIM_CARRIER_ROUTER_URL/);
    }
  });

  it('is bounded: live calls are capped (429 TOO_MANY_CALLS) and only the latest completed calls are remembered', async () => {
    const carrier = new SimCarrier({ baseUrl: base, maxLiveCalls: 2, maxCompletedCalls: 2 });
    documents['/api/v1/twilio/answer'] = () => `<Response><Connect><Stream url="${ws()}/ws/pod/p/x"/></Connect></Response>`;
    const calls = [carrier.placeCall({ provider: 'twilio' }), carrier.placeCall({ provider: 'twilio' })];
    expect(() => carrier.placeCall({ provider: 'twilio' })).toThrow(expect.objectContaining({ status: 429, code: 'TOO_MANY_CALLS' }));
    for (const sid of calls) await carrier.hangUp(sid);
    const more = [carrier.placeCall({ provider: 'twilio' }), carrier.placeCall({ provider: 'twilio' })];
    for (const sid of more) await carrier.hangUp(sid);
    expect(carrier.liveCalls).toBe(0);
    expect(calls.map((sid) => carrier.view(sid))).toEqual([undefined, undefined]);
    expect(more.map((sid) => carrier.view(sid)?.state)).toEqual(['completed', 'completed']);
  });
});
