import { freePort, jsonError, rawHttpExchange, websocketUpgradeRequest } from '@smart-router/testing';
import { Gateway } from './gateway';

// Issue 14: Node answers an oversized request line with a bare 431 before any
// routing; every server we run answers JSON `{error, code}` instead.

const OVERSIZED = `GET /api/v1/pod/${'a'.repeat(20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`;

describe('the gateway: JSON for errors raised before routing', () => {
  it('answers an oversized request line, a malformed request, a missing Host and a refused upgrade with JSON', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const gateway = new Gateway({ host: '127.0.0.1', port: 0, upstreams: { allocationApi: dead, webhooks: dead, admin: dead, voiceAgents: dead } });
    const port = await gateway.start();
    try {
      expect(await rawHttpExchange(port, OVERSIZED)).toMatchObject(jsonError(431, 'HEADERS_TOO_LARGE'));
      expect(await rawHttpExchange(port, `GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20 * 1024)}\r\n\r\n`)).toMatchObject(jsonError(431, 'HEADERS_TOO_LARGE'));
      expect(await rawHttpExchange(port, 'NOT A REQUEST\r\n\r\n')).toMatchObject(jsonError(400, 'INVALID_REQUEST'));
      expect(await rawHttpExchange(port, 'GET /api/v1/status HTTP/1.1\r\nConnection: close\r\n\r\n')).toMatchObject(jsonError(400, 'INVALID_REQUEST', 'Host header required'));
      expect(await rawHttpExchange(port, websocketUpgradeRequest('/api/v1/status'))).toMatchObject(jsonError(404, 'NOT_FOUND'));
    } finally {
      await gateway.stop();
    }
  });
});
