import { Body, Controller, Headers, HttpCode, Post } from '@nestjs/common';
import { BearerTokens } from '@smart-router/http';
import { CallAllocator } from '@smart-router/pool-state';
import { parseAllocateBody, parseConnectedBody, parseReleaseBody } from './allocation.dto';

/** The hot path: voice agents allocate and release pods over JSON (SPEC section 3). */
@Controller('api/v1')
export class AllocationController {
  constructor(private readonly allocator: CallAllocator, private readonly tokens: BearerTokens) {}

  @Post('allocate')
  @HttpCode(200)
  async allocate(@Body() raw: unknown, @Headers('authorization') authorization?: string) {
    this.tokens.authorize(authorization, 'operator');
    const body = parseAllocateBody(raw);
    const call = await this.allocator.allocate({ ...body, refuseTombstoned: false });
    return {
      success: true,
      pod_name: call.podName,
      ws_url: call.wsUrl,
      source_pool: call.sourcePool,
      was_existing: call.wasExisting,
      allocation_id: call.allocationId,
      state: call.state,
    };
  }

  @Post('release')
  @HttpCode(200)
  async release(@Body() raw: unknown, @Headers('authorization') authorization?: string) {
    this.tokens.authorize(authorization, 'operator');
    const body = parseReleaseBody(raw);
    const released = await this.allocator.release(body.callSid, body.reason, body.allocationId);
    return {
      success: true,
      pod_name: released.podName,
      released_to_pool: released.releasedToPool,
      was_draining: released.wasDraining,
    };
  }

  /** The voice agent's socket opened (SPEC 9.2): the call is connected and keeps its pod past the connect deadline. */
  @Post('connected')
  @HttpCode(200)
  async connected(@Body() raw: unknown, @Headers('authorization') authorization?: string) {
    this.tokens.authorize(authorization, 'operator');
    const body = parseConnectedBody(raw);
    const connection = await this.allocator.connect(body.callSid, 'api', body.allocationId);
    return {
      success: true,
      call_sid: body.callSid,
      pod_name: connection.podName,
      allocation_id: connection.allocationId,
      state: 'connected',
      connected_at: connection.connectedAt,
      was_connected: connection.wasConnected,
    };
  }
}
