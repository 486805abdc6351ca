import type { Server } from 'node:net';
import type { Duplex } from 'node:stream';

const GUARDED = new WeakSet<Duplex>();

/**
 * SPEC 10.2 "No listener dies of its client". An `error` event that nobody
 * listens for throws, and ends the whole process. Node's HTTP server listens
 * for a socket's errors only until it hands the socket to an `upgrade` handler,
 * and http-proxy adds no listener when the upstream refuses an upgrade; so a
 * client that resets its connection during or right after an upgrade killed
 * the process that owned the socket (issue 19: the `npm start` stack, with its
 * gateway, simulated cluster and supervisor). A reset is the client's business:
 * the socket is destroyed and forgotten. Idempotent (one listener per socket).
 */
export function guardSocket<T extends Duplex>(socket: T): T {
  if (!GUARDED.has(socket)) {
    GUARDED.add(socket);
    socket.on('error', () => socket.destroy());
  }
  return socket;
}

/**
 * Guards every connection a server accepts, from its first byte to its last,
 * whatever later owns it (an upgrade handler, a WebSocket library, a proxy).
 * Call it before `listen`.
 */
export function guardServer<T extends Server>(server: T): T {
  server.on('connection', (socket: Duplex) => guardSocket(socket));
  return server;
}
