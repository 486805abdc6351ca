import { connect } from 'node:net';
import { freePort, jsonError, rawHttpExchange, waitFor, websocketUpgradeRequest } from '@smart-router/testing';
import { Gateway } from './gateway';

// SPEC 10.1 at the local gateway, the parts no running allocation-api is
// needed for (the whole path is tools/stack/src/media-url.e2e.spec.ts): the
// media check fails closed, and a client gone while it runs harms nothing.

const SIGNED = '/ws/pod/voice-agent-1/CA1/42/1767268920/q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c';

describe('the gateway media check (mediaAuth on)', () => {
  let gateway: Gateway;
  let port: number;

  beforeAll(async () => {
    // Nothing listens on these: allocation-api cannot answer the check, and no pod is reachable.
    const dead = `http://127.0.0.1:${await freePort()}`;
    gateway = new Gateway({ host: '127.0.0.1', port: 0, upstreams: { allocationApi: [dead, dead], webhooks: dead, admin: dead, voiceAgents: dead }, mediaAuth: true });
    port = await gateway.start();
  });
  afterAll(() => gateway.stop());

  it('refuses the upgrade (503, JSON) when allocation-api cannot answer: fail closed', async () => {
    expect(await rawHttpExchange(port, websocketUpgradeRequest(SIGNED))).toMatchObject(jsonError(503, 'SERVICE_UNAVAILABLE'));
    expect(await rawHttpExchange(port, websocketUpgradeRequest('/ws/pod/voice-agent-1/CA1'))).toMatchObject(jsonError(503, 'SERVICE_UNAVAILABLE'));
    // Malformed paths are still the router's 404 before any check.
    expect(await rawHttpExchange(port, websocketUpgradeRequest('/ws/pod/voice-agent-1/CA1/42'))).toMatchObject(jsonError(404, 'NOT_FOUND'));
  });

  it('survives clients that reset their socket while the check runs', async () => {
    for (let index = 0; index < 20; index += 1) {
      await new Promise<void>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write(websocketUpgradeRequest(SIGNED));
          // RST instead of FIN, mid-check.
          setImmediate(() => {
            socket.resetAndDestroy();
            resolve();
          });
        });
        socket.on('error', () => resolve());
      });
    }
    // Still serving, and still refusing.
    await waitFor(async () => (await rawHttpExchange(port, websocketUpgradeRequest(SIGNED))).status === 503, { what: 'the gateway still answering' });
  });
});
