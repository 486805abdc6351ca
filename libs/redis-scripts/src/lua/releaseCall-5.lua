--[[
  Releases a call: removes its record and gives the pod back to its pool when
  the pod is still the same incarnation and still allocatable. Idempotent: a
  second release finds no record and answers -1 (the API's 404, which voice
  agents treat as success).

  Input:
    KEYS[1] call hash                 call:{call_sid}
    KEYS[2] tier config document      config:tiers
    KEYS[3] active calls zset         calls:active
    KEYS[4] call event stream         stream:calls
    KEYS[5] tombstone                 tombstone:{call_sid}
    ARGV[1] call_sid
    ARGV[2] reason ('' when not given)
    ARGV[3] now, milliseconds since the Unix epoch
    ARGV[4] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[5] tombstone TTL, seconds (0 = no tombstone)
    ARGV[6] stream MAXLEN (approximate trim)
    ARGV[7] event type: 'call.released' or 'call.reaped'
    ARGV[8] release only a call allocated at or before this time, ms ('' = any): the
            stale-call reaper's cutoff, checked here so a call_sid reused since the
            reaper looked is never ended
    ARGV[9] allocation_id the caller released ('' = whatever allocation is current)
    ARGV[10] '1' = connect-timeout release: only a call still pending whose connect
            deadline is at or before ARGV[3]; '' = any state
    ARGV[11] pod the call must be on ('' = any): a voice agent releases only its own pod's calls
    ARGV[12] merchants the call's merchant_id must be one of, '|'-separated ('' = any): a
            scoped dispatcher token (a call with no merchant is outside every scope)
    ARGV[13] re-home ticket TTL, seconds ('' or 0 = no ticket): a release by the stream's
            stopped/failed callback with re-homing on (SPEC 11, issue 20) keeps the call's
            record at rehome:{call_sid} so rehomeCall can re-home it from the stream-ended
            request, whichever of the two the provider sends first. Any other release
            that finds no call deletes the call's ticket (same pod, allocation, merchants
            when given): the final status callback or the agent's release ends it (not the
            agent's release of a ticket marked rehome_requested: -11)
    ARGV[14] '1' = the liveness job ending a call it kept for re-homing whose redirect failed
            (issue 20): the rehome_requested marker does not fence it; '' = any other release
  Output:
    {1, pod_name, source_pool, was_draining (0|1)}
    -1 no such call (never allocated, already released, or ended with its pod), or
       allocated after the ARGV[8] cutoff
    -11 ARGV[9] is not the call's current allocation_id (a stale release; also from the pod ARGV[11]
        when the call was re-homed away from it, SPEC 11): nothing changed. Also a release naming
        the pod (ARGV[11]) or the allocation (ARGV[9]) of a call, or of a re-home ticket, whose
        rehome_requested marker is its current allocation_id (the liveness job kept it for
        re-homing, includes/liveness.lua; issue 20), unless ARGV[13] keeps a ticket, ARGV[14] is '1', or
        it is a reconciler backstop (ARGV[8] cutoff, ARGV[10] connect timeout): the
        frozen or dead agent's late release; the call and ticket stay
    -12 ARGV[10] is '1' and the call is connected or not yet due: nothing changed
    -15 the call is on another pod than ARGV[11]: nothing changed
    -16 the call's merchant is not in ARGV[12]: nothing changed
  Events:
    stream:calls  type=<ARGV[7]> call_sid pod tier reason at allocation_id state connected_at ('' if never connected)
                  agent_version ('' = no version label, SPEC 12)
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (the freed pod handed to a
                  waiting request, includes/wait-queue.lua; its call_sid is published on wait:wake)
  Derived keys (pod-scoped, named by the call record, built from ARGV[4]):
    pool:{tier}:available, pod:{name}, pod:tier:{name}, pod:draining:{name}, pod:removing:{name},
    pod:calls:{name}, lease:{name}, calls:pending (the call lifecycle, SPEC 9.2),
    rehome:{call_sid} (the re-home ticket, ARGV[13]),
    rollout:stats:{version} (a call allocated under a rollout, SPEC 12)
    Hand-off to waiters (includes/wait-queue.lua): wait:queue, wait:tier:{tier},
    wait:merchant:{merchant_id}, waiter:{call_sid}, wait:wake,
    calls:active, stream:calls, call:{sid}, lease:{name}, merchant:calls:{merchant_id},
    allocation:seq, calls:pending
    rollout:live, rollout:stats:{version} (a hand-off to a waiter takes only a version the rollout serves, SPEC 12)
]]
--- @include "pod-state"

