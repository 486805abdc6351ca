import type Redis from 'ioredis';
import { PodKeyPrefixes, RedisKeys } from '@smart-router/redis-keys';
import { Allocation, CHAIN_TIERS, CallScope, CallState, Connection, Release, ScriptCode } from '@smart-router/allocation';
import { defineScripts } from './script-loader';

type Reply = number | (string | number)[];
type ScriptFn = (...args: (string | number)[]) => Promise<Reply>;

export interface AllocateInput {
  callSid: string;
  merchantId: string;
  provider: string;
  metadata: string;
  /** Provider answer webhooks refuse a call_sid released recently. */
  refuseTombstoned: boolean;
  /** How long to wait in the queue when no pod is free, ms (0 = answer NoPod at once). */
  waitMs?: number;
  /** Who is calling (allocate's "caller", a provider's From): a sticky_by_caller rollout keys its split on it (SPEC 12). */
  caller?: string;
  /** The split's random draw in [0, 1) (default Math.random()); tests pass one to pick the drawn version. */
  draw?: number;
}

/** A waiting request's outcome (settleWait). */
export type WaitOutcome =
  | { state: 'allocated'; podName: string; tier: string; podUid: string; allocationId: number | null; callState: CallState | null; agentVersion: string }
  | { state: 'waiting'; remainingMs: number }
  | { state: 'timed_out' };

/** `existingMerchant`: the merchant_id of the call found already allocated (was_existing), read in the same script. */
/** `waitingMerchant` (AlreadyWaiting only): the merchant_id of the request already waiting for that call_sid. */
export type AllocateResult = { ok: true; allocation: Allocation; existingMerchant?: string } | { ok: false; code: ScriptCode; waitingMerchant?: string };
/** The tier config (and so the pool state) is missing: Redis lost its data and a rebuild is due. */
export class StateMissingError extends Error {
  constructor(operation: string) {
    super(`${operation}: pool state missing (Redis lost its data); a full reconcile rebuilds it`);
  }
}

/** A tier config change refused: these merchants still name a tier it drops. */
export class TierInUseError extends Error {
  constructor(readonly merchants: string[]) {
    super(`merchant configs still name a tier this config drops: ${merchants.join(', ')}`);
  }
}

/** Refusals of a caller outside the call's scope (SPEC 10.1): nothing changed. */
type ScopeCode = ScriptCode.NotYourCall | ScriptCode.MerchantForbidden;

export type ReleaseResult = { ok: true; release: Release } | { ok: false; code: ScriptCode.NotFound | ScriptCode.StaleAllocation | ScriptCode.NotDue | ScopeCode };

/** A re-homed call's new allocation (SPEC 11 "Recovery"); `repeated`: the provider's retry of an earlier re-home. */
export interface Rehoming {
  podName: string;
  tier: string;
  podUid: string;
  allocationId: number | null;
  fromPod: string;
  rehomes: number;
  agentVersion: string;
  repeated: boolean;
}

export type RehomeResult =
  | { ok: true; rehoming: Rehoming }
  | { ok: false; code: ScriptCode.NotFound | ScriptCode.StateMissing | ScriptCode.StaleAllocation | ScriptCode.RehomeLimit | ScriptCode.RehomeNoPod };

export type ConnectResult = { ok: true; connection: Connection } | { ok: false; code: ScriptCode.NotFound | ScriptCode.StaleAllocation | ScopeCode };

type ReleaseRefusal = Extract<ReleaseResult, { ok: false }>['code'];
type ConnectRefusal = Extract<ConnectResult, { ok: false }>['code'];
const RELEASE_REFUSALS: ReadonlySet<number> = new Set([ScriptCode.StaleAllocation, ScriptCode.NotDue, ScriptCode.NotYourCall, ScriptCode.MerchantForbidden]);
const CONNECT_REFUSALS: ReadonlySet<number> = new Set([ScriptCode.StaleAllocation, ScriptCode.NotYourCall, ScriptCode.MerchantForbidden]);

/** A CallScope as the release and connect scripts take it: pod ('' = any), merchants '|'-joined ('' = any). */
function scopeArgs(scope: CallScope = {}): [string, string] {
  // '' would mean "any merchant": an empty scope is sent as ' ', which no merchant_id matches.
  const merchants = scope.merchants === undefined ? '' : scope.merchants.length > 0 ? scope.merchants.join('|') : ' ';
  return [scope.podName ?? '', merchants];
}

