import { Body, Controller, Get, Headers, HttpCode, Post, Put } from '@nestjs/common';
import { BearerTokens } from '@smart-router/http';
import { AdminFleetService } from './fleet.service';

/** Fleet size and autoscaler (SPEC 9.1). GET needs a viewer token, changes an operator token. */
@Controller('api/v1/admin')
export class FleetController {
  constructor(private readonly fleet: AdminFleetService, private readonly tokens: BearerTokens) {}

  @Get('fleet')
  view(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.fleet.fleetView();
  }

  @Post('fleet/scale')
  @HttpCode(202)
  scale(@Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.fleet.scale(body);
  }

  @Get('autoscaler')
  autoscaler(@Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'viewer');
    return this.fleet.autoscaler();
  }

  @Put('autoscaler')
  putAutoscaler(@Body() body: unknown, @Headers('authorization') auth?: string) {
    this.tokens.authorize(auth, 'operator');
    return this.fleet.putAutoscaler(body);
  }
}
