import { createServer, Server } from 'node:http';
import { WebSocket } from 'ws';
import { jsonError, rawHttpExchange, waitFor, websocketUpgradeRequest } from '@smart-router/testing';
import { SimulatedVoiceAgents, VoiceAgentsOptions } from './voice-agents';

// The simulated voice-agent pods: JSON for every refusal (issue 14), and a
// release that outlives an allocation-api outage. The stack test
// (tools/stack/src/supervisor.e2e.spec.ts) runs the same through the real app.

function agents(options: Partial<VoiceAgentsOptions>): SimulatedVoiceAgents {
  return new SimulatedVoiceAgents({ host: '127.0.0.1', port: 0, allocationApiUrl: 'http://127.0.0.1:1', podOfCall: async () => null, podExists: () => false, ...options });
}

describe('simulated voice agents', () => {
  it('answer an oversized request line and a refused upgrade with JSON', async () => {
    const server = agents({});
    const port = await server.start();
    try {
      expect(await rawHttpExchange(port, `GET /ws/pod/${'a'.repeat(20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`)).toMatchObject(jsonError(431, 'HEADERS_TOO_LARGE'));
      expect(await rawHttpExchange(port, websocketUpgradeRequest('/ws/pod/voice-agent-0/c1'))).toMatchObject(jsonError(404, 'POD_NOT_FOUND'));
      expect(await rawHttpExchange(port, websocketUpgradeRequest('/elsewhere'))).toMatchObject(jsonError(404, 'NOT_FOUND'));
      // The oversized request never parsed: two upgrades reached the agents.
      expect(server.upgrades).toBe(2);
    } finally {
      await server.stop();
    }
  });

  it('take the signed media path (SPEC 10.1) as well as the seed one, for the call on that pod only', async () => {
    const server = agents({ podExists: () => true, podOfCall: async (callSid) => (callSid === 'call-9' ? 'voice-agent-0' : null) });
    const port = await server.start();
    const open = (path: string) => new Promise<unknown>((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}${path}`);
      socket.once('message', (data) => {
        socket.terminate();
        resolve(JSON.parse(String(data)));
      });
      socket.once('unexpected-response', (_request, response) => reject(new Error(`refused ${response.statusCode}`)));
      socket.once('error', reject);
    });
    try {
      const greeting = { event: 'connected', pod: 'voice-agent-0', call_sid: 'call-9' };
      expect(await open('/ws/pod/voice-agent-0/call-9/42/1767268920/q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c')).toEqual(greeting);
      expect(await open('/ws/pod/voice-agent-0/call-9')).toEqual(greeting);
      await expect(open('/ws/pod/voice-agent-1/call-9/42/1767268920/abc')).rejects.toThrow('refused 403');
    } finally {
      await server.stop();
    }
  });

  it("answer a provider's stream in its own shape (SPEC 11): Twilio media with the streamSid, Plivo playAudio; a plain socket is echoed", async () => {
    const server = agents({ podExists: () => true, podOfCall: async () => 'voice-agent-0', releaseRetry: { giveUpAfterMs: 0 } });
    const port = await server.start();
    /** Opens a socket, sends `messages` after the greeting, resolves with the first answer to the last one. */
    const exchange = (callSid: string, messages: unknown[]) => new Promise<unknown>((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/ws/pod/voice-agent-0/${callSid}`);
      socket.once('message', () => {
        socket.once('message', (data) => {
          socket.terminate();
          resolve(JSON.parse(String(data)));
        });
        for (const message of messages) socket.send(JSON.stringify(message));
      });
      socket.once('error', reject);
    });
    const media = { event: 'media', media: { track: 'inbound', payload: '//8=' } };
    try {
      expect(await exchange('CA1', [{ event: 'connected', protocol: 'Call' }, { event: 'start', streamSid: 'MZ1', start: { callSid: 'CA1' } }, { ...media, streamSid: 'MZ1' }]))
        .toEqual({ event: 'media', streamSid: 'MZ1', media: { payload: '//8=' } });
      expect(await exchange('plivo-1', [{ event: 'start', start: { callId: 'plivo-1', streamId: 'S1' } }, { ...media, streamId: 'S1' }]))
        .toEqual({ event: 'playAudio', media: { contentType: 'audio/x-mulaw', sampleRate: 8000, payload: '//8=' } });
      expect(await exchange('plain-1', [{ event: 'media' }])).toEqual({ event: 'media' });
    } finally {
      await server.stop();
    }
  });

  describe('release after the socket closes', () => {
    let api: Server | null;
    let owner: string | null;
    const answers: number[] = [];

    /** A release endpoint that answers `status` (0 = not listening at all). */
    async function releaseEndpoint(status: () => number): Promise<number> {
      api = createServer((request, response) => {
        request.resume();
        // The agent also reports the call connected when its socket opens (SPEC 9.2): not a release.
        if (request.url === '/api/v1/connected') return void response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        answers.push(status());
        response.writeHead(status(), { 'content-type': 'application/json' }).end('{}');
      });
      await new Promise<void>((resolve) => api!.listen(0, '127.0.0.1', resolve));
      const address = api.address();
      return typeof address === 'object' && address ? address.port : 0;
    }

    async function closedCall(server: SimulatedVoiceAgents): Promise<void> {
      const port = await server.start();
      const socket = new WebSocket(`ws://127.0.0.1:${port}/ws/pod/voice-agent-0/call-1`);
      await new Promise((resolve, reject) => socket.once('message', resolve).once('error', reject));
      socket.close();
    }

    beforeEach(() => {
      api = null;
      owner = 'voice-agent-0';
      answers.length = 0;
    });
    afterEach(async () => {
      await new Promise((resolve) => (api ? api.close(resolve) : resolve(undefined)));
    });

    it('retries through several seconds of 503s (longer than the old 3 s) and then releases', async () => {
      let down = true;
      const port = await releaseEndpoint(() => (down ? 503 : 200));
      const server = agents({ allocationApiUrl: `http://127.0.0.1:${port}`, podExists: () => true, podOfCall: async () => owner, releaseRetry: { firstDelayMs: 100, maxDelayMs: 800 } });
      const started = Date.now();
      try {
        await closedCall(server);
        await waitFor(() => Date.now() - started > 4000 && server.releaseRetries >= 6, { timeoutMs: 15000, intervalMs: 50, what: 'retries through the outage' });
        expect(server.releases).toBe(0);
        down = false;
        await waitFor(() => server.releases === 1, { timeoutMs: 5000, what: 'the release once the API is back' });
        expect(answers[answers.length - 1]).toBe(200);
      } finally {
        await server.stop();
      }
    });

    it('stops retrying once the call is no longer its own (status callback or reaper freed it)', async () => {
      const port = await releaseEndpoint(() => 503);
      const server = agents({ allocationApiUrl: `http://127.0.0.1:${port}`, podExists: () => true, podOfCall: async () => owner, releaseRetry: { firstDelayMs: 50, maxDelayMs: 100 } });
      try {
        await closedCall(server);
        await waitFor(() => server.releaseRetries >= 2, { timeoutMs: 5000, what: 'a few retries' });
        owner = null;
        await waitFor(() => server.releasesAbandoned === 1, { timeoutMs: 5000, what: 'the retries to stop' });
        const attempts = answers.length;
        expect(server.releases).toBe(0);
        // No attempt after giving up (polled over several retry periods).
        await expect(waitFor(() => answers.length > attempts, { timeoutMs: 500, intervalMs: 50, what: 'another attempt' })).rejects.toThrow();
      } finally {
        await server.stop();
      }
    });

    it("sends its pod's token, and nothing at all once the pod is gone (a dead token would get 401; anonymous it would pass in open mode)", async () => {
      const seen: { url: string; authorization: string | undefined }[] = [];
      api = createServer((request, response) => {
        request.resume();
        seen.push({ url: request.url ?? '', authorization: request.headers.authorization });
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
      await new Promise<void>((resolve) => api!.listen(0, '127.0.0.1', resolve));
      const address = api.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      let token: string | null = 'pod-token';
      const server = agents({ allocationApiUrl: `http://127.0.0.1:${port}`, podExists: () => true, podOfCall: async () => owner, agentToken: async () => token });
      try {
        await closedCall(server);
        await waitFor(() => server.releases === 1, { timeoutMs: 5000, what: 'the release with the pod token' });
        expect(seen.map((request) => request.authorization)).toEqual(seen.map(() => 'Bearer pod-token'));
        expect(seen.map((request) => request.url)).toContain('/api/v1/release');

        seen.length = 0;
        token = null;
        await closedCall(server);
        await expect(waitFor(() => seen.length > 0, { timeoutMs: 800, intervalMs: 50, what: 'a request without a token' })).rejects.toThrow();
        expect(server.releases).toBe(1);
      } finally {
        await server.stop();
      }
    });

    it('stops at once on 404 (already released) and 409, and gives up after its window', async () => {
      for (const status of [404, 409]) {
        answers.length = 0;
        const port = await releaseEndpoint(() => status);
        const server = agents({ allocationApiUrl: `http://127.0.0.1:${port}`, podExists: () => true, podOfCall: async () => owner });
        try {
          await closedCall(server);
          await waitFor(() => server.releases === 1, { timeoutMs: 5000, what: `release settled by ${status}` });
          expect({ status, attempts: answers.length, retries: server.releaseRetries }).toEqual({ status, attempts: 1, retries: 0 });
        } finally {
          await server.stop();
          await new Promise((resolve) => api!.close(resolve));
          api = null;
        }
      }
      const down = agents({ allocationApiUrl: 'http://127.0.0.1:1', podExists: () => true, podOfCall: async () => owner, releaseRetry: { firstDelayMs: 50, maxDelayMs: 100, giveUpAfterMs: 600 } });
      try {
        await closedCall(down);
        await waitFor(() => down.releasesAbandoned === 1, { timeoutMs: 5000, what: 'giving up after the window' });
        expect(down.releaseRetries).toBeGreaterThanOrEqual(3);
      } finally {
        await down.stop();
      }
    });
  });
});
