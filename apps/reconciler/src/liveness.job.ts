import type Redis from 'ioredis';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { LoggerService } from '@nestjs/common';
import { Counter } from '@opentelemetry/api';
import { RedisKeys } from '@smart-router/redis-keys';
import { CallToRehome, Liveness, LivenessScripts, LivenessTransition, livenessOf } from '@smart-router/redis-scripts';
import { Telemetry } from '@smart-router/telemetry';
import { CallRedirector } from './call-redirect';
import { LivenessSettings } from './reconciler.config';

/** Ends a call whose REST redirect failed (its agent is dead; nothing else will move it). */
export interface CallEnder {
  end(callSid: string, allocationId: string): Promise<void>;
}

/** Deletes a dead pod's incarnation (HEARTBEAT_DEAD_ACTION=delete); the StatefulSet replaces it. */
export interface PodDeleter {
  delete(name: string, uid: string): Promise<void>;
}

/**
 * Deletes through the Kubernetes API with a UID precondition: a pod already
 * replaced under the same name (a new, healthy incarnation) is never deleted
 * for its predecessor's silence (409 Conflict, ignored), nor is a pod gone
 * already (404).
 */
export class KubePodDeleter implements PodDeleter {
  private readonly api: CoreV1Api;

  constructor(kube: KubeConfig, private readonly namespace: string) {
    this.api = kube.makeApiClient(CoreV1Api);
  }

  async delete(name: string, uid: string): Promise<void> {
    try {
      await this.api.deleteNamespacedPod({ name, namespace: this.namespace, body: { preconditions: { uid } } });
    } catch (error) {
      const code = (error as { code?: number }).code;
      if (code === 404 || code === 409) return;
      throw error;
    }
  }
}

export interface LivenessReport {
  transitions: LivenessTransition[];
  stalled: string[];
  deleted: string[];
  /** Calls of dead pods (and stalled calls) redirected to their stream-ended URL (SPEC 11 re-home). */
  redirected: string[];
  /** Calls whose redirect failed: ended with agent_dead. */
  redirectFailed: string[];
}

const STATES: readonly Liveness[] = ['live', 'suspect', 'dead', 'unknown'];

/**
 * The liveness job (SPEC 11; a BullMQ scheduler every `JOBS.liveness.everyMs`
 * scaled by JOB_INTERVAL_SCALE): the decisions are the scripts', on Redis's
 * clock, so replicas running it twice (BullMQ is at-least-once) or with
 * skewed clocks decide nothing twice. Here: the Kubernetes side effect of a
 * dead pod (HEARTBEAT_DEAD_ACTION=delete), the media-stall step, and the
 * `smart_router_pod_liveness{state}` gauge, counted after each run from the
 * pod records (the gauge of the replica that ran the job last is current).
 */
