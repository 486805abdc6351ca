--[[
  The media-stall step of the liveness job (SPEC 11, MEDIA_STALL_SECONDS): a
  connected call whose media_in (reported by its agent's heartbeats) has not
  advanced for ARGV[1] ms goes through the re-homing hook alone
  (includes/liveness.lua recoverCall): a call of a provider listed in ARGV[6]
  (re-homing on, issue 20) stays on its pod and is returned for the
  reconciler to redirect to its stream-ended URL, like a dead pod's calls;
  any other ends with reason media_stall and its pod goes back to its pool
  when allocatable. Entries
  of calls released, re-allocated, not connected or already kept for re-homing
  (rehome_requested, set by recoverCall: redirected once, issue 20) leave the zset. With
  ARGV[1] = 0 (off) nothing is ended: entries older than ARGV[2] are only
  pruned or looked at again later, so the zset stays bounded by live calls.
  On Redis's clock; at most ARGV[5] entries per run.

  Input:
    KEYS[1] call media zset           calls:media
    KEYS[2] tier config document      config:tiers
    KEYS[3] active calls zset         calls:active
    KEYS[4] call event stream         stream:calls
    ARGV[1] stall after this long without media_in advancing, ms (0 = off)
    ARGV[2] with stalls off: look at an entry again after this long, ms
    ARGV[3] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[4] stream MAXLEN (approximate trim)
    ARGV[5] most entries to look at in this run
    ARGV[6] providers whose stalled calls are kept for re-homing, '|'-separated ('' = none)
  Output:
    {1, ended call_sids JSON array, pruned count, kept JSON array of [call_sid, provider, allocation_id]}
  Events:
    stream:calls  type=call.released call_sid pod tier reason=media_stall at allocation_id state connected_at
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (the freed pod handed to a
                  waiting request, includes/wait-queue.lua; its call_sid is published on wait:wake)
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
local stallMs = tonumber(ARGV[1])
local cutoff = now - (stallMs > 0 and stallMs or tonumber(ARGV[2]))
local due = rcall('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[5]))
local rehome = nil
for provider in string.gmatch(ARGV[6] or '', '[^|]+') do
  rehome = rehome or {}
  rehome[provider] = true
end
local ended, kept = {}, {}
local pruned = 0
local tiers = nil
for _, sid in ipairs(due) do
  local call = rcall('HMGET', P.call .. sid, 'pod_name', 'state', 'media_in_at', 'connected_at', 'allocation_id',
    'rehome_requested')
  local since = math.max(tonumber(call[3]) or 0, tonumber(call[4]) or 0)
  -- A call already kept for re-homing (rehome_requested = its allocation) is being
  -- redirected: never again from here (issue 20); its new allocation is watched anew.
  if not call[1] or call[2] ~= 'connected' or (call[6] and call[6] == call[5]) then
    rcall('ZREM', KEYS[1], sid)
    pruned = pruned + 1
  elseif since > cutoff then
    rcall('ZADD', KEYS[1], since, sid)
  elseif stallMs > 0 then
    if recoverCall(P, sid, call[1], KEYS[3], KEYS[1], KEYS[4], ARGV[4], now, 'media_stall', rehome) == 2 then
      local kept1 = rcall('HMGET', P.call .. sid, 'provider', 'allocation_id')
      kept[#kept + 1] = {sid, kept1[1] or '', kept1[2] or ''}
    else
      tiers = tiers or loadTiers(KEYS[2])
      refreshAvailability(P, tiers, call[1])
      ended[#ended + 1] = sid
    end
  else
    rcall('ZADD', KEYS[1], now, sid)
  end
end
return {1, encodeList(ended), pruned, encodeList(kept)}
