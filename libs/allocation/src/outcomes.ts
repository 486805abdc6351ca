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
}

export interface Allocation {
  podName: string;
  podUid: string;
  tier: string;
  sourcePool: string;
  wasExisting: boolean;
}

export interface Release {
  podName: string;
  releasedToPool: string;
  wasDraining: boolean;
}

export type AllocationFailure = 'no_pod' | 'state_missing' | 'tombstoned' | 'bad_merchant_config';
