import { Body, Controller, Get, Headers, HttpCode, Post, Put } from '@nestjs/common';
import { BearerTokens } from '@smart-router/http';
import { AdminRolloutService } from './rollout.service';

/** The split between agent versions (SPEC 12). GET needs a viewer token, changes an operator token. */
@Controller('api/v1/admin')
export class RolloutController {
  constructor(private readonly rollout: AdminRolloutService, private readonly tokens: BearerTokens) {}

  @Get('rollout')
  view(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.rollout.view();
  }

  @Put('rollout')
  put(@Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.rollout.put(body);
  }

  @Post('rollout/promote')
  @HttpCode(200)
  promote(@Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.rollout.promote(body);
  }

  @Post('rollout/rollback')
  @HttpCode(200)
  rollback(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.rollout.rollback();
  }
}
