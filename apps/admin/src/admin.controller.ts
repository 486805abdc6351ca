import { Body, Controller, Headers, Param, Query } from '@nestjs/common';
import { adminRoutes } from '@smart-router/api-contract';
import { isPodName } from '@smart-router/allocation';
import { ApiError, BearerTokens, Route, requireCallId, requireMerchantId } from '@smart-router/http';
import { AdminService } from './admin.service';

function podNameOf(body: unknown): string {
  const name = (body as { pod_name?: unknown } | null)?.pod_name;
  if (name === undefined || name === null || name === '') throw ApiError.badRequest('pod_name is required', 'POD_NAME_REQUIRED');
  if (!isPodName(name)) throw ApiError.badRequest('pod_name must be a DNS-1123 label', 'INVALID_POD_NAME');
  return name;
}

/** SREs' surface (SPEC section 3, Admin). GET needs a viewer token, changes an operator token. */
@Controller()
export class AdminController {
  constructor(private readonly admin: AdminService, private readonly tokens: BearerTokens) {}

  @Route(adminRoutes.status)
  status(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.status();
  }

  @Route(adminRoutes.drain)
  drain(@Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.setDrain(podNameOf(body), true);
  }

  @Route(adminRoutes.undrain)
  undrain(@Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.setDrain(podNameOf(body), false);
  }

  @Route(adminRoutes.pod)
  pod(@Param('name') name: string, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    if (!isPodName(name)) throw ApiError.badRequest('pod name must be a DNS-1123 label', 'INVALID_POD_NAME');
    return this.admin.pod(name);
  }

  @Route(adminRoutes.calls)
  calls(@Query('limit') limit: string | undefined, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    const parsed = limit === undefined ? 1000 : Number(limit);
    if (!Number.isInteger(parsed) || parsed < 1 || parsed > 10000) throw ApiError.badRequest('limit must be an integer 1-10000', 'INVALID_LIMIT');
    return this.admin.calls(parsed);
  }

  @Route(adminRoutes.call)
  call(@Param('call_sid') callSid: string, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.call(requireCallId(callSid));
  }

  @Route(adminRoutes.merchants)
  merchants(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.merchants();
  }

  @Route(adminRoutes.merchant)
  merchant(@Param('merchant_id') id: string, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.merchant(this.merchantId(id));
  }

  @Route(adminRoutes.putMerchant)
  putMerchant(@Param('merchant_id') id: string, @Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.putMerchant(this.merchantId(id), body);
  }

  @Route(adminRoutes.deleteMerchant)
  deleteMerchant(@Param('merchant_id') id: string, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.deleteMerchant(this.merchantId(id));
  }

  @Route(adminRoutes.tiers)
  tiers(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.getTiers();
  }

  @Route(adminRoutes.putTiers)
  putTiers(@Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.putTiers(body);
  }

  @Route(adminRoutes.reconcile)
  reconcile(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.reconcileNow();
  }

  @Route(adminRoutes.invariants)
  invariants(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.invariants();
  }

  private merchantId(id: string): string {
    return requireMerchantId(id);
  }
}
