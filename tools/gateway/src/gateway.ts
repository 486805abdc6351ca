import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { Upstreams, route } from './routes';

export interface GatewayOptions {
  host: string;
  port: number;
  upstreams: Upstreams;
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

/**
 * The local stack's stand-in for the nginx router: HTTP and WebSocket
 * upgrades proxied by path. X-Forwarded-* headers carry the URL the provider
 * called, which Twilio signature checks need.
 */
export class Gateway {
  private readonly proxy = httpProxy.createProxyServer({ xfwd: true, ws: true, proxyTimeout: 30000 });
  private server: Server | null = null;

  constructor(private readonly options: GatewayOptions) {
    this.proxy.on('error', (_error, _request, target) => {
      if (target instanceof ServerResponse) {
        if (!target.headersSent) sendJson(target, 502, { error: 'upstream unavailable', code: 'BAD_GATEWAY' });
        else target.end();
      } else {
        (target as Duplex | undefined)?.destroy();
      }
    });
  }

  async start(): Promise<number> {
    const server = createServer((request, response) => this.onRequest(request, response));
    server.on('upgrade', (request, socket, head) => this.onUpgrade(request, socket, head));
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
    const pathname = new URL(request.url ?? '/', 'http://gateway').pathname;
    const decision = route(pathname);
    if ('status' in decision) return sendJson(response, decision.status, decision.body);
    this.proxy.web(request, response, { target: this.options.upstreams[decision.upstream] });
  }

  private onUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const pathname = new URL(request.url ?? '/', 'http://gateway').pathname;
    const decision = route(pathname);
    if ('status' in decision || decision.upstream !== 'voiceAgents') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.proxy.ws(request, socket, head, { target: this.options.upstreams.voiceAgents });
  }
}
