/**
 * The Redis key schema: the only place a key string is built.
 *
 * The names marked "seed" are the Go router's keys (testing guide section 8)
 * and form a compatibility contract: the router can replace it on the same
 * Redis. The rest are ours. With a prefix carrying a hash tag (`{voice}:`)
 * every key lands in one Redis Cluster slot, which multi-key Lua needs.
 *
 * | key                          | type   | holds                                                    |
 * |------------------------------|--------|----------------------------------------------------------|
 * | pool:{tier}:available  seed  | SET/ZSET | allocatable pods (ZSET scored by live calls if shared) |
 * | pool:{tier}:assigned   seed  | SET    | every pod of the tier                                    |
 * | pod:{name}             seed  | HASH   | status, allocated_call_sid, allocated_at, source_pool, allocation_id, uid, ready, terminating |
 * | pod:tier:{name}        seed  | STRING | the pod's tier                                           |
 * | pod:draining:{name}    seed  | STRING | "1" while drained; lives as long as the pod              |
 * | lease:{name}           seed  | STRING | call_sid holding an exclusive pod (TTL = call TTL)       |
 * | call:{call_sid}        seed  | HASH   | pod_name, pod_uid, source_pool, tier, merchant_id, ..., allocation_id, state, connect_deadline, connected_at |
 * | merchant:config        seed  | HASH   | merchant_id -> JSON                                      |
 * | pod:metadata           seed  | HASH   | pod_name -> JSON (labels, uid, node)                     |
 * | pod:calls:{name}             | SET    | call_sids live on the pod                                |
 * | pod:deleted:{name}           | STRING | deletion time (ms) of a removed pod, 10 min TTL: a LIST older than it cannot resurrect the pod |
 * | pods                         | SET    | index of every known pod name                            |
 * | calls:active                 | ZSET   | call_sid -> allocated_at ms (list + stale reaper)        |
 * | calls:pending                | ZSET   | call_sid -> connect deadline ms of calls not yet connected |
 * | allocation:seq               | STRING | last allocation_id handed out (INCR; fencing tokens)     |
 * | tombstone:{call_sid}         | STRING | released call, refuses replayed answer webhooks          |
 * | rehome:{call_sid}            | HASH   | re-home ticket: the call record a stream-status callback released (SPEC 11, REHOME_TICKET_TTL_SECONDS) |
 * | webhook:replay:{digest}      | STRING | a signed answer webhook seen (sha256 of its nonce / idempotency token / signature): its answer document JSON, or a pending claim; TTL = tombstone TTL |
 * | config:tiers                 | STRING | the live TIER_CONFIG document, with its fallback chains  |
 * | epoch                        | STRING | data-loss marker; missing = state must be rebuilt        |
 * | watcher:term                 | STRING | highest pod-watcher leader term seen (fencing)           |
 * | watcher:leader               | HASH   | identity, term, renewed_at of the live watcher leader (TTL) |
 * | stream:calls / stream:pods   | STREAM | call and pod lifecycle events                            |
 * | reconcile:last               | HASH   | last full reconcile: at, pods, duration_ms               |
 * | wait:queue                   | ZSET   | every waiting allocation: call_sid -> its deadline (Redis ms); ZCARD = "waiting", bounded by WAIT_QUEUE_MAX |
 * | wait:tier:{tier}             | ZSET   | waiters whose chain names the tier: call_sid -> priority*1e13 + arrival number (lowest first); a freed pod reads only its tier's |
 * | wait:merchant:{merchant_id}  | SET    | the merchant's waiting call_sids (exact; bounded by its config's max_waiting) |
 * | wait:seq                     | STRING | arrival counter of the wait queue (strict FIFO within a priority) |
 * | waiter:{call_sid}            | HASH   | a waiting allocation: chain, merchant, max_calls, deadline (Redis ms), provider, metadata, ttl, maxlen |
 * | wait:wake                    | channel| pub/sub: call_sid of a waiter that got a pod or left the queue |
 * | merchant:calls:{merchant_id} | SET    | the merchant's live call_sids (max_calls); pruned of expired records at the cap |
 * | pod:removing:{name}          | STRING | "1" while the pod is drained for removal by a fleet scale-down (not an operator drain) |
 * | fleet:plan                   | HASH   | fleet scale plan: target, replicas (last seen), committing, from, reason, at |
 * | fleet:removing               | SET    | pod names carrying a removal mark                        |
 * | fleet:plan:{sts}             | HASH   | the fleet plan of another agent StatefulSet (a rollout's replica move) |
 * | fleet:removing:{sts}         | SET    | its pod names carrying a removal mark                    |
 * | rollout:move                 | STRING | the replica move of a promote or rollback: version, revision, at, cover, seen_at |
 * | rollout:statefulsets         | HASH   | version -> StatefulSet name (from pod names `{sts}-{ordinal}`) |
 * | fleet:lock                   | STRING | token of the reconciler running the fleet step (one decision at a time) |
 * | autoscaler:config            | STRING | autoscaler settings JSON (PUT /api/v1/admin/autoscaler)   |
 * | autoscaler:state             | HASH   | surplus_since, desired, free, waiting, last_decision JSON |
 * | stream:fleet                 | STREAM | fleet decisions and scale events (and rollout.* events, SPEC 12) |
 * | version:all                  | SET    | every agent version a known pod carries (VERSION_LABEL; "" = no label) |
 * | version:pods:{version}       | SET    | the pods of one agent version (SPEC 12)                  |
 * | rollout:live                 | STRING | the live rollout revision JSON: revision, targets, assignment, guardrail, previous, at |
 * | rollout:revisions            | HASH   | revision -> its JSON, immutable (rollback returns to one) |
 * | rollout:stats:{version}      | HASH   | per-version counters under a rollout: allocations, spills, connect_timeouts, connected, released:{reason}, guard:{revision}:connected / :connect_timeouts (the guardrail) |
 * | heartbeats                   | ZSET   | enrolled pods (SPEC 11): pod name -> its last heartbeat, Redis-clock ms; the liveness job reads the silent ones |
 * | calls:media                  | ZSET   | connected calls an agent reports: call_sid -> Redis ms its media_in last advanced (MEDIA_STALL_SECONDS) |
 * | bull                         | prefix | BullMQ queues (`{prefix}bull:<queue>:...`)               |
 */
