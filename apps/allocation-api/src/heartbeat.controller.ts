import { Body, Controller } from '@nestjs/common';
import { HeartbeatRequest, HeartbeatResponse, allocationRoutes } from '@smart-router/api-contract';
import { Caller, Callers, Route, scopeOf } from '@smart-router/http';
import { HeartbeatService } from './heartbeat.service';

/** Voice agents say they are alive (SPEC 11); the reconciler's liveness job watches who went silent. */
@Controller()
export class HeartbeatController {
  constructor(private readonly heartbeats: HeartbeatService) {}

  @Route(allocationRoutes.heartbeat)
  @Callers('dispatcher', 'agent')
  heartbeat(@Body() body: HeartbeatRequest, @Caller() caller: Caller): Promise<HeartbeatResponse> {
    return this.heartbeats.record(body, scopeOf(caller));
  }
}
