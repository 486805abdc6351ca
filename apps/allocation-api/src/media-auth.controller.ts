import { Controller, Headers, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { ORIGINAL_URI_HEADER, mediaAuthRoutes } from '@smart-router/api-contract';
import { Route } from '@smart-router/http';
import { MediaUrls, PoolMetrics, guardStore } from '@smart-router/pool-state';

/** One answer for every refusal: the edge says only "403", and so do we (no hint which part was wrong). */
const REFUSED = Object.freeze({ error: 'media URL refused', code: 'MEDIA_URL_REFUSED' });

/**
 * The edge's question before a media WebSocket upgrade (SPEC 10.1): nginx's
 * `auth_request` and the local gateway ask it with the client's original URI.
 * Who may call it is declared on its contract (mediaAuthRoutes: the edge, no
 * token, yes/no only). A Redis error is a 503, which every edge treats as a
 * refusal: fail closed.
 */
@Controller()
export class MediaAuthController {
  constructor(private readonly media: MediaUrls, private readonly metrics: PoolMetrics) {}

  @Route(mediaAuthRoutes.mediaAuth)
  async check(@Headers(ORIGINAL_URI_HEADER) originalUri: string | undefined, @Res() reply: FastifyReply): Promise<void> {
    const allowed = await guardStore(this.metrics, 'media_auth', () => this.media.authorize(originalUri));
    if (allowed) {
      void reply.code(204).send();
      return;
    }
    this.metrics.httpError(403, REFUSED.code);
    void reply.code(403).send(REFUSED);
  }
}
