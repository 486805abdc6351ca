--[[
  One step of the liveness job (SPEC 11), on Redis's clock: every enrolled
  pod silent for ARGV[1] ms becomes suspect (out of its pool like a drained
  pod; its calls untouched), and silent for ARGV[2] ms dead: each of its calls
  goes through the re-homing hook (includes/liveness.lua recoverCall: a call
  of a provider in ARGV[6] stays for the reconciler to redirect to its
  stream-ended URL, any other ends with reason agent_dead), the call_sids are kept on the pod
  (dead_calls) for the rejoin rule of recordHeartbeat, and the pod leaves the
  heartbeat zset (a dead pod is not looked at again until it heartbeats).
  An enrolled pod that left the pod index, or was replaced under its name
  (new UID, no heartbeat yet), is unenrolled: its successor is watched from
  its own first heartbeat. Bounded: at most ARGV[5] silent pods per run.
  Disruption guard: when every enrolled pod (two or more) is silent at once,
  the likelier fault is ours (allocation-api down, a network split between
  the agents and the router), not every agent at the same moment, so nobody
  is judged in that run (as Kubernetes' node lifecycle controller stops
  evicting in a full disruption); the first heartbeat that gets through
  ends it.

  Input:
    KEYS[1] heartbeat zset            heartbeats
    KEYS[2] pod index set             pods
    KEYS[3] tier config document      config:tiers
    KEYS[4] call event stream         stream:calls
    KEYS[5] active calls zset         calls:active
    KEYS[6] call media zset           calls:media
    ARGV[1] suspect after this much silence, ms (HEARTBEAT_SUSPECT_MS)
    ARGV[2] dead after this much silence, ms (HEARTBEAT_DEAD_MS)
    ARGV[3] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[4] stream MAXLEN (approximate trim)
    ARGV[5] most silent pods to look at in this run
    ARGV[6] providers whose calls are re-homed, '|'-separated ('' = none: every call of a dead pod ends)
  Output:
    {1, transitions JSON [[pod, 'suspect'|'dead', uid, calls ended, calls kept], ...], unenrolled count, now (Redis ms), disrupted (0|1)}
    (calls kept: a JSON list of {call_sid, provider, allocation_id} lists, the calls left for re-homing)
  Events:
    stream:calls  type=pod.suspect pod tier silent_ms active_calls at
    stream:calls  type=pod.dead pod tier silent_ms calls at  (calls = how many were on it)
    stream:calls  type=call.released call_sid pod tier reason=agent_dead at allocation_id state connected_at  (one per call of a dead pod)
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (never in practice:
                  refreshAvailability hands an allocatable pod to a waiter, and a suspect or dead pod is not allocatable)
  Derived keys (pod-scoped, built from ARGV[3]): pod:{name}, call:{sid}, pod:tier:{name},
    pod:draining:{name}, pod:removing:{name}, pod:calls:{name}, lease:{name}, merchant:calls:{merchant_id},
    calls:pending, pool:{tier}:available
    Hand-off to waiters (includes/wait-queue.lua): wait:queue, wait:tier:{tier},
    wait:merchant:{merchant_id}, waiter:{call_sid}, wait:wake,
    calls:active, stream:calls, allocation:seq
    rollout:live, rollout:stats:{version} (a hand-off to a waiter takes only a version the rollout serves, SPEC 12)
]]
--- @include "pod-state"
--- @include "liveness"

local rcall = redis.call
local P = cjson.decode(ARGV[3])
local now = redisNowMs()
local suspectMs, deadMs = tonumber(ARGV[1]), tonumber(ARGV[2])
local rehome = nil
for provider in string.gmatch(ARGV[6] or '', '[^|]+') do
  rehome = rehome or {}
  rehome[provider] = true
end
local enrolled = rcall('ZCARD', KEYS[1])
if enrolled >= 2 and rcall('ZCOUNT', KEYS[1], '-inf', now - suspectMs) == enrolled then
  return {1, '[]', 0, now, 1}
end
local silent = rcall('ZRANGEBYSCORE', KEYS[1], '-inf', now - suspectMs, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[5]))
local transitions = {}
local unenrolled = 0
local tiers = nil
for i = 1, #silent, 2 do
  local name, at = silent[i], tonumber(silent[i + 1])
  local pod = rcall('HMGET', P.pod .. name, 'uid', 'liveness', 'heartbeat_uid')
  if rcall('SISMEMBER', KEYS[2], name) == 0 or not pod[1] or pod[1] ~= pod[3] then
    rcall('ZREM', KEYS[1], name)
    rcall('HDEL', P.pod .. name, 'liveness', 'liveness_since', 'dead_calls')
    unenrolled = unenrolled + 1
  else
    tiers = tiers or loadTiers(KEYS[3])
    local tier = rcall('GET', P.tier .. name) or ''
    local silentMs = now - at
    if pod[2] == 'dead' then
      -- Dead already (it heartbeated since, still listing its old calls): silent again, nothing new.
      rcall('ZREM', KEYS[1], name)
    elseif silentMs >= deadMs then
      local sids = rcall('SMEMBERS', P.calls .. name)
      local ended, kept = 0, {}
      for _, sid in ipairs(sids) do
        local outcome = recoverCall(P, sid, name, KEYS[5], KEYS[6], KEYS[4], ARGV[4], now, 'agent_dead', rehome)
        if outcome == 1 then
          ended = ended + 1
        elseif outcome == 2 then
          local call = rcall('HMGET', P.call .. sid, 'provider', 'allocation_id')
          kept[#kept + 1] = {sid, call[1] or '', call[2] or ''}
        end
      end
      rcall('HSET', P.pod .. name, 'liveness', 'dead', 'liveness_since', now, 'dead_calls', encodeList(sids))
      rcall('ZREM', KEYS[1], name)
      rcall('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'type', 'pod.dead', 'pod', name, 'tier', tier,
        'silent_ms', silentMs, 'calls', #sids, 'at', now)
      refreshAvailability(P, tiers, name)
      transitions[#transitions + 1] = {name, 'dead', pod[1], ended, kept}
    elseif pod[2] ~= 'suspect' then
      rcall('HSET', P.pod .. name, 'liveness', 'suspect', 'liveness_since', now)
      rcall('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'type', 'pod.suspect', 'pod', name, 'tier', tier,
        'silent_ms', silentMs, 'active_calls', rcall('SCARD', P.calls .. name), 'at', now)
      refreshAvailability(P, tiers, name)
      transitions[#transitions + 1] = {name, 'suspect', pod[1], 0, {}}
    end
  end
end
return {1, encodeList(transitions), unenrolled, now, 0}
