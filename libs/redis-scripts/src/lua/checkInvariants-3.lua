--[[
  Reads the whole pool state in one atomic snapshot and reports every breach
  of the SPEC section 7 invariants. Writes nothing. O(pods + calls): for the
  admin endpoint and tests, not for a request path.

  Input:
    KEYS[1] pod index set             pods
    KEYS[2] tier config document      config:tiers
    KEYS[3] active calls zset         calls:active
    ARGV[1] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
  Output:
    flat list of violations: {rule, subject_kind ('pod'|'call_sid'), subject, detail, ...}
    (empty = every invariant holds; a missing tier config yields one 'state_missing' violation)
  Events: none
  Derived keys (built from ARGV[1]): pool:{tier}:*, pod:{name}, pod:tier:{name},
    pod:draining:{name}, pod:removing:{name}, pod:calls:{name}, call:{sid}, merchant:calls:{merchant_id}
]]
--- @include "pod-state"

local rcall = redis.call
local out = {}
local function violation(rule, kind, subject, detail)
  out[#out + 1] = rule
  out[#out + 1] = kind
  out[#out + 1] = subject
  out[#out + 1] = detail
end

local tiers = loadTiers(KEYS[2])
if not tiers then
  if rcall('SCARD', KEYS[1]) > 0 then
    violation('state_missing', 'pod', '', 'tier config missing while pods are registered')
  end
  return out
end
local P = cjson.decode(ARGV[1])

local tierOf = {}
for tier, spec in pairs(tiers.tiers) do
  for _, name in ipairs(rcall('SMEMBERS', assignedKey(P, tier))) do
    if tierOf[name] then
      violation('assigned_once', 'pod', name, 'assigned to ' .. tierOf[name] .. ' and ' .. tier)
    end
    tierOf[name] = tier
  end
  local members
  if spec.type == 'shared' then
    members = rcall('ZRANGE', availableKey(P, tier), 0, -1, 'WITHSCORES')
  else
    members = rcall('SMEMBERS', availableKey(P, tier))
  end
  local step = spec.type == 'shared' and 2 or 1
  for i = 1, #members, step do
    local name = members[i]
    if rcall('SISMEMBER', assignedKey(P, tier), name) == 0 then
      violation('available_subset_of_assigned', 'pod', name, 'available in ' .. tier .. ' but not assigned to it')
    end
    local state = rcall('HMGET', P.pod .. name, 'ready', 'terminating')
    if isHeld(P, name) then
      violation('draining_not_available', 'pod', name, 'draining (or marked for removal) but available in ' .. tier)
    end
    -- SPEC 11: a suspect or dead agent is held out like a drained pod.
    if isUnresponsive(P, name) then
      violation('unresponsive_not_available', 'pod', name, 'suspect or dead (no heartbeat) but available in ' .. tier)
    end
    if state[1] ~= '1' or state[2] == '1' then
      violation('not_ready_not_available', 'pod', name, 'not ready or terminating but available in ' .. tier)
    end
    local calls = rcall('SCARD', P.calls .. name)
    if spec.type == 'shared' then
      if tonumber(members[i + 1]) ~= calls then
        violation('shared_score_matches_calls', 'pod', name, 'score ' .. members[i + 1] .. ' but ' .. calls .. ' live calls')
      end
    elseif calls > 0 then
      violation('busy_exclusive_not_available', 'pod', name, 'holds ' .. calls .. ' call(s) but available in ' .. tier)
    end
  end
end

for _, name in ipairs(rcall('SMEMBERS', KEYS[1])) do
  local recorded = rcall('GET', P.tier .. name)
  if recorded and tierOf[name] ~= recorded then
    violation('assigned_once', 'pod', name, 'tier key says ' .. recorded .. ' but assigned sets say ' .. tostring(tierOf[name]))
  end
  local uid = rcall('HGET', P.pod .. name, 'uid') or ''
  for _, sid in ipairs(rcall('SMEMBERS', P.calls .. name)) do
    local call = rcall('HMGET', P.call .. sid, 'pod_name', 'pod_uid')
    if not call[1] then
      violation('call_listed_has_record', 'call_sid', sid, 'listed on ' .. name .. ' without a call record')
    elseif call[1] ~= name or (call[2] or '') ~= uid then
      violation('call_points_at_live_pod', 'call_sid', sid, 'listed on ' .. name .. ' but bound to ' .. call[1])
    end
  end
end

for _, sid in ipairs(rcall('ZRANGE', KEYS[3], 0, -1)) do
  local call = rcall('HMGET', P.call .. sid, 'pod_name', 'pod_uid', 'merchant_id')
  -- max_calls counts the merchant's live calls in its set: a call missing there would not count.
  if call[1] and call[3] and call[3] ~= '' and rcall('SISMEMBER', P.merchantCalls .. call[3], sid) == 0 then
    violation('merchant_calls_counted', 'call_sid', sid, 'not in the live calls of merchant ' .. call[3])
  end
  if call[1] then
    local uid = rcall('HGET', P.pod .. call[1], 'uid')
    if not uid then
      violation('call_points_at_live_pod', 'call_sid', sid, 'pod ' .. call[1] .. ' does not exist')
    elseif uid ~= (call[2] or '') then
      violation('call_points_at_live_pod', 'call_sid', sid, 'pod ' .. call[1] .. ' has a different UID')
    elseif rcall('SISMEMBER', P.calls .. call[1], sid) == 0 then
      violation('call_points_at_live_pod', 'call_sid', sid, 'not listed on pod ' .. call[1])
    end
  end
end
return out