/** What a release is conditioned on, beyond the call_sid (SPEC 9.2). */
export interface ReleaseFence {
  /** Release only this allocation of the call_sid (undefined = the current one, whatever it is). */
  allocationId?: number;
  /** The connect-timeout job: release only a call still pending past its connect deadline. */
  connectTimeout?: boolean;
  /** Who is asking (SPEC 10.1): only a call on this pod / of these merchants. */
  scope?: CallScope;
  /**
   * Keep the released record as a re-home ticket for this long, seconds (SPEC 11,
   * issue 20: a release by the stream's stopped/failed callback with re-homing on).
   */
  rehomeTicketTtlSeconds?: number;
  /**
   * The liveness job ending a call it kept for re-homing whose redirect failed
   * (issue 20): the call's rehome_requested marker does not fence this release.
   */
  endRehome?: boolean;
}

const allocationIdOf = (text: unknown): number | null => (text === '' || text === undefined ? null : Number(text));

export interface PodObservation {
  name: string;
  uid: string;
  ready: boolean;
  terminating: boolean;
  metadata: Record<string, unknown>;
  /** The pod's `smart-router.io/tier` label ('' = none); otherwise its tier follows its ordinal. */
  pinnedTier: string;
  /** The pod's agent version, its VERSION_LABEL ('' or absent = no label; SPEC 12). */
  version?: string;
  /** Leader term of the watcher that saw it; null for a full LIST by the reconciler. */
  term: number | null;
  /** For a full LIST: when the LIST started; a pod record updated later is left alone. */
  snapshotAt?: number;
}

export interface ScriptLimits {
  callTtlSeconds: number;
  tombstoneTtlSeconds: number;
  streamMaxLen: number;
  /** WAIT for this many replicas after every state-changing script (REDIS_REPLICA_ACKS; default 0). */
  replicaAcks?: number;
  /** The WAIT timeout (REDIS_WAIT_TIMEOUT_MS). */
  waitTimeoutMs?: number;
  /** Called once per write that too few replicas acknowledged (a metric). */
  onNotReplicated?: (script: string) => void;
  /** A new call not connected within this many ms is released (0 = no deadline). */
  connectTimeoutMs?: number;
  /** Most requests waiting for a pod in all (WAIT_QUEUE_MAX; default 1000): beyond it, QueueFull. */
  waitQueueMax?: number;
}

/** WAIT_QUEUE_MAX's default (SPEC 10.2). */
export const DEFAULT_WAIT_QUEUE_MAX = 1000;

/**
 * The scripts that change nothing. Every other script, including any added
 * later, is followed by WAIT when replica acknowledgements are configured.
 */
export const READ_ONLY_SCRIPTS: ReadonlySet<string> = new Set(['probe', 'checkInvariants', 'readPrimaryId']);

/**
 * The script ran on the primary but fewer replicas than required confirmed
 * it before the timeout: a failover now could lose it. The caller answers 503
 * NOT_REPLICATED; repeating the same call is safe (the scripts are idempotent).
 */
export class NotReplicatedError extends Error {
  constructor(readonly script: string, readonly acknowledged: number, readonly required: number) {
    super(`${script}: ${acknowledged} of ${required} replicas acknowledged the write in time`);
    this.name = 'NotReplicatedError';
  }
}

/** The replica-acknowledgement settings every state-changing script obeys. */
export type ReplicationLimits = Pick<ScriptLimits, 'replicaAcks' | 'waitTimeoutMs' | 'onNotReplicated'>;

/**
 * A script caller that sends a state-changing script and its WAIT in one
 * pipeline: one round trip, and WAIT covers every write this connection sent
 * before it, so the script's own. A negative reply is a refusal that wrote
 * nothing (a number, or a table whose first element is negative), so its acknowledgements do not matter. Shared by every typed entry
 * point (PoolScripts, FleetScripts), so no state change skips WAIT.
 */
