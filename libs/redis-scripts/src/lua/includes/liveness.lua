-- Shared by the liveness scripts (SPEC 11): what happens to a call whose
-- voice agent stopped answering (its pod declared dead, or its media stalled).

-- Redis's own clock, ms: liveness is decided on one clock for every replica
-- of every app (a skewed host clock can neither hide nor invent silence).
local function redisNowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A Lua list as a JSON array (cjson encodes an empty table as an object).
local function encodeList(list)
  if #list == 0 then
    return '[]'
  end
  return cjson.encode(list)
end

-- RE-HOMING HOOK (SPEC 11 "Recovery"). A call of a provider in `rehome`
-- (a set of provider names; nil = none) stays on the pod: the reconciler
-- redirects it through the provider's REST API to the stream-ended URL, and
-- rehomeCall gives it a new pod and a new allocation_id there; until then the
-- call carries rehome_requested = its allocation_id and the old agent's release
-- is refused as stale (releaseCall: 409), while the provider's final status
-- callback still ends it (the caller hung up).
-- Any other call ends here with `reason` (agent_dead, media_stall), like a
-- release: record, indexes and the pod's slot go, a call.released event
-- carries the reason. The old agent's late release then finds no call (404)
-- and changes nothing. Returns 1 when the call was ended, 2 when it was kept
-- for re-homing, 0 when it is no longer on `name` (released or moved).
local function recoverCall(P, sid, name, activeKey, mediaKey, streamKey, maxlen, now, reason, rehome)
  local call = redis.call('HMGET', P.call .. sid, 'pod_name', 'pod_uid', 'tier', 'merchant_id', 'allocation_id', 'state', 'connected_at', 'provider')
  redis.call('ZREM', mediaKey, sid)
  if call[1] ~= name then
    return 0
  end
  if rehome and rehome[call[8] or ''] then
    -- The redirect under way is marked with the allocation it re-homes from
    -- (issue 20): releaseCall answers that allocation's agent as fenced (409)
    -- so its late release cannot end the call before the stream-ended request
    -- re-homes it, and the stall step does not redirect it again. The marker
    -- goes into the re-home ticket with the record; a new allocation drops it.
    redis.call('HSET', P.call .. sid, 'rehome_requested', call[5] or '')
    return 2
  end
  if call[4] and call[4] ~= '' then
    redis.call('SREM', P.merchantCalls .. call[4], sid)
  end
  redis.call('DEL', P.call .. sid)
  redis.call('ZREM', activeKey, sid)
  redis.call('ZREM', P.pendingCalls, sid)
  -- Only the incarnation the call was placed on holds its slot (as releaseCall).
  if redis.call('HGET', P.pod .. name, 'uid') == (call[2] or '') then
    redis.call('SREM', P.calls .. name, sid)
    if redis.call('GET', P.lease .. name) == sid then
      redis.call('DEL', P.lease .. name)
    end
    if redis.call('HGET', P.pod .. name, 'allocated_call_sid') == sid then
      redis.call('HDEL', P.pod .. name, 'allocated_call_sid', 'allocated_at', 'source_pool', 'allocation_id')
    end
    if redis.call('SCARD', P.calls .. name) == 0 then
      redis.call('HSET', P.pod .. name, 'status', 'available')
    end
  end
  redis.call('XADD', streamKey, 'MAXLEN', '~', maxlen, '*', 'type', 'call.released', 'call_sid', sid, 'pod', name,
    'tier', call[3] or '', 'reason', reason, 'at', now, 'allocation_id', call[5] or '', 'state', call[6] or '',
    'connected_at', call[7] or '')
  return 1
end
