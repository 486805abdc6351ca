import { Body, Controller, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { AllocateRequest, AllocateResponse, ConnectedRequest, ConnectedResponse, MAX_METADATA_BYTES, ReleaseRequest, ReleaseResponse, allocationRoutes } from '@smart-router/api-contract';
import { ApiError, Caller, Callers, Route, scopeOf } from '@smart-router/http';
import { CallAllocator, PoolMetrics, Refusal } from '@smart-router/pool-state';
import { allocationIdOf } from './allocation-id';

/**
 * The hot path: dispatchers allocate, voice agents connect and release over
 * JSON (SPEC section 3). Bodies arrive validated by their route schema and
 * answers leave serialized by it; refusals (503 no pod, 404 unknown call) are
 * written straight to the reply, counted, never thrown nor logged. Who may
 * call is declared per route (SPEC 10.1); the caller's scope (its merchants,
 * an agent's own pod) is enforced by the allocator, atomically with the change.
 */
@Controller()
export class AllocationController {
  constructor(private readonly allocator: CallAllocator, private readonly metrics: PoolMetrics) {}

  @Route(allocationRoutes.allocate)
  @Callers('dispatcher')
  async allocate(@Body() body: AllocateRequest, @Caller() caller: Caller, @Res() reply: FastifyReply): Promise<void> {
    let metadata = '';
    if (body.metadata !== undefined && body.metadata !== null) {
      metadata = JSON.stringify(body.metadata);
      if (Buffer.byteLength(metadata) > MAX_METADATA_BYTES) throw ApiError.badRequest(`metadata must be at most ${MAX_METADATA_BYTES} bytes of JSON`, 'INVALID_FIELD');
    }
    const outcome = await this.allocator.tryAllocate({
      callSid: body.call_sid,
      merchantId: body.merchant_id ?? body.reseller_id ?? '',
      provider: body.provider ?? '',
      metadata,
      refuseTombstoned: false,
      waitMs: body.wait_ms ?? 0,
      caller: body.caller ?? '',
    }, scopeOf(caller));
    if (!outcome.ok) return this.refuse(reply, outcome.refusal);
    const call = outcome.value;
    const answer: AllocateResponse = {
      success: true, pod_name: call.podName, ws_url: call.wsUrl, source_pool: call.sourcePool, was_existing: call.wasExisting,
      allocation_id: call.allocationId, state: call.state, agent_version: call.agentVersion ?? '',
    };
    void reply.send(answer);
  }

  @Route(allocationRoutes.release)
  @Callers('dispatcher', 'agent')
  async release(@Body() body: ReleaseRequest, @Caller() caller: Caller, @Res() reply: FastifyReply): Promise<void> {
    const outcome = await this.allocator.tryRelease(body.call_sid, body.reason ?? '', allocationIdOf(body.allocation_id), scopeOf(caller));
    if (!outcome.ok) return this.refuse(reply, outcome.refusal);
    const released = outcome.value;
    const answer: ReleaseResponse = { success: true, pod_name: released.podName, released_to_pool: released.releasedToPool, was_draining: released.wasDraining };
    void reply.send(answer);
  }

  /** The voice agent's socket opened (SPEC 9.2): the call is connected and keeps its pod past the connect deadline. */
  @Route(allocationRoutes.connected)
  @Callers('dispatcher', 'agent')
  async connected(@Body() body: ConnectedRequest, @Caller() caller: Caller): Promise<ConnectedResponse> {
    const connection = await this.allocator.connect(body.call_sid, 'api', allocationIdOf(body.allocation_id), scopeOf(caller));
    return {
      success: true,
      call_sid: body.call_sid,
      pod_name: connection.podName,
      allocation_id: connection.allocationId,
      state: 'connected',
      connected_at: connection.connectedAt,
      was_connected: connection.wasConnected,
    };
  }

  private refuse(reply: FastifyReply, refusal: Refusal): void {
    this.metrics.httpError(refusal.status, refusal.body.code);
    void reply.code(refusal.status).send(refusal.body);
  }
}
