-- Fleet scale-down marks (SPEC 9.1 "Scaling down never cuts a call"), shared by
-- planFleet and stepFleet. A pod above the target carries pod:removing:{name}
-- (not pod:draining:{name}: an operator's drain is its own mark and stays).
-- Needs pod-state (refreshAvailability) included first.

-- The StatefulSet ordinal of `{sts}-{n}`, nil for any other name.
local function fleetOrdinal(sts, name)
  local prefix = sts .. '-'
  if string.sub(name, 1, #prefix) ~= prefix then
    return nil
  end
  return tonumber(string.match(string.sub(name, #prefix + 1), '^(%d+)$'))
end

-- Unmarks the marked pods below `target` (a cancelled removal: each becomes
-- allocatable again through refreshAvailability, so a waiter gets it), except
-- those a committed scale-down (`committing`) is removing right now; then marks
-- every ordinal in [target, upto), known pods or not (a pod created later by a
-- racing scale-up arrives marked). Returns the cancelled names and how many
-- marks are new.
local function applyRemovalMarks(P, removingKey, podsKey, tiers, sts, target, upto, committing)
  local cancelled = {}
  for _, name in ipairs(redis.call('SMEMBERS', removingKey)) do
    local ordinal = fleetOrdinal(sts, name)
    if ordinal and ordinal < target and (not committing or ordinal < committing) then
      redis.call('DEL', P.removing .. name)
      redis.call('SREM', removingKey, name)
      if redis.call('SISMEMBER', podsKey, name) == 1 then
        refreshAvailability(P, tiers, name)
      end
      cancelled[#cancelled + 1] = name
    end
  end
  local marked = 0
  for ordinal = target, upto - 1 do
    local name = sts .. '-' .. ordinal
    marked = marked + redis.call('SADD', removingKey, name)
    redis.call('SET', P.removing .. name, '1')
    if redis.call('SISMEMBER', podsKey, name) == 1 then
      refreshAvailability(P, tiers, name)
    end
  end
  return cancelled, marked
end
