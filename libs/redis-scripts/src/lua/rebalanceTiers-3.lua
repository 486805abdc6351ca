--[[
  Moves every idle pod to the tier it belongs in under the current tier
  config (includes/pod-state.lua ordinalTier: pinned label, else StatefulSet
  ordinal; pods without an ordinal keep a configured tier or fill by room).
  Used after an admin change of TIER_CONFIG. A pod with live calls never
  moves; a later run (the zombie sweep runs this script) moves it once idle.
  A pod that is missing for a while (restart, rolling update) leaves its tier
  short rather than pulling another pod in: tiers never flip-flop, and a
  rebuild after data loss gives every pod the tier it had. Idempotent.

  A new document is refused, changing nothing, while a merchant config still
  names a tier it drops (as tier, pool or fallback): checked here, in the same
  step as the write, so no merchant can be left pointing at a missing tier
  (setMerchantConfig is the compare-and-set for the other direction).

  Input:
    KEYS[1] pod index set             pods
    KEYS[2] tier config document      config:tiers
    KEYS[3] merchant config hash      merchant:config
    ARGV[1] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[2] new tier config document JSON ('' = keep the stored one)
    ARGV[3] JSON list of chain names a merchant may name without a tier of that name (CHAIN_TIERS)
  Output:
    {1, moved}
    -2 no tier config stored and none given
    {-13, JSON list of merchant ids} the new document drops a tier these merchants name; nothing changed
  Events:
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at  (the freed pod handed to a
                  waiting request, includes/wait-queue.lua; its call_sid is published on wait:wake)
  Derived keys (built from ARGV[1]): pod:tier:{name}, pod:calls:{name}, pod:{name},
    pod:draining:{name}, pod:removing:{name}, pool:{tier}:assigned, pool:{tier}:available
    Hand-off to waiters (includes/wait-queue.lua): wait:queue, wait:tier:{tier},
    wait:merchant:{merchant_id}, waiter:{call_sid}, wait:wake,
    calls:active, stream:calls, call:{sid}, lease:{name}, merchant:calls:{merchant_id},
    allocation:seq, calls:pending
    rollout:live, rollout:stats:{version} (a hand-off to a waiter takes only a version the rollout serves, SPEC 12)
]]
--- @include "pod-state"

local rcall = redis.call
if ARGV[2] ~= '' then
  local proposed = cjson.decode(ARGV[2]).tiers
  local chainNames = {}
  for _, name in ipairs(cjson.decode(ARGV[3])) do
    chainNames[name] = true
  end
  local function known(tier)
    return type(tier) ~= 'string' or proposed[tier] ~= nil or chainNames[tier] == true
  end
  local blocked = {}
  local merchants = rcall('HGETALL', KEYS[3])
  for i = 1, #merchants, 2 do
    local ok, config = pcall(cjson.decode, merchants[i + 1])
    if ok and type(config) == 'table' then
      local bad = not known(config.tier) or (type(config.pool) == 'string' and proposed[config.pool] == nil)
      if type(config.fallback) == 'table' then
        for _, tier in ipairs(config.fallback) do
          if not known(tier) then
            bad = true
          end
        end
      end
      if bad then
        blocked[#blocked + 1] = merchants[i]
      end
    end
  end
  if #blocked > 0 then
    table.sort(blocked)
    return {-13, cjson.encode(blocked)}
  end
  rcall('SET', KEYS[2], ARGV[2])
end
local tiers = loadTiers(KEYS[2])
if not tiers then
  return -2
end
local P = cjson.decode(ARGV[1])

local function move(name, from, to)
  if from then
    removeFromAvailable(P, from, name)
    rcall('SREM', assignedKey(P, from), name)
  end
  rcall('SET', P.tier .. name, to)
  rcall('HSET', P.pod .. name, 'tier', to)
  rcall('SADD', assignedKey(P, to), name)
  refreshAvailability(P, tiers, name)
end

local names = rcall('SMEMBERS', KEYS[1])
table.sort(names)
local moved = 0
for _, name in ipairs(names) do
  local current = rcall('GET', P.tier .. name)
  local wanted = ordinalTier(tiers, name, rcall('HGET', P.pod .. name, 'pinned'))
  if not wanted then
    wanted = (current and tiers.tiers[current]) and current or tierWithRoom(P, tiers)
  end
  if wanted ~= current and rcall('SCARD', P.calls .. name) == 0 then
    move(name, current, wanted)
    moved = moved + 1
  end
end
return {1, moved}
