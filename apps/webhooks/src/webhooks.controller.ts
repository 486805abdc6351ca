import { Controller, HttpCode, Param, Post, Req, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { webhookRoutes } from '@smart-router/api-contract';
import { AcceptsBody } from '@smart-router/http';
import { ProviderRegistry } from './provider-registry';
import { RawBodyRequest, WebhookRequestFactory } from './webhook-request.factory';
import { StatusAnswer, StreamStatusAnswer, WebhooksService } from './webhooks.service';

/**
 * Answer webhook paths. `/api/v1/{provider}/allocate` is the Go router's; the
 * breeze-buddy form is what voice agents configure as the provider's answer
 * URL (SPEC section 2), reaching this app unchanged through the gateway. The
 * template segment is optional and only recorded.
 */
export const ANSWER_PATHS = [
  'api/v1/:provider/allocate',
  'api/v1/:provider/answer',
  'api/v1/:provider/answer/:template',
  'agent/voice/breeze-buddy/:provider/callback',
  // A wildcard, not `:template`: the template may be empty (`.../callback/?merchant_id=...`),
  // and Nest sends a request with an empty named parameter to the not-found handler.
  'agent/voice/breeze-buddy/:provider/callback/*',
];

/**
 * The bodies providers post (their contracts' `bodyContentTypes`: forms, and JSON for
 * Exotel). One route serves every provider, so it takes their union; each adapter
 * reads only its own provider's format (Twilio and Plivo fields only from forms).
 */
const PROVIDER_BODY_TYPES = [...new Set(webhookRoutes.flatMap((route) => route.bodyContentTypes ?? []))];

/** Provider webhooks (SPEC section 5): who calls. What happens is in WebhooksService. */
@Controller()
export class WebhooksController {
  constructor(
    private readonly webhooks: WebhooksService,
    private readonly providers: ProviderRegistry,
    private readonly requests: WebhookRequestFactory,
  ) {}

  @Post(ANSWER_PATHS)
  @AcceptsBody(PROVIDER_BODY_TYPES)
  async answer(
    @Param() params: Record<string, string | undefined>,
    @Req() request: RawBodyRequest,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    const template = params.template || params['*'] || undefined;
    const document = await this.webhooks.answer(this.providers.get(params.provider ?? ''), this.requests.from(request), template, this.requests.baseOf(request));
    if (document.headers) void reply.headers(document.headers);
    void reply.status(document.status).header('content-type', document.contentType).send(document.body);
  }

  @Post('api/v1/:provider/status')
  @AcceptsBody(PROVIDER_BODY_TYPES)
  @HttpCode(200)
  status(@Param('provider') provider: string, @Req() request: RawBodyRequest): Promise<StatusAnswer> {
    return this.webhooks.status(this.providers.get(provider), this.requests.from(request), 'status');
  }

  /** Plivo's hangup URL: called once when the call ends (404 for providers without one). */
  @Post('api/v1/:provider/hangup')
  @AcceptsBody(PROVIDER_BODY_TYPES)
  @HttpCode(200)
  hangup(@Param('provider') provider: string, @Req() request: RawBodyRequest): Promise<StatusAnswer> {
    return this.webhooks.status(this.providers.get(provider), this.requests.from(request), 'hangup');
  }

  /** SPEC 11 re-home: Twilio's `<Connect action>` / Plivo's `<Redirect>` when a stream ends (404 for Exotel). */
  @Post('api/v1/:provider/stream-ended')
  @AcceptsBody(PROVIDER_BODY_TYPES)
  async streamEnded(@Param('provider') provider: string, @Req() request: RawBodyRequest, @Res() reply: FastifyReply): Promise<void> {
    const document = await this.webhooks.streamEnded(this.providers.get(provider), this.requests.from(request), this.requests.baseOf(request));
    void reply.status(document.status).header('content-type', document.contentType).send(document.body);
  }

  /** Media-stream status callbacks our answer documents ask for (SPEC 9.2; 404 for Exotel, which has none). */
  @Post('api/v1/:provider/stream-status')
  @AcceptsBody(PROVIDER_BODY_TYPES)
  @HttpCode(200)
  streamStatus(@Param('provider') provider: string, @Req() request: RawBodyRequest): Promise<StreamStatusAnswer> {
    return this.webhooks.streamStatus(this.providers.get(provider), this.requests.from(request));
  }
}
