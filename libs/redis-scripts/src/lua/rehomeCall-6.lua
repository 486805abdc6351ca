--[[
  Re-homes a live call whose media stream ended while its voice agent had not
  released it (SPEC 11 "Recovery"): the provider asked the stream-ended URL of
  allocation ARGV[2] (Twilio's <Connect action>, Plivo's <Redirect>). In one
  step: the old allocation is fenced (a new allocation_id, so the old agent's
  late release/connected gets STALE_ALLOCATION, and its pod no longer matches,
  NOT_YOUR_CALL), the old pod's slot is freed by the pool rules (only the
  incarnation the call was placed on; a suspect or dead pod stays out of its
  pool), a pod of the call's chain other than the old pod is bound to the
  call_sid (of a version the live rollout serves when one is free anywhere in
  the chain, else of any version, SPEC 12), and call.rehomed is written with
  both pods and the cause. The new allocation drops the rehome_requested
  marker the liveness job set (includes/liveness.lua).
  At most ARGV[6] re-homes per call; beyond it, or with no pod free anywhere in
  the chain, the call is released here (reason rehome_exhausted / rehome_no_pod)
  and the provider plays its failure document.
  A re-homed call takes a free pod ahead of queued new calls: its caller is
  already on the line (the wait queue is for callers not yet answered).
  Idempotent: the provider retrying the same stream-ended request (ARGV[2] is
  the allocation this call was re-homed from) gets the same new allocation.
  Order-independent (issue 20): a call already released by its stream's
  stopped/failed callback left a re-home ticket (rehome:{call_sid}, releaseCall
  ARGV[13]); when the call is gone and the ticket names allocation ARGV[2], the
  record comes back from the ticket (consumed here) and is re-homed the same
  way (its old pod's slot was already freed by that release; the release's
  tombstone does not block it). A call its agent released leaves no ticket.

  Input:
    KEYS[1] call hash                 call:{call_sid}
    KEYS[2] merchant config hash      merchant:config
    KEYS[3] tier config document      config:tiers
    KEYS[4] active calls zset         calls:active
    KEYS[5] call event stream         stream:calls
    KEYS[6] tombstone                 tombstone:{call_sid}
    ARGV[1] call_sid
    ARGV[2] allocation_id whose stream ended (the stream-ended URL's)
    ARGV[3] now, milliseconds since the Unix epoch
    ARGV[4] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[5] stream MAXLEN (approximate trim)
    ARGV[6] most re-homes per call (REHOME_MAX)
    ARGV[7] cause when the old pod is not declared dead ('stream_ended'); a dead pod's call is 'agent_dead'
    ARGV[8] call record TTL, seconds
    ARGV[9] connect deadline, ms after allocation (0 = none; SPEC 9.2)
    ARGV[10] tombstone TTL, seconds (0 = none), for a call released here
  Output:
    {1, pod_name, tier, pod_uid, allocation_id, old_pod, rehomes (this call's count), agent_version, repeated (0|1)}
    -1 no such call and no re-home ticket for ARGV[2]: released by its agent (or never allocated): the provider hangs up
    -2 state missing (tier config gone after a flush): nothing changed
    -11 ARGV[2] is neither the call's current allocation nor the one it was re-homed from: nothing changed
    -18 the call was re-homed ARGV[6] times already: released (reason rehome_exhausted)
    -19 no pod of the chain other than the old one can take it: released (reason rehome_no_pod)
  Events:
    stream:calls  type=call.rehomed call_sid from_pod pod tier cause at from_allocation_id allocation_id rehomes
    stream:calls  type=call.released call_sid pod tier reason at allocation_id state connected_at  (-18, -19)
    stream:calls  type=pod.suspect pod tier cause(call_rehomed) call_sid active_calls at  (the old pod, when it heartbeats
                  and is neither suspect nor dead yet: out of its pool until its next heartbeat)
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (the new
                  pod, includes/wait-queue.lua bindCall; or the freed old pod handed to a waiter)
  Derived keys (pod-scoped, named by the call record and the chain, built from ARGV[4]):
    pool:{tier}:available, pod:{name}, pod:tier:{name}, pod:draining:{name}, pod:removing:{name},
    pod:calls:{name}, lease:{name}, merchant:calls:{merchant_id}, calls:pending, allocation:seq,
    rehome:{call_sid} (the re-home ticket)
    Hand-off to waiters (includes/wait-queue.lua): wait:queue, wait:tier:{tier},
    wait:merchant:{merchant_id}, waiter:{call_sid}, wait:wake, call:{sid}, calls:active, stream:calls
    rollout:live, rollout:stats:{version} (a hand-off to a waiter takes only a version the rollout serves, SPEC 12;
    the new pod is of a served version when one is free)
]]
--- @include "pod-state"
--- @include "chain"

local rcall = redis.call
local sid, fromAllocation, now = ARGV[1], ARGV[2], ARGV[3]
local P = cjson.decode(ARGV[4])
local FIELDS = { 'pod_name', 'pod_uid', 'tier', 'merchant_id', 'allocation_id', 'state',
  'connected_at', 'rehomes', 'rehomed_from_allocation', 'provider', 'metadata', 'agent_version', 'rehome_from', 'rehomed_pods' }
local call = rcall('HMGET', KEYS[1], unpack(FIELDS))
local fromTicket = false
if not call[1] then
  -- Released by its stream-status callback before this request: re-home from its ticket.
  local ticket = P.rehomeTicket .. sid
  if rcall('HGET', ticket, 'allocation_id') ~= fromAllocation then
    return -1
  end
  call = rcall('HMGET', ticket, unpack(FIELDS))
  fromTicket = true
end
local old = call[1]
if not old then
  return -1
end
local rehomes = tonumber(call[8]) or 0
if fromAllocation == call[9] then
  return {1, old, call[3] or '', call[2] or '', call[5] or '', call[13] or '', rehomes, call[12] or '', 1}
end
if fromAllocation ~= call[5] then
  return -11
end
local tiers = loadTiers(KEYS[3])
if not tiers or not tiers.chains then
  return -2
end
if fromTicket then
  rcall('DEL', P.rehomeTicket .. sid)
end

-- The old pod's slot goes back first, whatever comes next (as releaseCall):
-- only the incarnation the call was placed on held it. A call from its
-- ticket was released already: its slot went back then.
if not fromTicket then
  rcall('SREM', P.calls .. old, sid)
  if rcall('HGET', P.pod .. old, 'uid') == (call[2] or '') then
    if rcall('GET', P.lease .. old) == sid then
      rcall('DEL', P.lease .. old)
    end
    if rcall('HGET', P.pod .. old, 'allocated_call_sid') == sid then
      rcall('HDEL', P.pod .. old, 'allocated_call_sid', 'allocated_at', 'source_pool', 'allocation_id')
    end
    if rcall('SCARD', P.calls .. old) == 0 then
      rcall('HSET', P.pod .. old, 'status', 'available')
    end
  end
end

-- The old agent let a live call's stream end without releasing it (it crashed,
-- or its media stalled). If it heartbeats (SPEC 11), it is suspect from now
-- until its next heartbeat: a crashed agent's freed pod must not take a new or
-- re-homed call in the seconds before the liveness job can declare it dead (a
-- healthy agent's next heartbeat, within HEARTBEAT_INTERVAL_MS, makes it live
-- again). A pod that never heartbeats cannot be judged and is left as it is; a
-- dead one stays dead.
local oldPod = rcall('HMGET', P.pod .. old, 'uid', 'heartbeat_uid', 'liveness')
if oldPod[1] and oldPod[1] == (call[2] or '') and oldPod[2] == oldPod[1] and not oldPod[3] then
  rcall('HSET', P.pod .. old, 'liveness', 'suspect', 'liveness_since', now)
  rcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'type', 'pod.suspect', 'pod', old,
    'tier', rcall('GET', P.tier .. old) or '', 'cause', 'call_rehomed', 'call_sid', sid,
    'active_calls', rcall('SCARD', P.calls .. old), 'at', now)
  refreshAvailability(P, tiers, old)
