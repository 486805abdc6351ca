--[[
  Records one voice agent's heartbeat (SPEC 11), on Redis's clock: the pod is
  enrolled (its silence is watched from now on) with the time of this
  heartbeat, each listed call that is on this pod gets its media counters and
  the time its media_in last advanced, and a suspect pod becomes live again
  (back into its pool when allocatable). A dead pod rejoins only with a
  heartbeat listing none of the calls it held when declared dead: an agent
  still talking about them has not restarted them, so it stays dead (its
  heartbeat time is still recorded: it is not silent). Calls listed that are
  not (or no longer) on this pod, or whose allocation_id is not current, are
  answered back as unknown and change nothing: the agent should hang them up.
  A call marked rehome_requested for its current allocation (kept for re-homing
  by the liveness job, issue 20) is not put back in the media zset: one stall,
  one redirect.

  Input:
    KEYS[1] pod index set             pods
    KEYS[2] heartbeat zset            heartbeats
    KEYS[3] tier config document      config:tiers
    KEYS[4] call event stream         stream:calls
    KEYS[5] call media zset           calls:media
    ARGV[1] pod name
    ARGV[2] calls JSON: [[call_sid, allocation_id ('' = any), media_in, media_out], ...]
    ARGV[3] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[4] stream MAXLEN (approximate trim)
  Output:
    {1, liveness ('live'|'dead'), unknown call_sids JSON array, heartbeat time (Redis ms)}
    -1 unknown pod (not in the pod index): nothing recorded
  Events:
    stream:calls  type=pod.live pod tier from (suspect|dead) silent_ms at  (only when the pod was suspect or dead)
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (the pod, live again,
                  handed to a waiting request, includes/wait-queue.lua; its call_sid is published on wait:wake)
  Derived keys (pod-scoped, built from ARGV[3]): pod:{name}, call:{sid}, pod:tier:{name},
    pod:draining:{name}, pod:removing:{name}, pod:calls:{name}, pool:{tier}:available
    Hand-off to waiters (includes/wait-queue.lua): wait:queue, wait:tier:{tier},
    wait:merchant:{merchant_id}, waiter:{call_sid}, wait:wake,
    calls:active, stream:calls, call:{sid}, lease:{name}, merchant:calls:{merchant_id},
    allocation:seq, calls:pending
    rollout:live, rollout:stats:{version} (a hand-off to a waiter takes only a version the rollout serves, SPEC 12)
]]
--- @include "pod-state"
--- @include "liveness"

local rcall = redis.call
local name = ARGV[1]
if rcall('SISMEMBER', KEYS[1], name) == 0 then
  return -1
end
local P = cjson.decode(ARGV[3])
local now = redisNowMs()
local pod = rcall('HMGET', P.pod .. name, 'uid', 'liveness', 'heartbeat_uid', 'dead_calls', 'heartbeat_at')
local uid = pod[1] or ''
-- A mark left by a predecessor of the same name (another UID) is not this pod's.
local state = nil
if pod[3] == uid then
  state = pod[2]
elseif pod[2] then
  rcall('HDEL', P.pod .. name, 'liveness', 'liveness_since', 'dead_calls')
end

local unknown = {}
local listed = {}
for _, entry in ipairs(cjson.decode(ARGV[2])) do
  local sid, allocationId = tostring(entry[1]), tostring(entry[2])
  local mediaIn, mediaOut = tonumber(entry[3]), tonumber(entry[4])
  listed[sid] = true
  local key = P.call .. sid
  local call = rcall('HMGET', key, 'pod_name', 'allocation_id', 'media_in', 'state', 'media_in_at', 'connected_at',
    'rehome_requested')
  if call[1] ~= name or (allocationId ~= '' and allocationId ~= call[2]) then
    unknown[#unknown + 1] = sid
  else
    local advancedAt = tonumber(call[5])
    if not call[3] or mediaIn > tonumber(call[3]) then
      advancedAt = now
      rcall('HSET', key, 'media_in', mediaIn, 'media_in_at', now, 'media_out', mediaOut)
    else
      rcall('HSET', key, 'media_out', mediaOut)
    end
    -- Only a connected call can stall; it is watched from when media last moved or it connected, whichever is later.
    -- A call kept for re-homing (rehome_requested = its allocation, issue 20) is being redirected: not watched again.
    if call[4] == 'connected' and (not call[7] or call[7] ~= call[2]) then
      rcall('ZADD', KEYS[5], math.max(advancedAt or now, tonumber(call[6]) or 0), sid)
    end
  end
end

rcall('ZADD', KEYS[2], now, name)
rcall('HSET', P.pod .. name, 'heartbeat_at', now, 'heartbeat_uid', uid)
if state == 'dead' then
  for _, sid in ipairs(cjson.decode(pod[4] or '[]')) do
    if listed[sid] then
      return {1, 'dead', encodeList(unknown), now}
    end
  end
end
if state == 'suspect' or state == 'dead' then
  rcall('HDEL', P.pod .. name, 'liveness', 'liveness_since', 'dead_calls')
  local tier = rcall('GET', P.tier .. name) or ''
  rcall('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'type', 'pod.live', 'pod', name, 'tier', tier, 'from', state,
    'silent_ms', now - (tonumber(pod[5]) or now), 'at', now)
  refreshAvailability(P, loadTiers(KEYS[3]), name)
end
return {1, 'live', encodeList(unknown), now}
