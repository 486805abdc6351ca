--[[
  Applies one observed pod state (from a watch event or a full LIST) to the
  pools. Idempotent: applying the same state twice changes nothing. The only
  script that gives a pod a tier.

  Input:
    KEYS[1] pod index set             pods
    KEYS[2] tier config document      config:tiers
    KEYS[3] pod metadata hash         pod:metadata
    KEYS[4] call event stream         stream:calls
    KEYS[5] active calls zset         calls:active
    KEYS[6] watcher term              watcher:term
    ARGV[1] pod name
    ARGV[2] pod UID
    ARGV[3] ready: '1' or '0'
    ARGV[4] terminating (deletionTimestamp set): '1' or '0'
    ARGV[5] metadata JSON (labels, resourceVersion)
    ARGV[6] pinned tier (the pod's smart-router.io/tier label; '' = none). A pod without a
            tier gets its ordinal tier (includes/pod-state.lua ordinalTier), or, with no
            ordinal in its name, the first tier below its target
    ARGV[7] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[8] now, milliseconds since the Unix epoch
    ARGV[9] stream MAXLEN (approximate trim)
    ARGV[10] leader term of the publishing watcher ('' = not from a watcher, e.g. a full LIST)
    ARGV[11] snapshot time, ms: skip if the pod record changed after it ('' = apply unconditionally);
             a full LIST must never undo a newer watch event it raced with, including a
             delete (removePod leaves the marker pod:deleted:{name})
    ARGV[12] agent version (the pod's VERSION_LABEL; '' = no label, SPEC 12)
  Output:
    {1, tier, orphaned_calls}
    -2 tier config missing (flush): rebuild pending
    -5 the event comes from a deposed watcher leader (term below the highest seen)
    -6 the pod record is newer than the snapshot (ARGV[11]); nothing changed
  Events:
    stream:calls  type=call.orphaned call_sid pod tier reason=pod_replaced at allocation_id state connected_at  (one per call of a replaced pod)
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (the freed pod handed to a
                  waiting request, includes/wait-queue.lua; its call_sid is published on wait:wake)
  Derived keys (pod-scoped, built from ARGV[7]): pod:{name}, pod:deleted:{name}, pod:tier:{name},
    pod:draining:{name}, pod:removing:{name}, pod:calls:{name}, lease:{name}, pool:{tier}:*, call:{sid}, calls:pending
    Hand-off to waiters (includes/wait-queue.lua): wait:queue, wait:tier:{tier},
    wait:merchant:{merchant_id}, waiter:{call_sid}, wait:wake,
    calls:active, stream:calls, call:{sid}, lease:{name}, merchant:calls:{merchant_id},
    allocation:seq, calls:pending
    Agent versions (SPEC 12): version:all, version:pods:{version}
    rollout:live, rollout:stats:{version} (a hand-off to a waiter takes only a version the rollout serves, SPEC 12)
]]
--- @include "pod-state"

local rcall = redis.call
local name, uid = ARGV[1], ARGV[2]

if ARGV[10] ~= '' then
  local seen = tonumber(rcall('GET', KEYS[6]) or '0')
  local term = tonumber(ARGV[10])
  if term < seen then
    return -5
  end
  if term > seen then
    rcall('SET', KEYS[6], term)
  end
end

local tiers = loadTiers(KEYS[2])
if not tiers then
  return -2
end
local P = cjson.decode(ARGV[7])
if ARGV[11] ~= '' then
  if lastChange(P, name) > tonumber(ARGV[11]) then
    return -6
  end
end

-- Same name, new UID: the StatefulSet replaced the pod. Its calls died with
-- the old container; the new pod starts empty and undrained (seed bug 1).
local orphaned = 0
local knownUid = rcall('HGET', P.pod .. name, 'uid')
if knownUid and knownUid ~= uid then
  orphaned = orphanCalls(P, name, KEYS[5], KEYS[4], ARGV[9], ARGV[8], 'pod_replaced')
  rcall('DEL', P.draining .. name)
end

-- A tier once given is kept here; only rebalanceTiers moves pods (idle ones).
local tier = rcall('GET', P.tier .. name)
if not tier then
  tier = ordinalTier(tiers, name, ARGV[6]) or tierWithRoom(P, tiers)
  rcall('SET', P.tier .. name, tier)
  rcall('SADD', assignedKey(P, tier), name)
end

-- >>> agent versions (SPEC 12): a pod replaced by a new template may change version.
local version = ARGV[12] or ''
local known = rcall('HGET', P.pod .. name, 'version')
if known ~= version then
  if known then
    forgetVersionMember(P, known, name)
  end
  rcall('SADD', P.versionPods .. version, name)
  rcall('SADD', P.versions, version)
end
-- <<< agent versions
rcall('HSET', P.pod .. name, 'uid', uid, 'ready', ARGV[3], 'terminating', ARGV[4], 'tier', tier, 'pinned', ARGV[6], 'updated_at', ARGV[8],
  'version', version)
-- A pod seen again after removePod: its deletion marker goes.
rcall('DEL', P.deleted .. name)
rcall('HSETNX', P.pod .. name, 'status', 'available')
rcall('SADD', KEYS[1], name)
rcall('HSET', KEYS[3], name, ARGV[5])
refreshAvailability(P, tiers, name)
return {1, tier, orphaned}
