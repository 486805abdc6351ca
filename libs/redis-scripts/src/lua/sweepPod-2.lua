--[[
  Zombie sweep for one pod: drops call ids whose record is gone (expired or
  deleted by hand), clears a lease or allocation that no live call backs,
  and recomputes the pod's availability and shared score from the real calls.

  Input:
    KEYS[1] pod index set             pods
    KEYS[2] tier config document      config:tiers
    ARGV[1] pod name
    ARGV[2] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
  Output:
    {1, corrections}
    0 unknown pod
    -2 tier config missing (flush): rebuild pending
  Events:
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (the freed pod handed to a
                  waiting request, includes/wait-queue.lua; its call_sid is published on wait:wake)
  Derived keys (pod-scoped, built from ARGV[2]): pod:{name}, pod:tier:{name},
    pod:draining:{name}, pod:removing:{name}, pod:calls:{name}, lease:{name}, pool:{tier}:available, call:{sid}
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
  return 0
end
local tiers = loadTiers(KEYS[2])
if not tiers then
  return -2
end
local P = cjson.decode(ARGV[2])
local corrections = 0
local uid = rcall('HGET', P.pod .. name, 'uid') or ''
for _, sid in ipairs(rcall('SMEMBERS', P.calls .. name)) do
  local call = rcall('HMGET', P.call .. sid, 'pod_name', 'pod_uid')
  if call[1] ~= name or (call[2] or '') ~= uid then
    rcall('SREM', P.calls .. name, sid)
    corrections = corrections + 1
  end
end
local leased = rcall('GET', P.lease .. name)
if leased and rcall('SISMEMBER', P.calls .. name, leased) == 0 then
  rcall('DEL', P.lease .. name)
  corrections = corrections + 1
end
local holder = rcall('HGET', P.pod .. name, 'allocated_call_sid')
if holder and rcall('SISMEMBER', P.calls .. name, holder) == 0 then
  rcall('HDEL', P.pod .. name, 'allocated_call_sid', 'allocated_at', 'source_pool', 'allocation_id')
  corrections = corrections + 1
end
if rcall('SCARD', P.calls .. name) == 0 then
  rcall('HSET', P.pod .. name, 'status', 'available')
end
local tier = rcall('GET', P.tier .. name)
if tier and tiers.tiers[tier] and tiers.tiers[tier].type == 'shared' then
  local score = rcall('ZSCORE', availableKey(P, tier), name)
  if score and tonumber(score) ~= rcall('SCARD', P.calls .. name) then
    corrections = corrections + 1
  end
end
refreshAvailability(P, tiers, name)
return {1, corrections}