export class RedisKeys {
  constructor(readonly prefix: string = 'voice:') {}

  poolAvailable(tier: string): string {
    return `${this.prefix}pool:${tier}:available`;
  }
  poolAssigned(tier: string): string {
    return `${this.prefix}pool:${tier}:assigned`;
  }
  pod(name: string): string {
    return `${this.prefix}pod:${name}`;
  }
  podTier(name: string): string {
    return `${this.prefix}pod:tier:${name}`;
  }
  podDraining(name: string): string {
    return `${this.prefix}pod:draining:${name}`;
  }
  lease(name: string): string {
    return `${this.prefix}lease:${name}`;
  }
  podDeleted(name: string): string {
    return `${this.prefix}pod:deleted:${name}`;
  }
  podCalls(name: string): string {
    return `${this.prefix}pod:calls:${name}`;
  }
  call(callSid: string): string {
    return `${this.prefix}call:${callSid}`;
  }
  tombstone(callSid: string): string {
    return `${this.prefix}tombstone:${callSid}`;
  }
  /**
   * Re-home ticket (SPEC 11, issue 20): the record of a call released by its
   * stream's stopped/failed callback while re-homing is on, kept briefly so
   * the provider's stream-ended request (which may come before or after the
   * callback) can still re-home it. Written by releaseCall, consumed by rehomeCall.
   */
  rehomeTicket(callSid: string): string {
    return `${this.prefix}rehome:${callSid}`;
  }
  /**
   * One signed answer webhook already answered (SPEC 10.2, replays are
   * refused), by the hex SHA-256 of what identifies it: fixed length and
   * never a hash tag, whatever the provider sent.
   */
  webhookReplay(digest: string): string {
    return `${this.prefix}webhook:replay:${digest}`;
  }
  merchantConfig(): string {
    return `${this.prefix}merchant:config`;
  }
  podMetadata(): string {
    return `${this.prefix}pod:metadata`;
  }
  pods(): string {
    return `${this.prefix}pods`;
  }
  activeCalls(): string {
    return `${this.prefix}calls:active`;
  }
  /** Calls allocated but not yet connected, scored by their connect deadline (ms). */
  pendingCalls(): string {
    return `${this.prefix}calls:pending`;
  }
  /** The fencing-token counter: one INCR per new allocation. */
  allocationSequence(): string {
    return `${this.prefix}allocation:seq`;
  }
  tierConfig(): string {
    return `${this.prefix}config:tiers`;
  }
  epoch(): string {
    return `${this.prefix}epoch`;
  }
  watcherTerm(): string {
    return `${this.prefix}watcher:term`;
  }
  watcherLeader(): string {
    return `${this.prefix}watcher:leader`;
  }
  callStream(): string {
    return `${this.prefix}stream:calls`;
  }
  podStream(): string {
    return `${this.prefix}stream:pods`;
  }
  lastReconcile(): string {
    return `${this.prefix}reconcile:last`;
  }
  waitQueue(): string {
    return `${this.prefix}wait:queue`;
  }
  waitSequence(): string {
    return `${this.prefix}wait:seq`;
  }
  waiter(callSid: string): string {
    return `${this.prefix}waiter:${callSid}`;
  }
  /** The waiters a freed pod of `tier` may go to, best first (SPEC 10.2: the hand-off never scans the whole queue). */
  waitTier(tier: string): string {
    return `${this.prefix}wait:tier:${tier}`;
  }
  /** The merchant's waiting call_sids: its exact waiting count (max_waiting). */
  waitMerchant(merchantId: string): string {
    return `${this.prefix}wait:merchant:${merchantId}`;
  }
  /** A pub/sub channel, not a key: hand-offs and timeouts publish the call_sid on it. */
  waitChannel(): string {
    return `${this.prefix}wait:wake`;
  }
  merchantCalls(merchantId: string): string {
    return `${this.prefix}merchant:calls:${merchantId}`;
  }
  podRemoving(name: string): string {
    return `${this.prefix}pod:removing:${name}`;
  }
  /**
   * The marks that hold a pod out of its pools, either of which makes it
   * draining: an operator's drain and a scale-down's removal. `EXISTS` over
   * them is the TypeScript side of the scripts' isHeld (includes/pod-state.lua).
   */
  holdMarks(name: string): [string, string] {
    return [this.podDraining(name), this.podRemoving(name)];
  }
  fleetPlan(): string {
    return `${this.prefix}fleet:plan`;
  }
  fleetRemoving(): string {
    return `${this.prefix}fleet:removing`;
  }
  /** The fleet plan of another agent StatefulSet than VOICE_AGENT_STATEFULSET (a promote or rollback moving replicas, SPEC 12). */
  fleetPlanOf(statefulSet: string): string {
    return `${this.prefix}fleet:plan:${statefulSet}`;
  }
  /** Its removal-marked pods (the marks themselves are pod-scoped, pod:removing:{name}). */
  fleetRemovingOf(statefulSet: string): string {
    return `${this.prefix}fleet:removing:${statefulSet}`;
  }
  /** The replica move a promote or rollback asked for (SPEC 12; setRollout-6, settleRolloutMove-2): JSON {version, revision, at, cover, seen_at}; absent = none. */
  rolloutMove(): string {
    return `${this.prefix}rollout:move`;
  }
  /** version -> the StatefulSet its pods belong to, learned from pod names `{sts}-{ordinal}` (kept after the pods are gone). */
  versionStatefulSets(): string {
    return `${this.prefix}rollout:statefulsets`;
  }
  fleetLock(): string {
    return `${this.prefix}fleet:lock`;
  }
  fleetStream(): string {
    return `${this.prefix}stream:fleet`;
  }
  autoscalerConfig(): string {
    return `${this.prefix}autoscaler:config`;
  }
  autoscalerState(): string {
    return `${this.prefix}autoscaler:state`;
  }
  /** Agent versions of the known pods (SPEC 12): the index the rollout view reads, never SCAN. */
  versions(): string {
    return `${this.prefix}version:all`;
  }
  /** The pods of one agent version (`""` = pods without the VERSION_LABEL). */
  versionPods(version: string): string {
    return `${this.prefix}version:pods:${version}`;
  }
  /** The live rollout revision (SPEC 12); absent = no split, today's allocation. */
  rollout(): string {
    return `${this.prefix}rollout:live`;
  }
  /** Every rollout revision ever written, immutable, by number. */
  rolloutRevisions(): string {
    return `${this.prefix}rollout:revisions`;
  }
  /** Counters of one version while a rollout is configured (allocate and release scripts). */
  rolloutStats(version: string): string {
    return `${this.prefix}rollout:stats:${version}`;
  }
  /**
   * Pods that have sent a heartbeat (SPEC 11), scored by its Redis-clock time
   * (ms): the liveness job reads only the silent ones (ZRANGEBYSCORE), never
   * every pod. A pod's liveness itself is on its `pod:{name}` hash
   * (`liveness`, `liveness_uid`, `heartbeat_at`, `dead_calls`).
   */
  heartbeats(): string {
    return `${this.prefix}heartbeats`;
  }
  /**
   * Connected calls whose agent reports media counters, scored by when
   * `media_in` last advanced (Redis-clock ms); the counters are on the call
   * hash (`media_in`, `media_out`, `media_in_at`).
   */
  callMedia(): string {
    return `${this.prefix}calls:media`;
  }
  /** BullMQ's own prefix; it appends `:<queue>:<suffix>` itself. */
  bullPrefix(): string {
    return `${this.prefix}bull`;
  }

