import { createServer, Server } from 'node:http';
import { connect } from 'node:net';
import { freePort, websocketUpgradeRequest } from '@smart-router/testing';
import { rawErrorResponse } from '@smart-router/http';
import { Gateway } from './gateway';

/**
 * Issue 19 at the gateway (SPEC 10.2): a pod that refuses an upgrade is
 * relayed by http-proxy, which listens for no error on the client's socket;
 * a client that resets then ended the process running the gateway. Here that
 * process is this test's: a crash fails it.
 */

function resetOnAnswer(port: number, request: string, immediately: boolean): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
    socket.once('data', () => socket.resetAndDestroy());
    socket.once('connect', () => socket.write(request, () => (immediately ? socket.resetAndDestroy() : undefined)));
  });
}

describe('the gateway survives clients that reset around a WebSocket upgrade', () => {
  let pods: Server;
  let gateway: Gateway;
  let port: number;

  beforeAll(async () => {
    // A stand-in for the voice agents that refuses every upgrade, a little later (a Redis lookup).
    pods = createServer();
    pods.on('upgrade', (_request, socket) => {
      socket.on('error', () => undefined);
      setImmediate(() => socket.end(rawErrorResponse({ status: 403, code: 'CALL_NOT_ON_POD', message: 'call is not allocated to this pod' })));
    });
    const podsPort = await freePort();
    await new Promise<void>((resolve) => pods.listen(podsPort, '127.0.0.1', resolve));
    const dead = `http://127.0.0.1:${await freePort()}`;
    gateway = new Gateway({ host: '127.0.0.1', port: 0, upstreams: { allocationApi: dead, webhooks: dead, admin: dead, voiceAgents: `http://127.0.0.1:${podsPort}` } });
    port = await gateway.start();
  });

  afterAll(async () => {
    await gateway.stop();
    pods.closeAllConnections();
    await new Promise((resolve) => pods.close(resolve));
  });

  it('refused by the pod, by the gateway itself, or not yet answered: the gateway lives on and answers', async () => {
    for (let round = 0; round < 10; round += 1) {
      await Promise.all([
        resetOnAnswer(port, websocketUpgradeRequest('/ws/pod/voice-agent-0/CA1'), false),
        resetOnAnswer(port, websocketUpgradeRequest('/ws/pod/voice-agent-0/CA1'), true),
        resetOnAnswer(port, websocketUpgradeRequest('/ws/unknown'), false),
        resetOnAnswer(port, websocketUpgradeRequest('/ws/unknown'), true),
        resetOnAnswer(port, 'POST /api/v1/allocate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n{', false),
      ]);
    }
    const answer = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(answer.status).toBe(404);
  });
});