local rcall = redis.call
local sid = ARGV[1]
local call = rcall('HMGET', KEYS[1], 'pod_name', 'pod_uid', 'tier', 'source_pool', 'merchant_id', 'allocation_id',
  'state', 'connect_deadline', 'connected_at', 'agent_version', 'rollout_revision', 'rehome_requested')
local name = call[1]
local P = cjson.decode(ARGV[4])
if not name then
  rcall('ZREM', KEYS[3], sid)
  rcall('ZREM', P.pendingCalls, sid)
  -- A release of a call its stream-status callback released already (the provider's final
  -- status callback, the agent's own release) ends its re-home ticket too: the caller hung
  -- up or the agent finished, so the stream-ended request hangs up (issue 20). Only a
  -- release allowed to end that allocation: same pod, allocation and merchant scope.
  local ticket = P.rehomeTicket .. sid
  if (tonumber(ARGV[13]) or 0) == 0 and ARGV[8] == '' and ARGV[10] ~= '1' and rcall('EXISTS', ticket) == 1 then
    local held = rcall('HMGET', ticket, 'pod_name', 'allocation_id', 'merchant_id', 'rehome_requested')
    if (ARGV[11] == '' or ARGV[11] == held[1]) and (ARGV[9] == '' or ARGV[9] == held[2])
      and (ARGV[12] == '' or string.find('|' .. ARGV[12] .. '|', '|' .. (held[3] or '') .. '|', 1, true)) then
      -- A re-home the liveness job asked for (rehome_requested, issue 20): the old
      -- agent (its pod or its allocation named) is fenced; only the provider ends it.
      if held[4] and held[4] == held[2] and (ARGV[11] ~= '' or ARGV[9] ~= '') and ARGV[14] ~= '1' then
        return -11
      end
      rcall('DEL', ticket)
    end
  end
  return -1
end
-- Who may end it (SPEC 10.1), decided on the record this script reads, so a
-- call re-allocated to another pod between the caller's look and now is refused.
if ARGV[11] ~= '' and ARGV[11] ~= name then
  -- SPEC 11: the agent a call was re-homed away from, naming its old allocation: stale, not someone else's call.
  if ARGV[9] ~= '' and ARGV[9] ~= call[6]
    and string.find(rcall('HGET', KEYS[1], 'rehomed_pods') or '', '|' .. ARGV[11] .. '|', 1, true) then
    return -11
  end
  return -15
end
if ARGV[12] ~= '' and not string.find('|' .. ARGV[12] .. '|', '|' .. (call[5] or '') .. '|', 1, true) then
  return -16
end
if ARGV[8] ~= '' and tonumber(rcall('ZSCORE', KEYS[3], sid) or '0') > tonumber(ARGV[8]) then
  return -1
end
-- >>> call lifecycle (SPEC 9.2): fencing and the connect deadline, decided
-- here so that a connect (connectCall) or a re-allocation of the same call_sid
-- between the caller's look and this script wins.
if ARGV[9] ~= '' and ARGV[9] ~= call[6] then
  return -11
end
-- A re-home the liveness job asked for (rehome_requested = this allocation,
-- includes/liveness.lua; issue 20): the agent it was asked for is frozen or
-- dead, so its late release (naming its pod or its allocation) is answered as
-- fenced and changes nothing, as it will be once the stream-ended request has
-- re-homed the call (SPEC 11). The provider's releases still end it: its final
-- status callback (no pod, no allocation named: the caller hung up) and its
-- stream-stopped callback (ARGV[13]: the record moves to the re-home ticket,
-- marker included). So do the reconciler's backstops (the max-call-duration
-- reaper, ARGV[8]; the connect timeout, ARGV[10]): a redirect that never
-- comes must not keep the call forever.
if call[12] and call[12] == call[6] and (ARGV[11] ~= '' or ARGV[9] ~= '') and (tonumber(ARGV[13]) or 0) == 0
  and ARGV[14] ~= '1' and ARGV[8] == '' and ARGV[10] ~= '1' then
  return -11