export function replicatedScript(redis: Redis, name: string, limits: ReplicationLimits): ScriptFn {
  const direct = (redis as unknown as Record<string, ScriptFn>)[name].bind(redis);
  const acks = limits.replicaAcks ?? 0;
  if (acks === 0 || READ_ONLY_SCRIPTS.has(name)) return direct;
  const timeoutMs = limits.waitTimeoutMs ?? 200;
  return async (...args) => {
    const pipeline = redis.pipeline();
    (pipeline as unknown as Record<string, (...a: (string | number)[]) => unknown>)[name](...args);
    const results = await pipeline.wait(acks, timeoutMs).exec();
    if (!results) throw new Error(`${name}: pipeline discarded`);
    const [[scriptError, reply], [waitError, acknowledged]] = results as [[Error | null, Reply], [Error | null, number]];
    if (scriptError) throw scriptError;
    // A refusal may carry data ({-10, merchant_id}): still a refusal that wrote nothing.
    if ((typeof reply === 'number' && reply < 0) || (Array.isArray(reply) && Number(reply[0]) < 0)) return reply;
    if (waitError) throw waitError;
    if (Number(acknowledged) < acks) {
      limits.onNotReplicated?.(name);
      throw new NotReplicatedError(name, Number(acknowledged), acks);
    }
    return reply;
  };
}

export interface InvariantViolation {
  rule: string;
  pod?: string;
  call_sid?: string;
  detail: string;
}

/**
 * The one typed entry point to the Lua scripts. Every method is one script and
 * one round trip; Redis errors propagate (never read as "false").
 */
