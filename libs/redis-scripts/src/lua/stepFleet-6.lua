--[[
  One step of the fleet plan, run by the reconciler with the StatefulSet's
  observed spec.replicas, under the fleet lock (one decision at a time across
  replicas). Records the size, finishes a scale-down the cluster has applied,
  drops the marks of pods that are gone, re-applies the removal marks, and says
  what to patch: up to the target at once; down only once every pod to remove
  holds no call, after committing to it (a committed size is re-patched after a
  restart and no cancel unmarks its pods until the cluster reached it).

  Input:
    KEYS[1] fleet plan                 fleet:plan
    KEYS[2] removal-marked pods        fleet:removing
    KEYS[3] pod index set              pods
    KEYS[4] tier config document       config:tiers
    KEYS[5] fleet event stream         stream:fleet
    KEYS[6] fleet step lock            fleet:lock
    ARGV[1] observed spec.replicas
    ARGV[2] StatefulSet name (its pods are {name}-{ordinal})
    ARGV[3] now (ms)
    ARGV[4] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[5] stream maxlen
    ARGV[6] lock token
    ARGV[7] lock TTL (ms)
  Output:
    {1, target}                 steady: nothing to patch
    {2, target}                 patch spec.replicas up to target
    {3, target}                 patch spec.replicas down to target (committed)
    {4, target, busy pod, ...}  waiting for the pods to remove to end their calls
    0 another reconciler holds the fleet lock
  Events:
    stream:fleet  type=fleet.scaled from to at  (the cluster reached a committed size)
    stream:fleet  type=fleet.scale_down_committed from to at  (every pod to remove is idle)
    stream:fleet  type=fleet.removal_cancelled to cancelled at  (marks lifted after a committed size was reached)
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (a pod whose removal is
                  cancelled handed to a waiting request, includes/wait-queue.lua; published on wait:wake)
  Derived keys (pod-scoped, built from ARGV[4]): pod:removing:{name}, pod:{name}, pod:tier:{name},
    pod:draining:{name}, pod:calls:{name}, pool:{tier}:available
    Hand-off to waiters (includes/wait-queue.lua): wait:queue, wait:tier:{tier},
    wait:merchant:{merchant_id}, waiter:{call_sid}, wait:wake,
    calls:active, stream:calls, call:{sid}, lease:{name}, merchant:calls:{merchant_id},
    allocation:seq, calls:pending
    rollout:live, rollout:stats:{version} (a hand-off to a waiter takes only a version the rollout serves, SPEC 12)
]]
--- @include "pod-state"
--- @include "fleet"

local rcall = redis.call
local holder = rcall('GET', KEYS[6])
if holder and holder ~= ARGV[6] then
  return 0
end
rcall('SET', KEYS[6], ARGV[6], 'PX', ARGV[7])
local P = cjson.decode(ARGV[4])
local sts = ARGV[2]
local now = ARGV[3]
local observed = tonumber(ARGV[1])
local plan = rcall('HMGET', KEYS[1], 'target', 'replicas', 'committing')
local target = tonumber(plan[1])
local stored = tonumber(plan[2])
local committing = tonumber(plan[3])
if committing and observed <= committing then
  rcall('HDEL', KEYS[1], 'committing')
  rcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'type', 'fleet.scaled', 'from', stored or observed, 'to', observed, 'at', now)
  committing = nil
  -- The size we reached is ours, not an outside change: a target set meanwhile stands.
  stored = observed
end
-- No plan yet, or a settled plan while someone else scaled the StatefulSet: follow the cluster.
if not target or (not committing and stored and target == stored and observed ~= stored) then
  target = observed
end
rcall('HSET', KEYS[1], 'replicas', observed, 'target', target)

-- Marks of pods gone for good (above both the size and the target, no longer known).
if not committing then
  for _, name in ipairs(rcall('SMEMBERS', KEYS[2])) do
    local ordinal = fleetOrdinal(sts, name)
    if (not ordinal or (ordinal >= observed and ordinal >= target)) and rcall('SISMEMBER', KEYS[3], name) == 0 then
      rcall('DEL', P.removing .. name)
      rcall('SREM', KEYS[2], name)
    end
  end
end
local cancelled = applyRemovalMarks(P, KEYS[2], KEYS[3], loadTiers(KEYS[4]), sts, target, math.max(observed, committing or 0), committing)
if #cancelled > 0 then
  rcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'type', 'fleet.removal_cancelled', 'to', target,
    'cancelled', table.concat(cancelled, ','), 'at', now)
end

if committing then
  return {3, committing}
end
if target > observed then
  return {2, target}
end
if target < observed then
  local reply = {4, target}
  for ordinal = target, observed - 1 do
    local name = sts .. '-' .. ordinal
    if rcall('SCARD', P.calls .. name) > 0 then
      reply[#reply + 1] = name
    end
  end
  if #reply > 2 then
    return reply
  end
  rcall('HSET', KEYS[1], 'committing', target)
  rcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'type', 'fleet.scale_down_committed', 'from', observed, 'to', target, 'at', now)
  return {3, target}
end
return {1, target}
