import { Body, Controller, Delete, Get, Headers, HttpCode, Param, Post, Put, Query } from '@nestjs/common';
import { isPodName } from '@smart-router/allocation';
import { ApiError, BearerTokens, requireCallId, requireMerchantId } from '@smart-router/http';
import { AdminService } from './admin.service';

function podNameOf(body: unknown): string {
  const name = (body as { pod_name?: unknown } | null)?.pod_name;
  if (name === undefined || name === null || name === '') throw ApiError.badRequest('pod_name is required', 'POD_NAME_REQUIRED');
  if (!isPodName(name)) throw ApiError.badRequest('pod_name must be a DNS-1123 label', 'INVALID_POD_NAME');
  return name;
}

/** SREs' surface (SPEC section 3, Admin). GET needs a viewer token, changes an operator token. */
@Controller('api/v1')
export class AdminController {
  constructor(private readonly admin: AdminService, private readonly tokens: BearerTokens) {}

  @Get('status')
  status(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.status();
  }

  @Post('drain')
  @HttpCode(200)
  drain(@Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.setDrain(podNameOf(body), true);
  }

  @Post('undrain')
  @HttpCode(200)
  undrain(@Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.setDrain(podNameOf(body), false);
  }

  @Get('pod/:name')
  pod(@Param('name') name: string, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    if (!isPodName(name)) throw ApiError.badRequest('pod name must be a DNS-1123 label', 'INVALID_POD_NAME');
    return this.admin.pod(name);
  }

  @Get('admin/calls')
  calls(@Query('limit') limit: string | undefined, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    const parsed = limit === undefined ? 1000 : Number(limit);
    if (!Number.isInteger(parsed) || parsed < 1 || parsed > 10000) throw ApiError.badRequest('limit must be an integer 1-10000', 'INVALID_LIMIT');
    return this.admin.calls(parsed);
  }

  @Get('admin/calls/:callSid')
  call(@Param('callSid') callSid: string, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.call(requireCallId(callSid));
  }

  @Get('admin/merchants')
  merchants(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.merchants();
  }

  @Get('admin/merchants/:id')
  merchant(@Param('id') id: string, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.merchant(this.merchantId(id));
  }

  @Put('admin/merchants/:id')
  putMerchant(@Param('id') id: string, @Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.putMerchant(this.merchantId(id), body);
  }

  @Delete('admin/merchants/:id')
  deleteMerchant(@Param('id') id: string, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.deleteMerchant(this.merchantId(id));
  }

  @Get('admin/tiers')
  tiers(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.getTiers();
  }

  @Put('admin/tiers')
  putTiers(@Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.putTiers(body);
  }

  @Post('admin/reconcile')
  @HttpCode(202)
  reconcile(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.admin.reconcileNow();
  }

  @Get('admin/invariants')
  invariants(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.admin.invariants();
  }

  private merchantId(id: string): string {
    return requireMerchantId(id);
  }
}
