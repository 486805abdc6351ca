/** Negative return codes of the Lua scripts; one enum maps them all. */
export enum ScriptCode {
  NotFound = -1,
  NoPod = -1,
  StateMissing = -2,
  Tombstoned = -3,
  BadMerchantConfig = -4,
  StaleLeader = -5,
  NewerState = -6,
  ConfigChanged = -7,
  MerchantLimit = -8,
  /** No pod free: the request joined the wait queue (settleWait tells its outcome). */
  Queued = -9,
  /** The call_sid is already waiting: the request shares the first one's outcome. */
  AlreadyWaiting = -10,
  /** A release or connect carrying an allocation_id that is not the call's current one. */
  StaleAllocation = -11,
  /** A connect-timeout release of a call that connected (or is not yet due). */
  NotDue = -12,
  /** A new tier config drops a tier that merchant configs still name (rebalanceTiers). */
  TierInUse = -13,
  /** No pod free and the wait queue is full (WAIT_QUEUE_MAX, or the merchant's max_waiting): nothing queued. */
  QueueFull = -14,
  /** A release or connect by a voice agent of a call on another pod (SPEC 10.1): nothing changed. */
  NotYourCall = -15,
  /** A release or connect by a scoped token of a call of a merchant outside its scope (SPEC 10.1): nothing changed. */
  MerchantForbidden = -16,
  /** A rollback with no previous rollout revision to return to (SPEC 12). */
  NoPreviousRevision = -17,
  /** A re-home beyond REHOME_MAX (SPEC 11): the call was released (rehome_exhausted). */
  RehomeLimit = -18,
  /** A re-home with no pod of the chain but the old one free (SPEC 11): the call was released (rehome_no_pod). */
  RehomeNoPod = -19,
  /** A promote to a version no pod carries and no known StatefulSet serves (SPEC 12): nothing changed. */
  UnknownVersion = -20,
}

/**
 * What a caller may touch when it acts on a live call (SPEC 10.1), checked by
 * the release and connect scripts in the same step as the change. An absent
 * field sets no limit: the webhooks, the jobs and unscoped tokens pass `{}`.
 */
export interface CallScope {
  /** Only calls on this pod: a voice agent's own pod. */
  podName?: string;
  /** Only calls of these merchants: a scoped dispatcher token (a call with no merchant is outside every scope). */
  merchants?: readonly string[];
}

/** A call's life (SPEC 9.2): `pending` from allocation until its media stream starts. */
export type CallState = 'pending' | 'connected';

export interface Allocation {
  podName: string;
  podUid: string;
  tier: string;
  sourcePool: string;
  wasExisting: boolean;
  /** The fencing token; null only for a record written before fencing (e.g. by the Go router). */
  allocationId: number | null;
  state: CallState | null;
  /** The serving pod's agent version (SPEC 12; '' = no version label); absent when not known (a hand-off to a waiter). */
  agentVersion?: string;
}

export interface Release {
  podName: string;
  releasedToPool: string;
  wasDraining: boolean;
}

export interface Connection {
  podName: string;
  allocationId: number | null;
  connectedAt: number;
  /** True when the call was already connected (a duplicate report). */
  wasConnected: boolean;
}

export type AllocationFailure = 'no_pod' | 'state_missing' | 'tombstoned' | 'bad_merchant_config';
