--[[
  Moves idle pods between tiers so every tier meets its target under the
  current tier config (after an admin change of TIER_CONFIG). A pod with live
  calls never moves; it is picked up by a later run once it is idle (the
  zombie sweep runs this script too). Idempotent.

  Input:
    KEYS[1] pod index set             pods
    KEYS[2] tier config document      config:tiers
    ARGV[1] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[2] new tier config document JSON ('' = keep the stored one)
  Output:
    {1, moved}
    -2 no tier config stored and none given
  Events: none
  Derived keys (built from ARGV[1]): pod:tier:{name}, pod:calls:{name}, pod:{name},
    pod:draining:{name}, pool:{tier}:assigned, pool:{tier}:available
]]
--- @include "pod-state"

local rcall = redis.call
if ARGV[2] ~= '' then
  rcall('SET', KEYS[2], ARGV[2])
end
local tiers = loadTiers(KEYS[2])
if not tiers then
  return -2
end
local P = cjson.decode(ARGV[1])

local members, counts = {}, {}
for _, tier in ipairs(tiers.order) do
  counts[tier] = 0
  members[tier] = {}
end
local homeless = {}
for _, name in ipairs(rcall('SMEMBERS', KEYS[1])) do
  local tier = rcall('GET', P.tier .. name)
  if tier and tiers.tiers[tier] then
    counts[tier] = counts[tier] + 1
    table.insert(members[tier], name)
  else
    table.insert(homeless, {name = name, from = tier})
  end
end

local function idle(name)
  return rcall('SCARD', P.calls .. name) == 0
end

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

local function firstDeficit()
  for _, tier in ipairs(tiers.order) do
    if counts[tier] < tiers.tiers[tier].target then
      return tier
    end
  end
  return nil
end

local moved = 0
-- Pods whose tier left the config: to a tier below target, else the extra tier.
for _, pod in ipairs(homeless) do
  if idle(pod.name) then
    local to = firstDeficit() or tiers.extra
    move(pod.name, pod.from, to)
    counts[to] = counts[to] + 1
    moved = moved + 1
  end
end
-- Fill deficits from idle pods of tiers above target, the extra tier first.
local donors = {tiers.extra}
for i = #tiers.order, 1, -1 do
  if tiers.order[i] ~= tiers.extra then
    table.insert(donors, tiers.order[i])
  end
end
local to = firstDeficit()
while to do
  local found = false
  for _, from in ipairs(donors) do
    if from ~= to and counts[from] > tiers.tiers[from].target then
      table.sort(members[from])
      for index, name in ipairs(members[from]) do
        if idle(name) then
          move(name, from, to)
          table.remove(members[from], index)
          counts[from] = counts[from] - 1
          counts[to] = counts[to] + 1
          moved = moved + 1
          found = true
          break
        end
      end
    end
    if found then
      break
    end
  end
  if not found then
    break
  end
  to = firstDeficit()
end
-- Tiers still above target (lowered targets) hand idle pods to the extra tier.
for _, tier in ipairs(tiers.order) do
  if tier ~= tiers.extra then
    table.sort(members[tier])
    for _, name in ipairs(members[tier]) do
      if counts[tier] > tiers.tiers[tier].target and idle(name) then
        move(name, tier, tiers.extra)
        counts[tier] = counts[tier] - 1
        counts[tiers.extra] = counts[tiers.extra] + 1
        moved = moved + 1
      end
    end
  end
end
return {1, moved}
