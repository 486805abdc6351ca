import { createServer, IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type Redis from 'ioredis';
import { WS_PATH } from '@smart-router/allocation';
import { SmartRouterClient } from '@smart-router/client';
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
}


/**
 * Stands in for the voice-agent pods' WebSocket endpoint: accepts
 * `/ws/pod/{pod}/{call_sid}` only for a call allocated to that pod, and
 * releases the call through the API when the socket closes (the real voice
 * agent's `finally` block).
 */
export class SimulatedVoiceAgents {
  private server: Server | null = null;
  private readonly wss = new WebSocketServer({ noServer: true });
  readonly open = new Map<string, WebSocket>();
  releases = 0;

  private readonly client: SmartRouterClient;

  constructor(private readonly options: VoiceAgentsOptions) {
    this.client = new SmartRouterClient(options.allocationApiUrl);
  }

  async start(): Promise<number> {
    const server = createServer((_request, response) => {
      response.writeHead(426, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'websocket upgrade required', code: 'UPGRADE_REQUIRED' }));
    });
    server.on('upgrade', (request, socket, head) => void this.onUpgrade(request, socket, head));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(this.options.port, this.options.host, resolve));
    const address = server.address();
    return typeof address === 'object' && address ? address.port : this.options.port;
  }

  async stop(): Promise<void> {
    for (const socket of this.open.values()) socket.terminate();
    const server = this.server;
    this.server = null;
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  private refuse(socket: Duplex, status: number, reason: string): void {
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  }

  private async onUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const match = WS_PATH.exec(new URL(request.url ?? '/', 'http://agents').pathname);
    if (!match) return this.refuse(socket, 404, 'Not Found');
    const [, pod, , callSid] = match;
    if (!this.options.podExists(pod)) return this.refuse(socket, 404, 'Not Found');
    let owner: string | null;
    try {
      owner = await this.options.podOfCall(callSid);
    } catch {
      return this.refuse(socket, 503, 'Service Unavailable');
    }
    if (owner !== pod) return this.refuse(socket, 403, 'Forbidden');
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      const key = `${pod}/${callSid}`;
      this.open.set(key, ws);
      ws.send(JSON.stringify({ event: 'connected', pod, call_sid: callSid }));
      ws.on('message', (data) => ws.send(data));
      ws.on('close', () => {
        this.open.delete(key);
        void this.release(callSid);
      });
    });
  }

  /**
   * Like the real agent: 200 or 404 (already released) is done; a 5xx or a
   * refused connection (a restart, Redis down) is retried a few times, after
   * which the status callback or the stale-call reaper releases it.
   */
  private async release(callSid: string): Promise<void> {
    for (let attempt = 1; attempt <= 5; attempt += 1) {
      const status = await this.client.release({ call_sid: callSid, reason: 'websocket_closed' }).then((answer) => answer.status, () => 0);
      if (status === 200 || status === 404) {
        this.releases += 1;
        return;
      }
      if (status !== 0 && status < 500) return;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}
