--[[
  Tells a waiting request its outcome, and times it out exactly: a waiter
  past its deadline leaves the queue in this same atomic step, so a hand-off
  (which runs inside the script that frees a pod) either happened before it
  (the call record exists: the request answers 200) or can no longer happen
  (the request answers 503 and no pod is ever bound to it). Any request for
  the call_sid may run it: duplicates of a waiting call share its outcome.

  Input:
    KEYS[1] call hash                 call:{call_sid}
    KEYS[2] the waiter                waiter:{call_sid}
    KEYS[3] wait queue zset           wait:queue
    ARGV[1] call_sid
    ARGV[2] wake-up channel (RedisKeys.waitChannel), published when the waiter times out
    ARGV[3] '1' to leave the queue now whatever the deadline (a request giving up after a
            Redis error), else '0'
    ARGV[4] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
  Output:
    {1, pod_name, tier, pod_uid, allocation_id, state, agent_version}   the call holds a pod (handed off, or
       allocated meanwhile); allocation_id and state '' for a record written before fencing
    {2, remaining_ms}              still waiting; run again after a wake-up or the remaining time
    -1 not waiting and no call: timed out now or before (503 NO_POD_AVAILABLE)
    A timeout publishes the call_sid on ARGV[2], waking duplicates of the request.
  Events: none
  Derived keys (built from ARGV[4]): wait:tier:{tier} of every tier of the waiter's chain and
    wait:merchant:{merchant_id} (includes/waiters.lua), left in the same step as wait:queue
]]
--- @include "waiters"

local rcall = redis.call
local call = rcall('HMGET', KEYS[1], 'pod_name', 'tier', 'pod_uid', 'allocation_id', 'state', 'agent_version')
if call[1] then
  return {1, call[1], call[2] or '', call[3] or '', call[4] or '', call[5] or '', call[6] or ''}
end
local P = cjson.decode(ARGV[4])
local waiter = rcall('HMGET', KEYS[2], 'deadline', 'chain', 'merchant')
local deadline = waiter[1]
if not deadline then
  rcall('ZREM', KEYS[3], ARGV[1])
  return -1
end
local time = rcall('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local remaining = tonumber(deadline) - now
if remaining > 0 and ARGV[3] ~= '1' then
  return {2, remaining}
end
rcall('ZREM', KEYS[3], ARGV[1])
unindexWaiter(P, ARGV[1], waiter[2], waiter[3])
rcall('DEL', KEYS[2])
rcall('PUBLISH', ARGV[2], ARGV[1])
return -1
