import { Controller } from '@nestjs/common';
import { adminRoutes, openApiDocument, operationalRoutes } from '@smart-router/api-contract';
import { Route } from '@smart-router/http';

/** The admin API's contract (SPEC section 3, Admin), built from the route contracts it serves. */
export const ADMIN_OPENAPI = openApiDocument(
  { title: 'Smart Router admin API', version: '1.0.0', description: 'GET needs a viewer or operator token; changes need an operator token (when tokens are configured).' },
  [...Object.values(adminRoutes), ...Object.values(operationalRoutes)],
);

@Controller()
export class OpenApiController {
  @Route(operationalRoutes.openapi)
  document() {
    return ADMIN_OPENAPI;
  }
}
