--[[
  Drains or undrains a pod. A drained pod leaves its available pool at once
  and gets no new call; its live calls go on and release normally. The flag
  has no TTL: it lasts until undrain or until the pod is deleted or replaced
  (the Go router's 6-minute TTL could silently re-enable a terminating pod).
  A shared pod's load is its set of calls, so it survives drain and undrain.

  Input:
    KEYS[1] pod index set             pods
    KEYS[2] tier config document      config:tiers
    ARGV[1] pod name
    ARGV[2] '1' to drain, '0' to undrain
    ARGV[3] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[4] now, ms since the epoch (the event's `at`)
    ARGV[5] stream max length (approximate trim)
  Output:
    {1, active_calls, tier}
    -1 unknown pod
  Events:
    stream:calls  type=pod.drained pod tier active_calls at  (drain; type=pod.undrained on undrain; only when the mark changes: a repeated
                  drain is not a new event; the pod stream is the watcher's pipeline, so operator actions go here)
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (the freed pod handed to a
                  waiting request, includes/wait-queue.lua; its call_sid is published on wait:wake)
  Derived keys (pod-scoped, built from ARGV[3]): pod:{name}, pod:tier:{name},
    pod:draining:{name}, pod:removing:{name}, pod:calls:{name}, pool:{tier}:available
    Hand-off to waiters (includes/wait-queue.lua): wait:queue, wait:tier:{tier},
    wait:merchant:{merchant_id}, waiter:{call_sid}, wait:wake,
    calls:active, stream:calls, call:{sid}, lease:{name}, merchant:calls:{merchant_id},
    allocation:seq, calls:pending
    rollout:live, rollout:stats:{version} (a hand-off to a waiter takes only a version the rollout serves, SPEC 12)
]]
--- @include "pod-state"

local rcall = redis.call
local name = ARGV[1]
if rcall('SISMEMBER', KEYS[1], name) == 0 then
  return -1
end
local P = cjson.decode(ARGV[3])
local changed
if ARGV[2] == '1' then
  changed = rcall('SET', P.draining .. name, '1', 'NX') ~= false
else
  changed = rcall('DEL', P.draining .. name) == 1
end
local activeCalls = rcall('SCARD', P.calls .. name)
local tier = rcall('GET', P.tier .. name) or ''
if changed and ARGV[2] == '1' then
  rcall('XADD', P.callStream, 'MAXLEN', '~', ARGV[5], '*', 'type', 'pod.drained', 'pod', name, 'tier', tier, 'active_calls', activeCalls, 'at', ARGV[4])
elseif changed then
  rcall('XADD', P.callStream, 'MAXLEN', '~', ARGV[5], '*', 'type', 'pod.undrained', 'pod', name, 'tier', tier, 'active_calls', activeCalls, 'at', ARGV[4])
end
refreshAvailability(P, loadTiers(KEYS[2]), name)
return {1, activeCalls, tier}