end

local function endCall(reason)
  if fromTicket then
    -- Released already (its release event and tombstone were written then): the ticket is gone, nothing else to undo.
    return
  end
  rcall('DEL', KEYS[1])
  rcall('ZREM', KEYS[4], sid)
  rcall('ZREM', P.pendingCalls, sid)
  if call[4] and call[4] ~= '' then
    rcall('SREM', P.merchantCalls .. call[4], sid)
  end
  local ttl = tonumber(ARGV[10])
  if ttl > 0 then
    rcall('SET', KEYS[6], reason, 'EX', ttl)
  end
  rcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'type', 'call.released', 'call_sid', sid, 'pod', old,
    'tier', call[3] or '', 'reason', reason, 'at', now, 'allocation_id', call[5] or '', 'state', call[6] or '',
    'connected_at', call[7] or '')
  refreshAvailability(P, tiers, old)
end

if rehomes >= tonumber(ARGV[6]) then
  endCall('rehome_exhausted')
  return -18
end

-- The chain, as allocateCall walks it (without the rollout split's draw: a
-- re-homed call takes any version the rollout serves).
local merchant = call[4] or ''
local raw = merchant ~= '' and rcall('HGET', KEYS[2], merchant) or nil
-- The chain allocateCall walks (includes/chain.lua). A merchant config broken
-- since the call was placed falls back to the default chain: the caller is
-- already on the line.
local chain = merchantChain(tiers, raw) or merchantChain(tiers, nil)