export class PoolScripts {
  private readonly prefixes: string;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly limits: ScriptLimits,
  ) {
    defineScripts(redis);
    this.prefixes = JSON.stringify(keys.podKeyPrefixes() satisfies PodKeyPrefixes);
  }

  private script(name: string): ScriptFn {
    return replicatedScript(this.redis, name, this.limits);
  }

  async allocate(input: AllocateInput, now = Date.now()): Promise<AllocateResult> {
    const k = this.keys;
    const reply = await this.script('allocateCall')(
      k.call(input.callSid), k.merchantConfig(), k.tierConfig(), k.epoch(), k.activeCalls(), k.callStream(),
      k.tombstone(input.callSid),
      input.callSid, input.merchantId, now, input.provider, input.metadata,
      this.limits.callTtlSeconds, this.prefixes, this.limits.streamMaxLen, input.refuseTombstoned ? '1' : '0',
      input.waitMs ?? 0, this.limits.connectTimeoutMs ?? 0, this.limits.waitQueueMax ?? DEFAULT_WAIT_QUEUE_MAX,
      input.draw ?? Math.random(), input.caller ?? '',
    );
    if (typeof reply === 'number') return { ok: false, code: reply as ScriptCode };
    if (Number(reply[0]) === ScriptCode.AlreadyWaiting) return { ok: false, code: ScriptCode.AlreadyWaiting, waitingMerchant: String(reply[1] ?? '') };
    const [, podName, tier, wasExisting, podUid, allocationId, state, agentVersion, existingMerchant] = reply;
    return {
      ok: true,
      allocation: {
        podName: String(podName), tier: String(tier), sourcePool: `pool:${tier}`,
        wasExisting: Number(wasExisting) === 1, podUid: String(podUid),
        allocationId: allocationIdOf(allocationId), state: state === '' ? null : (String(state) as CallState),
        agentVersion: String(agentVersion ?? ''),
      },
      existingMerchant: existingMerchant === undefined ? undefined : String(existingMerchant),
    };
  }

  /**
   * The outcome of a waiting request; times it out (atomically) once its
   * deadline has passed, or at once with `giveUp` (the request is failing).
   */
  async settleWait(callSid: string, giveUp = false): Promise<WaitOutcome> {
    const k = this.keys;
    const reply = await this.script('settleWait')(k.call(callSid), k.waiter(callSid), k.waitQueue(), callSid, k.waitChannel(), giveUp ? '1' : '0', this.prefixes);
    if (typeof reply === 'number') return { state: 'timed_out' };
    if (Number(reply[0]) === 2) return { state: 'waiting', remainingMs: Number(reply[1]) };
    return {
      state: 'allocated', podName: String(reply[1]), tier: String(reply[2]), podUid: String(reply[3]),
      allocationId: allocationIdOf(reply[4]), callState: reply[5] ? (String(reply[5]) as CallState) : null,
      agentVersion: String(reply[6] ?? ''),
    };
  }

  /** `allocatedBefore` (ms): release only a call allocated at or before it (the stale-call reaper). */
  async release(callSid: string, reason: string, event: 'call.released' | 'call.reaped' = 'call.released', now = Date.now(), allocatedBefore?: number, fence: ReleaseFence = {}): Promise<ReleaseResult> {
    const k = this.keys;
    const reply = await this.script('releaseCall')(
      k.call(callSid), k.tierConfig(), k.activeCalls(), k.callStream(), k.tombstone(callSid),
      callSid, reason, now, this.prefixes, this.limits.tombstoneTtlSeconds, this.limits.streamMaxLen, event, allocatedBefore ?? '',
      fence.allocationId ?? '', fence.connectTimeout ? '1' : '', ...scopeArgs(fence.scope), fence.rehomeTicketTtlSeconds ?? '',
      fence.endRehome ? '1' : '',
    );
    if (typeof reply === 'number') {
      const code = RELEASE_REFUSALS.has(reply) ? (reply as ReleaseRefusal) : ScriptCode.NotFound;
      return { ok: false, code };
    }
    const [, podName, releasedToPool, wasDraining] = reply;
    return { ok: true, release: { podName: String(podName), releasedToPool: String(releasedToPool), wasDraining: Number(wasDraining) === 1 } };
  }

  /** Marks the call connected (its media stream started); `allocationId` fences it like a release, `scope` limits who may. */
  async connect(callSid: string, source: string, allocationId?: number, now = Date.now(), scope: CallScope = {}): Promise<ConnectResult> {
    const k = this.keys;
    const reply = await this.script('connectCall')(
      k.call(callSid), k.pendingCalls(), k.callStream(),
      callSid, allocationId ?? '', now, this.limits.streamMaxLen, source, ...scopeArgs(scope), this.prefixes,
    );
    if (typeof reply === 'number') {
      const code = CONNECT_REFUSALS.has(reply) ? (reply as ConnectRefusal) : ScriptCode.NotFound;
      return { ok: false, code };
    }
    const [, podName, id, connectedAt, wasConnected] = reply;
    return { ok: true, connection: { podName: String(podName), allocationId: allocationIdOf(id), connectedAt: Number(connectedAt), wasConnected: Number(wasConnected) === 1 } };
  }

  /**
   * Re-homes a call whose stream of `fromAllocationId` ended while the call was
   * not released (rehomeCall-6.lua): new pod, new allocation_id, old one fenced;
   * a call its stream-status callback released comes back from its re-home ticket.
   */
  async rehome(callSid: string, fromAllocationId: number, maxRehomes: number, cause = 'stream_ended', now = Date.now()): Promise<RehomeResult> {
    const k = this.keys;
    const reply = await this.script('rehomeCall')(
      k.call(callSid), k.merchantConfig(), k.tierConfig(), k.activeCalls(), k.callStream(), k.tombstone(callSid),
      callSid, fromAllocationId, now, this.prefixes, this.limits.streamMaxLen, maxRehomes, cause,
      this.limits.callTtlSeconds, this.limits.connectTimeoutMs ?? 0, this.limits.tombstoneTtlSeconds,
    );
    if (typeof reply === 'number') return { ok: false, code: reply as Extract<RehomeResult, { ok: false }>['code'] };
    const [, podName, tier, podUid, allocationId, fromPod, rehomes, agentVersion, repeated] = reply;
    return {
      ok: true,
      rehoming: {
        podName: String(podName), tier: String(tier), podUid: String(podUid), allocationId: allocationIdOf(allocationId),
        fromPod: String(fromPod), rehomes: Number(rehomes), agentVersion: String(agentVersion ?? ''), repeated: Number(repeated) === 1,
      },
    };
  }

  /** Returns the pod's tier and how many calls were orphaned, or the script's refusal code. */
  async upsertPod(pod: PodObservation, now = Date.now()): Promise<{ tier: string; orphaned: number } | ScriptCode> {
    const k = this.keys;
    const reply = await this.script('upsertPod')(
      k.pods(), k.tierConfig(), k.podMetadata(), k.callStream(), k.activeCalls(), k.watcherTerm(),
      pod.name, pod.uid, pod.ready ? '1' : '0', pod.terminating ? '1' : '0', JSON.stringify(pod.metadata),
      pod.pinnedTier, this.prefixes, now, this.limits.streamMaxLen, pod.term === null ? '' : pod.term,
      pod.snapshotAt ?? '', pod.version ?? '',
    );
    if (typeof reply === 'number') return reply as ScriptCode;
    return { tier: String(reply[1]), orphaned: Number(reply[2]) };
  }

  /** Returns the number of calls orphaned, 0 when there was nothing to remove, or a refusal code. */
  async removePod(name: string, uid: string, term: number | null, snapshotAt?: number, now = Date.now()): Promise<{ orphaned: number } | ScriptCode | 0> {
    const k = this.keys;
    const reply = await this.script('removePod')(
      k.pods(), k.tierConfig(), k.podMetadata(), k.callStream(), k.activeCalls(), k.watcherTerm(),
      name, uid, this.prefixes, now, this.limits.streamMaxLen, term === null ? '' : term, snapshotAt ?? '',
    );
    if (typeof reply === 'number') return reply === 0 ? 0 : (reply as ScriptCode);
    return { orphaned: Number(reply[1]) };
  }

  /**
   * Stores (config JSON) or deletes ('') a merchant's config if the tier config
   * is still `validatedAgainst` (the document text read before validating, ''
   * for none, '*' for unconditional). Returns true when written or deleted, false for deleting an
   * absent config, ScriptCode.ConfigChanged when the tiers changed meanwhile.
   */
  async setMerchantConfig(merchantId: string, json: string, validatedAgainst: string): Promise<boolean | ScriptCode.ConfigChanged> {
    const k = this.keys;
    const reply = Number(await this.script('setMerchantConfig')(k.merchantConfig(), k.tierConfig(), merchantId, json, validatedAgainst));
    return reply === ScriptCode.ConfigChanged ? ScriptCode.ConfigChanged : reply === 1;
  }

  async setDrain(name: string, draining: boolean, now = Date.now()): Promise<{ activeCalls: number; tier: string } | null> {
    const k = this.keys;
    const reply = await this.script('setPodDrain')(k.pods(), k.tierConfig(), name, draining ? '1' : '0', this.prefixes, now, this.limits.streamMaxLen);
    if (typeof reply === 'number') return null;
    return { activeCalls: Number(reply[1]), tier: String(reply[2]) };
  }

  /**
   * Returns the number of corrections made (0 = the pod was consistent, or is
   * unknown). Throws StateMissingError when the tier config is gone: a flushed
   * Redis is not "nothing to correct".
   */
  async sweepPod(name: string): Promise<number> {
    const k = this.keys;
    const reply = await this.script('sweepPod')(k.pods(), k.tierConfig(), name, this.prefixes);
    if (reply === ScriptCode.StateMissing) throw new StateMissingError('sweepPod');
    return typeof reply === 'number' ? 0 : Number(reply[1]);
  }

  /** Moves idle pods to their tiers; stores `document` first when given. Throws StateMissingError like sweepPod. */
  /** Moves idle pods to their tiers; with a new document, stores it first unless merchants still name a tier it drops (TierInUseError). */
  async rebalanceTiers(document?: string): Promise<number> {
    const k = this.keys;
    const reply = await this.script('rebalanceTiers')(k.pods(), k.tierConfig(), k.merchantConfig(), this.prefixes, document ?? '', JSON.stringify([...CHAIN_TIERS]));
    if (reply === ScriptCode.StateMissing) throw new StateMissingError('rebalanceTiers');
    if (Array.isArray(reply) && reply[0] === ScriptCode.TierInUse) throw new TierInUseError(JSON.parse(String(reply[1])) as string[]);
    return typeof reply === 'number' ? 0 : Number(reply[1]);
  }

  /** The run_id of the primary serving the pool state (changes on restart and failover). */
  async primaryId(): Promise<string> {
    const [runId] = (await this.script('readPrimaryId')(this.keys.epoch())) as [string, number];
    return String(runId);
  }

  /** Readiness: one real script round trip. */
  async ping(): Promise<string> {
    return String(await this.script('probe')());
  }

  async checkInvariants(): Promise<InvariantViolation[]> {
    const k = this.keys;
    const flat = (await this.script('checkInvariants')(k.pods(), k.tierConfig(), k.activeCalls(), this.prefixes)) as string[];
    const violations: InvariantViolation[] = [];
    for (let i = 0; i < flat.length; i += 4) {
      const [rule, kind, subject, detail] = flat.slice(i, i + 4);
      violations.push(kind === 'pod' ? { rule, pod: subject, detail } : { rule, call_sid: subject, detail });
    }
    return violations;
  }
}