end
if ARGV[10] == '1' and (call[7] ~= 'pending' or not call[8] or tonumber(call[8]) > tonumber(ARGV[3])) then
  if call[7] ~= 'pending' then
    rcall('ZREM', P.pendingCalls, sid)
  end
  return -12
end
rcall('ZREM', P.pendingCalls, sid)
-- <<< call lifecycle
local tiers = loadTiers(KEYS[2])

-- >>> re-home ticket (SPEC 11, issue 20): the whole record, in the same step as
-- the release, for rehomeCall to bring back if the stream-ended request asks.
local ticketTtl = tonumber(ARGV[13]) or 0
if ticketTtl > 0 then
  local ticket = P.rehomeTicket .. sid
  rcall('DEL', ticket)
  rcall('HSET', ticket, unpack(rcall('HGETALL', KEYS[1])))
  rcall('EXPIRE', ticket, ticketTtl)
end
-- <<< re-home ticket

rcall('DEL', KEYS[1])
rcall('ZREM', KEYS[3], sid)
rcall('SREM', P.calls .. name, sid)
if call[5] and call[5] ~= '' then
  rcall('SREM', P.merchantCalls .. call[5], sid)
end
-- Draining for either reason: an operator's drain or a scale-down's removal (isHeld).
local wasDraining = isHeld(P, name) and 1 or 0

-- Only the incarnation the call was placed on gets the slot back: a pod that
-- restarted under the same name (new UID) already started empty.
local pod = rcall('HMGET', P.pod .. name, 'uid', 'allocated_call_sid')
if pod[1] == (call[2] or '') then
  if rcall('GET', P.lease .. name) == sid then
    rcall('DEL', P.lease .. name)
  end
  if pod[2] == sid then
    rcall('HDEL', P.pod .. name, 'allocated_call_sid', 'allocated_at', 'source_pool', 'allocation_id')
  end
  if rcall('SCARD', P.calls .. name) == 0 then
    rcall('HSET', P.pod .. name, 'status', 'available')
  end
  refreshAvailability(P, tiers, name)
end

-- >>> versioned fleets (SPEC 12): a call allocated under a rollout is counted
-- on its version (releases by reason, connect timeouts for the guardrail).
if call[11] then
  local stats = P.rolloutStats .. (call[10] or '')
  rcall('HINCRBY', stats, 'released:' .. (ARGV[2] ~= '' and ARGV[2] or 'unspecified'), 1)
  if ARGV[10] == '1' then
    rcall('HINCRBY', stats, 'connect_timeouts', 1)
    -- The guardrail judges the live revision's calls only (SPEC 12).
    rcall('HINCRBY', stats, 'guard:' .. call[11] .. ':connect_timeouts', 1)
  end
end
-- <<< versioned fleets

local tombstoneTtl = tonumber(ARGV[5])
if tombstoneTtl > 0 then
  rcall('SET', KEYS[5], ARGV[2] ~= '' and ARGV[2] or 'released', 'EX', tombstoneTtl)
end
rcall('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'type', ARGV[7], 'call_sid', sid, 'pod', name,
  'tier', call[3] or '', 'reason', ARGV[2], 'at', ARGV[3], 'allocation_id', call[6] or '', 'state', call[7] or '',
  'connected_at', call[9] or '', 'agent_version', call[10] or '')
return {1, name, call[4] or ('pool:' .. (call[3] or '')), wasDraining}
