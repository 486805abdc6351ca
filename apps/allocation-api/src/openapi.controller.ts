import { Controller } from '@nestjs/common';
import { allocationRoutes, allocationSecuritySchemes, mediaAuthRoutes, openApiDocument, operationalRoutes } from '@smart-router/api-contract';
import { Route } from '@smart-router/http';

/** The allocation API's contract (SPEC section 3), built from the route contracts it serves. */
export const ALLOCATION_OPENAPI = openApiDocument(
  { title: 'Smart Router allocation API', version: '1.0.0' },
  [...Object.values(allocationRoutes), ...Object.values(mediaAuthRoutes), ...Object.values(operationalRoutes)],
  allocationSecuritySchemes,
);

@Controller()
export class OpenApiController {
  @Route(operationalRoutes.openapi)
  document() {
    return ALLOCATION_OPENAPI;
  }
}