-- Versioned fleets (SPEC 12, issue 20): a pod of a version the live rollout
-- serves first (the hand-off's rule, includes/wait-queue.lua servedVersions),
-- so a re-homed call does not land on a version promoted away or rolled back;
-- any version only when no serving pod is free in the whole chain (a caller
-- already on the line is never refused for a canary). No rollout: any version.
local served = servedVersions(P)
local function usable(name, servingOnly)
  if name == old then
    return false
  end
  local state = rcall('HMGET', P.pod .. name, 'ready', 'terminating', 'version')
  if servingOnly and not served[state[3] or ''] then
    return false
  end
  return state[1] == '1' and state[2] ~= '1' and not isHeld(P, name)
end

local chosen, chosenTier, spec
for pass = 1, served and 2 or 1 do
  local servingOnly = served ~= nil and pass == 1
  for _, tier in ipairs(chain) do
    spec = tiers.tiers[tier]
    if spec then
      local key = availableKey(P, tier)
      if spec.type == 'shared' then
        for _, name in ipairs(rcall('ZRANGEBYSCORE', key, '-inf', '(' .. spec.max_concurrent, 'LIMIT', 0, 32)) do
          if usable(name, servingOnly) and rcall('SCARD', P.calls .. name) < spec.max_concurrent then
            chosen = name
            break
          end
        end
      else
        for _, name in ipairs(rcall('SMEMBERS', key)) do
          if usable(name, servingOnly) and rcall('SCARD', P.calls .. name) == 0 and rcall('EXISTS', P.lease .. name) == 0 then
            chosen = name
            break
          end
        end
      end
    end
    if chosen then
      chosenTier = tier
      break
    end
  end
  if chosen then
    break
  end
end
if not chosen then
  endCall('rehome_no_pod')
  return -19
end

-- The new allocation replaces the old one on the same record: what belonged to
-- the old stream (its connection, media counters, split revision) goes.
rcall('HDEL', KEYS[1], 'connected_at', 'connect_deadline', 'media_in', 'media_out', 'media_in_at', 'rollout_revision',
  'rehome_requested')
local uid, allocationId, version = bindCall(P, KEYS[4], KEYS[5], { sid = sid, merchant = merchant,
  provider = call[10] or '', metadata = call[11] or '', ttl = tonumber(ARGV[8]), maxlen = ARGV[5],
  connectMs = tonumber(ARGV[9]) }, chosen, chosenTier, spec, now)
rehomes = rehomes + 1
local cause = rcall('HGET', P.pod .. old, 'liveness') == 'dead' and 'agent_dead' or ARGV[7]
-- rehomed_pods ('|a|b|'): every pod the call left, so their agents' late release/connected
-- is answered as stale (409) rather than as someone else's call (releaseCall, connectCall).
rcall('HSET', KEYS[1], 'rehomes', rehomes, 'rehome_from', old, 'rehomed_from_allocation', call[5],
  'rehomed_pods', (call[14] or '|') .. old .. '|')
rcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'type', 'call.rehomed', 'call_sid', sid, 'from_pod', old,
  'pod', chosen, 'tier', chosenTier, 'cause', cause, 'at', now, 'from_allocation_id', call[5],
  'allocation_id', allocationId, 'rehomes', rehomes)
-- Last: the freed old pod may be handed to a waiter, never to this call.
refreshAvailability(P, tiers, old)
return {1, chosen, chosenTier, uid, tostring(allocationId), old, rehomes, version, 0}
