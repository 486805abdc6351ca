--[[
  Marks a call connected: its media stream reached the voice agent (the
  agent's POST /api/v1/connected, or the provider's stream-started callback).
  From then on the connect-timeout release (releaseCall with ARGV[10] '1')
  refuses the call; the decision is whichever script Redis runs first.
  Idempotent: connecting a connected call changes nothing and keeps the first
  connected_at.

  Input:
    KEYS[1] call hash                 call:{call_sid}
    KEYS[2] pending calls zset        calls:pending
    KEYS[3] call event stream         stream:calls
    ARGV[1] call_sid
    ARGV[2] allocation_id the caller connects ('' = whatever allocation is current)
    ARGV[3] now, milliseconds since the Unix epoch
    ARGV[4] stream MAXLEN (approximate trim)
    ARGV[5] who reported it ('api', 'twilio', 'plivo')
    ARGV[6] pod the call must be on ('' = any): a voice agent connects only its own pod's calls
    ARGV[7] merchants the call's merchant_id must be one of, '|'-separated ('' = any): a
            scoped dispatcher token (a call with no merchant is outside every scope)
    ARGV[8] pod key prefixes JSON (RedisKeys.podKeyPrefixes): a call allocated under a
            rollout counts its connect on its version (SPEC 12 guardrail)
  Output:
    {1, pod_name, allocation_id ('' for a record written before fencing), connected_at ms, was_connected (0|1)}
    -1 no such call (never allocated or already released)
    -11 ARGV[2] is not the call's current allocation_id (also from the pod ARGV[6] when the call was
        re-homed away from it, SPEC 11): nothing changed
    -15 the call is on another pod than ARGV[6]: nothing changed
    -16 the call's merchant is not in ARGV[7]: nothing changed
  Events:
    stream:calls  type=call.connected call_sid pod allocation_id state connected_at source at
  Derived keys (named by the call record, built from ARGV[8]):
    rollout:stats:{version} (a call allocated under a rollout: fields connected and the guardrail's per revision)
]]

local rcall = redis.call
local sid = ARGV[1]
local call = rcall('HMGET', KEYS[1], 'pod_name', 'allocation_id', 'state', 'connected_at', 'merchant_id',
  'agent_version', 'rollout_revision')
if not call[1] then
  return -1
end
-- Who may connect it (SPEC 10.1): checked on the record, in the same step as the change.
if ARGV[6] ~= '' and ARGV[6] ~= call[1] then
  -- SPEC 11: the agent a call was re-homed away from, naming its old allocation: stale, not someone else's call.
  if ARGV[2] ~= '' and ARGV[2] ~= call[2]
    and string.find(rcall('HGET', KEYS[1], 'rehomed_pods') or '', '|' .. ARGV[6] .. '|', 1, true) then
    return -11
  end
  return -15
end
if ARGV[7] ~= '' and not string.find('|' .. ARGV[7] .. '|', '|' .. (call[5] or '') .. '|', 1, true) then
  return -16
end
if ARGV[2] ~= '' and ARGV[2] ~= call[2] then
  return -11
end
if call[3] == 'connected' then
  return {1, call[1], call[2] or '', tonumber(call[4]) or 0, 1}
end
rcall('HSET', KEYS[1], 'state', 'connected', 'connected_at', ARGV[3])
rcall('ZREM', KEYS[2], sid)
-- >>> versioned fleets (SPEC 12): a known outcome for the guardrail, counted
-- on the call's version under the revision it was allocated in (the
-- connect-timeout release counts the other outcome, releaseCall-5.lua).
if call[7] then
  local P = cjson.decode(ARGV[8])
  local stats = P.rolloutStats .. (call[6] or '')
  rcall('HINCRBY', stats, 'connected', 1)
  rcall('HINCRBY', stats, 'guard:' .. call[7] .. ':connected', 1)
end
-- <<< versioned fleets
rcall('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'type', 'call.connected', 'call_sid', sid, 'pod', call[1],
  'allocation_id', call[2] or '', 'state', 'connected', 'connected_at', ARGV[3], 'source', ARGV[5], 'at', ARGV[3])
return {1, call[1], call[2] or '', tonumber(ARGV[3]), 0}
