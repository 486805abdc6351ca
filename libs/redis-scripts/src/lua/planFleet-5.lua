--[[
  Sets the fleet's target number of voice-agent replicas (POST
  /api/v1/admin/fleet/scale or an autoscaler decision). Below the current size
  it marks the pods at ordinals >= target for removal (out of their pools at
  once, calls go on); above a pending target it cancels the removal of the
  pods it keeps and makes them available again (refreshAvailability, so a
  waiting request gets one), except pods a committed scale-down is removing.
  The reconciler's stepFleet carries the plan out; it lives here, in Redis.

  Input:
    KEYS[1] fleet plan                 fleet:plan
    KEYS[2] removal-marked pods        fleet:removing
    KEYS[3] pod index set              pods
    KEYS[4] tier config document       config:tiers
    KEYS[5] fleet event stream         stream:fleet
    ARGV[1] target replicas
    ARGV[2] StatefulSet name (its pods are {name}-{ordinal})
    ARGV[3] now (ms)
    ARGV[4] reason
    ARGV[5] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[6] stream maxlen
  Output:
    {1, previous_target, replicas, cancelled_count, marked_count}
    0 the StatefulSet's size was never observed (no fleet step ran yet)
  Events:
    stream:fleet  type=fleet.scale_requested from to replicas reason cancelled marked at
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (a pod whose removal is
                  cancelled handed to a waiting request, includes/wait-queue.lua; published on wait:wake)
  Derived keys (pod-scoped, built from ARGV[5]): pod:removing:{name}, pod:{name}, pod:tier:{name},
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
local plan = rcall('HMGET', KEYS[1], 'target', 'replicas', 'committing')
local replicas = tonumber(plan[2])
if not replicas then
  return 0
end
local P = cjson.decode(ARGV[5])
local previous = tonumber(plan[1]) or replicas
local committing = tonumber(plan[3])
local target = tonumber(ARGV[1])
local upto = math.max(replicas, previous, committing or 0)
local cancelled, marked = applyRemovalMarks(P, KEYS[2], KEYS[3], loadTiers(KEYS[4]), ARGV[2], target, upto, committing)
rcall('HSET', KEYS[1], 'target', target, 'from', previous, 'reason', ARGV[4], 'at', ARGV[3])
rcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*', 'type', 'fleet.scale_requested', 'from', previous, 'to', target,
  'replicas', replicas, 'reason', ARGV[4], 'cancelled', table.concat(cancelled, ','), 'marked', marked, 'at', ARGV[3])
return {1, previous, replicas, #cancelled, marked}
