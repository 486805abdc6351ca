import type { FastifyRequest } from 'fastify';
import { WebhookRequest, createWebhookRequest } from '@smart-router/providers';

/** Nest keeps the body bytes here when the app is created with `rawBody: true`. */
export type RawBodyRequest = FastifyRequest & { rawBody?: Buffer };

/**
 * Turns a Fastify request into the provider-neutral WebhookRequest, with the
 * URL the provider called, which is what Twilio and Plivo sign.
 */
export class WebhookRequestFactory {
  constructor(private readonly publicBaseUrl: string | undefined) {}

  /**
   * PUBLIC_BASE_URL + the original path and query when configured (the
   * reliable choice: proxies may rewrite scheme, host or port). Otherwise the
   * scheme and host Fastify derives, which, with `trustProxy`, come from
   * X-Forwarded-Proto / X-Forwarded-Host set by the gateway, else from the
   * socket and Host. `request.url` is the raw path and query, unnormalised.
   */
  urlOf(request: FastifyRequest): string {
    return this.baseOf(request) + request.url;
  }

  /** The base our own callback URLs are built on: the same one the signature check uses. */
  baseOf(request: FastifyRequest): string {
    return this.publicBaseUrl ?? `${request.protocol}://${request.host}`;
  }

  from(request: RawBodyRequest): WebhookRequest {
    return createWebhookRequest({ method: request.method, url: this.urlOf(request), headers: request.headers, rawBody: request.rawBody });
  }
}
