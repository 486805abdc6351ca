import { Controller } from '@nestjs/common';
import { openApiDocument, operationalRoutes, webhookRoutes, webhookSecuritySchemes } from '@smart-router/api-contract';
import { Route } from '@smart-router/http';

/** The webhooks' contract (SPEC section 5), built from the route contracts in @smart-router/api-contract. */
export const WEBHOOKS_OPENAPI = openApiDocument(
  { title: 'Smart Router provider webhooks', version: '1.0.0' },
  [...webhookRoutes, ...Object.values(operationalRoutes)],
  webhookSecuritySchemes,
);

@Controller()
export class OpenApiController {
  @Route(operationalRoutes.openapi)
  document() {
    return WEBHOOKS_OPENAPI;
  }
}
