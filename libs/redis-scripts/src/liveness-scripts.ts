import type Redis from 'ioredis';
import { RedisKeys } from '@smart-router/redis-keys';
import { defineScripts } from './script-loader';
import { ReplicationLimits, replicatedScript } from './pool-scripts';

type Reply = number | (string | number)[];
type ScriptFn = (...args: (string | number)[]) => Promise<Reply>;

/** A pod's liveness as SPEC 11 names it; `unknown` = never heartbeated (not enrolled). */
export type Liveness = 'live' | 'suspect' | 'dead' | 'unknown';

/** One call a voice agent reports in a heartbeat. */
export interface HeartbeatCall {
  callSid: string;
  /** null = whatever allocation is current. */
  allocationId: number | null;
  /** Frames received / sent so far on the call's media socket. */
  mediaIn: number;
  mediaOut: number;
}

export type HeartbeatResult =
  | { ok: true; liveness: 'live' | 'dead'; unknownCalls: string[]; at: number }
  | { ok: false; code: 'unknown_pod' };

export interface LivenessTransition {
  pod: string;
  state: 'suspect' | 'dead';
  uid: string;
  /** Calls ended by the transition (agent_dead). */
  callsEnded: number;
  /** Calls of a dead pod kept for re-homing (their provider was passed to checkLiveness): redirect each to its stream-ended URL. */
  callsToRehome: CallToRehome[];
}

/** A live call of a dead pod, left on it for the provider to re-home (SPEC 11 "Recovery"). */
export interface CallToRehome {
  callSid: string;
  provider: string;
  /** The allocation whose stream-ended URL re-homes it. */
  allocationId: string;
}

export interface LivenessThresholds {
  suspectMs: number;
  deadMs: number;
}

/** Most silent pods (or media entries) one job run looks at: a run stays short whatever the fleet. */
export const LIVENESS_BATCH = 500;
/** With MEDIA_STALL_SECONDS off, how often a connected call's media entry is looked at (pruned when the call is gone). */
export const MEDIA_RECHECK_MS = 30000;

/**
 * The SPEC 11 liveness scripts (recordHeartbeat, checkLiveness,
 * endStalledCalls): one script and one round trip each, every time taken from
 * Redis's clock inside the script. Redis errors propagate.
 */
export class LivenessScripts {
  private readonly prefixes: string;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly streamMaxLen: number,
    private readonly replication: ReplicationLimits = {},
  ) {
    defineScripts(redis);
    this.prefixes = JSON.stringify(keys.podKeyPrefixes());
  }

  private script(name: string): ScriptFn {
    return replicatedScript(this.redis, name, this.replication);
  }

  async recordHeartbeat(podName: string, calls: readonly HeartbeatCall[]): Promise<HeartbeatResult> {
    const k = this.keys;
    const listed = JSON.stringify(calls.map((call) => [call.callSid, call.allocationId === null ? '' : String(call.allocationId), call.mediaIn, call.mediaOut]));
    const reply = await this.script('recordHeartbeat')(
      k.pods(), k.heartbeats(), k.tierConfig(), k.callStream(), k.callMedia(),
      podName, listed, this.prefixes, this.streamMaxLen,
    );
    if (typeof reply === 'number') return { ok: false, code: 'unknown_pod' };
    const [, liveness, unknown, at] = reply;
    return { ok: true, liveness: String(liveness) as 'live' | 'dead', unknownCalls: JSON.parse(String(unknown)) as string[], at: Number(at) };
  }

  /**
   * One liveness step: suspect and dead transitions of silent pods (and
   * unenrolment of gone or replaced ones). `disrupted`: every enrolled pod
   * (two or more) was silent, so nobody was judged (checkLiveness-6.lua).
   */
  async checkLiveness(thresholds: LivenessThresholds, batch = LIVENESS_BATCH, rehomeProviders: readonly string[] = []): Promise<{ transitions: LivenessTransition[]; unenrolled: number; now: number; disrupted: boolean }> {
    const k = this.keys;
    const reply = (await this.script('checkLiveness')(
      k.heartbeats(), k.pods(), k.tierConfig(), k.callStream(), k.activeCalls(), k.callMedia(),
      thresholds.suspectMs, thresholds.deadMs, this.prefixes, this.streamMaxLen, batch, rehomeProviders.join('|'),
    )) as (string | number)[];
    // cjson encodes an empty Lua table as {}: an empty kept list may come back as an object.
    const transitions = (JSON.parse(String(reply[1])) as [string, 'suspect' | 'dead', string, number, unknown][])
      .map(([pod, state, uid, callsEnded, kept]) => ({
        pod, state, uid, callsEnded: Number(callsEnded),
        callsToRehome: (Array.isArray(kept) ? (kept as [string, string, string][]) : [])
          .map(([callSid, provider, allocationId]) => ({ callSid, provider, allocationId: String(allocationId) })),
      }));
    return { transitions, unenrolled: Number(reply[2]), now: Number(reply[3]), disrupted: Number(reply[4]) === 1 };
  }

  /**
   * Ends connected calls whose media_in has not advanced for `stallMs` (0 = off: only prunes);
   * those of `rehomeProviders` stay on their pod and come back in `callsToRehome` (issue 20).
   */
  async endStalledCalls(stallMs: number, batch = LIVENESS_BATCH, rehomeProviders: readonly string[] = []): Promise<{ ended: string[]; pruned: number; callsToRehome: CallToRehome[] }> {
    const k = this.keys;
    const reply = (await this.script('endStalledCalls')(
      k.callMedia(), k.tierConfig(), k.activeCalls(), k.callStream(),
      stallMs, MEDIA_RECHECK_MS, this.prefixes, this.streamMaxLen, batch, rehomeProviders.join('|'),
    )) as (string | number)[];
    const kept = JSON.parse(String(reply[3] ?? '[]')) as unknown;
    return {
      ended: JSON.parse(String(reply[1])) as string[], pruned: Number(reply[2]),
      callsToRehome: (Array.isArray(kept) ? (kept as [string, string, string][]) : [])
        .map(([callSid, provider, allocationId]) => ({ callSid, provider, allocationId: String(allocationId) })),
    };
  }
}

/** A pod's liveness from its `pod:{name}` hash fields (liveness, heartbeat_uid, uid, heartbeat_at). */
export function livenessOf(fields: { liveness?: string | null; heartbeatUid?: string | null; uid?: string | null; heartbeatAt?: string | null }): Liveness {
  if (!fields.heartbeatAt || !fields.uid || fields.heartbeatUid !== fields.uid) return 'unknown';
  if (fields.liveness === 'suspect' || fields.liveness === 'dead') return fields.liveness;
  return 'live';
}
