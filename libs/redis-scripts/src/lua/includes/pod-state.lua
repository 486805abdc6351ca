-- Shared helpers, inlined by the loader where a script says `--- @include "pod-state"`.
-- P is the table of pod key prefixes (RedisKeys.podKeyPrefixes), so every key
-- derived here is built from the same prefixes as the TypeScript key schema.

local function availableKey(P, tier)
  return P.pool .. tier .. ':available'
end

local function assignedKey(P, tier)
  return P.pool .. tier .. ':assigned'
end

-- Removes a pod from an available pool whatever its Redis type (a tier that
-- left the config has no spec to tell SET from ZSET).
local function removeFromAvailable(P, tier, name)
  local key = availableKey(P, tier)
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'zset' then
    redis.call('ZREM', key, name)
  elseif kind == 'set' then
    redis.call('SREM', key, name)
  end
end

--- @include "wait-queue"

-- Held out of the pools: an operator's drain or a fleet scale-down's removal
-- mark (pod:removing:{name}, its own key so neither clears the other).
local function isHeld(P, name)
  return redis.call('EXISTS', P.draining .. name, P.removing .. name) > 0
end

-- SPEC 11: a voice agent that stopped heartbeating (suspect) or was declared
-- dead gets no new call, like a drained pod. The mark belongs to the
-- incarnation that heartbeated (heartbeat_uid): a pod replaced under the same
-- name (new UID) starts unmarked, whatever its predecessor's liveness.
local function isUnresponsive(P, name)
  local mark = redis.call('HMGET', P.pod .. name, 'liveness', 'heartbeat_uid', 'uid')
  return (mark[1] == 'suspect' or mark[1] == 'dead') and mark[2] == mark[3]
end

-- The one definition of "allocatable": assigned to a tier, Ready, not
-- terminating, not drained (nor marked for removal), not suspect or dead
-- (isUnresponsive), and (exclusive) idle. Puts the pod into or out of
-- its tier's available pool accordingly; a shared pod's score is set to the
-- real number of calls on it, never incremented blindly. A pod that is
-- allocatable is first offered to the waiting requests (wait-queue.lua).
local function refreshAvailability(P, tiers, name)
  local tier = redis.call('GET', P.tier .. name)
  if not tier then
    return
  end
  local spec = tiers and tiers.tiers[tier]
  if not spec then
    removeFromAvailable(P, tier, name)
    return
  end
  local state = redis.call('HMGET', P.pod .. name, 'ready', 'terminating')
  local allocatable = state[1] == '1' and state[2] ~= '1' and not isHeld(P, name) and not isUnresponsive(P, name)
  local calls = redis.call('SCARD', P.calls .. name)
  local key = availableKey(P, tier)
  if spec.type == 'shared' then
    if allocatable then
      redis.call('ZADD', key, calls, name)
      handOffPod(P, name, tier, spec)
    else
      redis.call('ZREM', key, name)
    end
  else
    if allocatable and calls == 0 then
      redis.call('SADD', key, name)
      handOffPod(P, name, tier, spec)
    else
      redis.call('SREM', key, name)
    end
  end
end

-- When the pod's record last changed: its last upsert or its removal (ms).
local function lastChange(P, name)
  local updated = tonumber(redis.call('HGET', P.pod .. name, 'updated_at') or '0')
  local deleted = tonumber(redis.call('GET', P.deleted .. name) or '0')
  return math.max(updated, deleted)
end

-- The tier a pod belongs in, from the config and the pod alone (SPEC 6.1), so
-- restarts, rolling updates and data loss never reshuffle tiers: a configured
-- pinned tier (pod label) wins; otherwise the StatefulSet ordinal fills the
-- tiers in config order up to their targets (ordinal 0 first), and ordinals
-- beyond the sum of targets go to the extra tier. nil for a pod without an
-- ordinal: the caller fills by room.
local function ordinalTier(tiers, name, pinned)
  if pinned and pinned ~= '' and tiers.tiers[pinned] then
    return pinned
  end
  local ordinal = tonumber(string.match(name, '%-(%d+)$'))
  if not ordinal then
    return nil
  end
  local upto = 0
  for _, tier in ipairs(tiers.order) do
    upto = upto + tiers.tiers[tier].target
    if ordinal < upto then
      return tier
    end
  end
  return tiers.extra
end

-- First tier below its target, in config order; else the extra tier.
local function tierWithRoom(P, tiers)
  for _, tier in ipairs(tiers.order) do
    if redis.call('SCARD', assignedKey(P, tier)) < tiers.tiers[tier].target then
      return tier
    end
  end
  return tiers.extra
end

-- A pod leaves its version's membership (SPEC 12); a version with no pod left
-- leaves the index of versions.
local function forgetVersionMember(P, version, name)
  redis.call('SREM', P.versionPods .. version, name)
  if redis.call('SCARD', P.versionPods .. version) == 0 then
    redis.call('SREM', P.versions, version)
  end
end

local function loadTiers(key)
  local raw = redis.call('GET', key)
  if not raw then
    return nil
  end
  return cjson.decode(raw)
end

-- Ends every call bound to the pod's current incarnation: the pod is gone or
-- came back with a new UID, so nothing can still be talking to those calls.
local function orphanCalls(P, name, activeKey, streamKey, maxlen, now, reason)
  local sids = redis.call('SMEMBERS', P.calls .. name)
  for _, sid in ipairs(sids) do
    local call = redis.call('HMGET', P.call .. sid, 'tier', 'merchant_id', 'allocation_id', 'state', 'connected_at')
    if call[2] and call[2] ~= '' then
      redis.call('SREM', P.merchantCalls .. call[2], sid)
    end
    redis.call('DEL', P.call .. sid)
    redis.call('ZREM', activeKey, sid)
    redis.call('ZREM', P.pendingCalls, sid)
    redis.call('XADD', streamKey, 'MAXLEN', '~', maxlen, '*',
      'type', 'call.orphaned', 'call_sid', sid, 'pod', name, 'tier', call[1] or '', 'reason', reason, 'at', now,
      'allocation_id', call[3] or '', 'state', call[4] or '', 'connected_at', call[5] or '')
  end
  redis.call('DEL', P.calls .. name, P.lease .. name)
  redis.call('HDEL', P.pod .. name, 'allocated_call_sid', 'allocated_at', 'source_pool', 'allocation_id')
  redis.call('HSET', P.pod .. name, 'status', 'available')
  return #sids
end