export class LivenessJob {
  private readonly transitions: Counter;
  private readonly stalls: Counter;
  private readonly redirects: Counter;
  private counts: Record<Liveness, number> = { live: 0, suspect: 0, dead: 0, unknown: 0 };

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly scripts: LivenessScripts,
    private readonly settings: LivenessSettings,
    private readonly pods: PodDeleter | null,
    telemetry: Telemetry,
    private readonly logger: LoggerService,
    /** REHOME_ENABLED: redirects a dead pod's calls of its providers; null = every call of a dead pod ends. */
    private readonly redirector: CallRedirector | null = null,
    private readonly ender: CallEnder | null = null,
  ) {
    const meter = telemetry.meter();
    this.redirects = meter.createCounter('smart_router_rehome_redirects_total', { description: 'Live calls of dead pods redirected through the provider REST API (SPEC 11), by provider and result' });
    this.transitions = meter.createCounter('smart_router_pod_liveness_transitions_total', { description: 'Voice-agent pods declared suspect or dead (SPEC 11), by state' });
    this.stalls = meter.createCounter('smart_router_media_stalls_total', { description: 'Connected calls ended because their media_in stopped advancing (MEDIA_STALL_SECONDS)' });
    meter.createObservableGauge('smart_router_pod_liveness', { description: 'Voice-agent pods by liveness (live, suspect, dead; unknown = never heartbeated), as of the last liveness job run' })
      .addCallback((result) => {
        for (const state of STATES) result.observe(this.counts[state], { state });
      });
  }

  async run(): Promise<LivenessReport> {
    const { transitions } = await this.scripts.checkLiveness({ suspectMs: this.settings.suspectMs, deadMs: this.settings.deadMs }, undefined, this.redirector?.providers ?? []);
    const deleted: string[] = [];
    const redirected: string[] = [];
    const redirectFailed: string[] = [];
    for (const transition of transitions) {
      this.transitions.add(1, { state: transition.state });
      const rehoming = transition.callsToRehome.length > 0 ? `, ${transition.callsToRehome.length} redirected for re-homing` : '';
      this.logger.warn(`pod ${transition.pod} is ${transition.state}: no heartbeat${transition.state === 'dead' ? `; ${transition.callsEnded} call(s) ended (agent_dead)${rehoming}` : ''}`, 'Liveness');
      // Each call once (the script lists a dead pod's calls in the run that declared it dead), all at once:
      // every second here is dead air for its caller.
      await Promise.all(transition.callsToRehome.map((call) => this.redirect(call, `dead pod ${transition.pod}`, redirected, redirectFailed)));
      if (transition.state === 'dead' && this.settings.deadAction === 'delete' && this.pods) {
        try {
          await this.pods.delete(transition.pod, transition.uid);
          deleted.push(transition.pod);
        } catch (error) {
          // The pod stays dead and out of its pool; an operator (or the next death) deletes it.
          this.logger.warn(`could not delete dead pod ${transition.pod}: ${(error as Error).message}`, 'Liveness');
        }
      }
    }
    // A stalled Twilio/Plivo call is re-homed like a dead pod's (issue 20); any other ends (media_stall).
    const { ended, callsToRehome } = await this.scripts.endStalledCalls(this.settings.mediaStallMs, undefined, this.redirector?.providers ?? []);
    if (ended.length + callsToRehome.length > 0) this.stalls.add(ended.length + callsToRehome.length);
    await Promise.all(callsToRehome.map((call) => this.redirect(call, 'a media stall', redirected, redirectFailed)));
    await this.count();
    return { transitions, stalled: ended, deleted, redirected, redirectFailed };
  }

  /**
   * Redirects one live call to its stream-ended URL through the provider's REST API (SPEC 11).
   * The provider refused (the call ended meanwhile, bad credentials) or did not answer:
   * nothing else would move the call, so it ends as without re-homing.
   */
  private async redirect(call: CallToRehome, why: string, redirected: string[], redirectFailed: string[]): Promise<void> {
    try {
      await this.redirector!.redirect(call);
      this.redirects.add(1, { provider: call.provider, result: 'redirected' });
      redirected.push(call.callSid);
    } catch (error) {
      this.redirects.add(1, { provider: call.provider, result: 'failed' });
      redirectFailed.push(call.callSid);
      this.logger.warn(`could not redirect ${call.provider} call ${call.callSid} of ${why}: ${(error as Error).message}; ending it (agent_dead)`, 'Liveness');
      try {
        await this.ender?.end(call.callSid, call.allocationId);
      } catch (endError) {
        // One call that cannot be ended (Redis down) must not strand the other calls of this run.
        this.redirects.add(1, { provider: call.provider, result: 'end_failed' });
        this.logger.error(`could not end call ${call.callSid} of ${why}: ${(endError as Error).message}`, undefined, 'Liveness');
      }
    }
  }

  private async count(): Promise<void> {
    const names = await this.redis.smembers(this.keys.pods());
    const pipeline = this.redis.pipeline();
    for (const name of names) pipeline.hmget(this.keys.pod(name), 'liveness', 'heartbeat_uid', 'uid', 'heartbeat_at');
    const replies = (await pipeline.exec()) ?? [];
    const counts: Record<Liveness, number> = { live: 0, suspect: 0, dead: 0, unknown: 0 };
    for (const [error, fields] of replies) {
      if (error) throw error;
      const [liveness, heartbeatUid, uid, heartbeatAt] = fields as (string | null)[];
      counts[livenessOf({ liveness, heartbeatUid, uid, heartbeatAt })] += 1;
    }
    this.counts = counts;
  }
}