  /**
   * Prefixes of the pod-scoped keys, for Lua scripts that learn a pod's name
   * only at run time (from SPOP/ZRANGE on a pool). They are derived from the
   * same builders, so the script and this class can never disagree.
   */
  podKeyPrefixes(): PodKeyPrefixes {
    const marker = '\u0000';
    const strip = (key: string) => key.slice(0, key.indexOf(marker));
    return {
      pod: strip(this.pod(marker)),
      tier: strip(this.podTier(marker)),
      draining: strip(this.podDraining(marker)),
      removing: strip(this.podRemoving(marker)),
      lease: strip(this.lease(marker)),
      calls: strip(this.podCalls(marker)),
      deleted: strip(this.podDeleted(marker)),
      call: strip(this.call(marker)),
      rehomeTicket: strip(this.rehomeTicket(marker)),
      pool: `${this.prefix}pool:`,
      waiter: strip(this.waiter(marker)),
      waitTier: strip(this.waitTier(marker)),
      waitMerchant: strip(this.waitMerchant(marker)),
      merchantCalls: strip(this.merchantCalls(marker)),
      // Whole keys, not prefixes: the hand-off to a waiting request runs inside
      // refreshAvailability, which every script that frees a pod calls, so it
      // cannot take them as KEYS without renumbering every such script.
      waitQueue: this.waitQueue(),
      waitSequence: this.waitSequence(),
      waitChannel: this.waitChannel(),
      activeCalls: this.activeCalls(),
      callStream: this.callStream(),
      // The call lifecycle (SPEC 9.2), for the same reason: bindCall gives every
      // new allocation (a hand-off too) its allocation_id and connect deadline.
      allocationSequence: this.allocationSequence(),
      pendingCalls: this.pendingCalls(),
      // Agent versions (SPEC 12): upsert/remove keep the membership, allocate
      // draws among versions, release counts per version. The rollout is a
      // whole key here for the same reason as the wait queue: it is read by
      // the allocation step without renumbering the script (and every caller).
      versions: this.versions(),
      versionPods: strip(this.versionPods(marker)),
      rolloutStats: strip(this.rolloutStats(marker)),
      rollout: this.rollout(),
    };
  }
}

export interface PodKeyPrefixes {
  pod: string;
  deleted: string;
  tier: string;
  draining: string;
  removing: string;
  lease: string;
  calls: string;
  call: string;
  rehomeTicket: string;
  pool: string;
  waiter: string;
  waitTier: string;
  waitMerchant: string;
  merchantCalls: string;
  allocationSequence: string;
  pendingCalls: string;
  waitQueue: string;
  waitSequence: string;
  waitChannel: string;
  activeCalls: string;
  callStream: string;
  versions: string;
  versionPods: string;
  rolloutStats: string;
  rollout: string;
}

/**
 * Pod names whose `pod:{name}` is another key of the schema: a pod named
 * `metadata` would write its hash over the seed's `pod:metadata`. Kubernetes
 * allows the name, so the watcher refuses such a pod instead of recording it.
 */
export const RESERVED_POD_NAMES: ReadonlySet<string> = new Set(['metadata']);
