import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  contentType: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  json: unknown;
  /** JSON content type and a body of exactly `{error: string, code: string}`. */
  errorShape: boolean;
}

/**
 * One raw HTTP exchange on a fresh connection: writes `request` as is and
 * parses what the server sent until it closed. For what fetch refuses to send
 * (oversized request lines, malformed requests, upgrades).
 */
export function rawHttpExchange(port: number, request: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(parseRawResponse(Buffer.concat(chunks).toString('utf8'))));
  });
}

function parseRawResponse(text: string): RawResponse {
  const split = text.indexOf('\r\n\r\n');
  const head = split < 0 ? text : text.slice(0, split);
  const body = split < 0 ? '' : text.slice(split + 4);
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  const contentType = /\r\ncontent-type: *([^\r\n]*)/i.exec(head)?.[1] ?? '';
  const fields = json && typeof json === 'object' ? (json as Record<string, unknown>) : {};
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0),
    contentType,
    json,
    errorShape: contentType.startsWith('application/json') && Object.keys(fields).sort().join() === 'code,error' && typeof fields.error === 'string' && typeof fields.code === 'string',
  };
}

/** For `toMatchObject`: what every server we run answers for an error, JSON `{error, code}`. */
export function jsonError(status: number, code: string, error?: string): Partial<RawResponse> {
  return { status, errorShape: true, json: error === undefined ? { code } : { error, code } };
}

/** A WebSocket handshake request for `path`, as raw HTTP. */
export function websocketUpgradeRequest(path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
}
