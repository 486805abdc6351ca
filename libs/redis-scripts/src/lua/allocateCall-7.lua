--[[
  Allocates a pod to a call in one atomic step: idempotency check, merchant
  config lookup, the fallback chain walk, pod choice, and every write.
  No lock is needed: Redis runs the script alone, so two requests for the same
  call_sid are serialised and the second one finds the first one's record.

  Input:
    KEYS[1] call hash                 call:{call_sid}
    KEYS[2] merchant config hash      merchant:config
    KEYS[3] tier config document      config:tiers
    KEYS[4] epoch marker              epoch
    KEYS[5] active calls zset         calls:active
    KEYS[6] call event stream         stream:calls
    KEYS[7] tombstone                 tombstone:{call_sid}
    ARGV[1] call_sid
    ARGV[2] merchant_id ('' = no merchant)
    ARGV[3] now, milliseconds since the Unix epoch
    ARGV[4] provider ('' when unknown)
    ARGV[5] metadata, JSON text ('' when none)
    ARGV[6] call record TTL, seconds
    ARGV[7] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[8] stream MAXLEN (approximate trim)
    ARGV[9] '1' to refuse a call_sid released recently (provider answer webhooks), else '0'
    ARGV[10] wait, ms (0 = answer -1 at once when no pod is free; else join the wait queue)
    ARGV[11] connect deadline, ms after allocation (0 = none; SPEC 9.2, includes/wait-queue.lua bindCall)
    ARGV[12] most requests waiting in all (WAIT_QUEUE_MAX; SPEC 10.2): a request that would wait beyond it,
             or beyond its merchant config's max_waiting, answers -14 and is not queued
  ARGV[13] a random number in [0, 1): the split's draw when a rollout is configured (SPEC 12)
  ARGV[14] the caller (allocate's "caller", a provider's From; '' = none): with a sticky_by_caller
           rollout, a hash of it and the revision draws the version instead of ARGV[13]
  The chain rules come from the tier config document (its "chains":
  {"byTier":{"<tier>":["<tier>",...]},"default":["<tier>",...]}), written with the tiers.
  Output:
    {1, pod_name, tier, was_existing (0|1), pod_uid, allocation_id ('' for a record written
       before fencing), state ('pending'|'connected'|'' likewise), agent_version ('' = no version label),
       merchant_id (was_existing 1 only: the existing call's merchant, so a scoped caller is refused another's call)}
    -1 no pod available anywhere in the chain
    -2 state missing (epoch or tier config gone after a flush, or a document without chains): rebuild pending
    -3 call_sid released recently (tombstone) and ARGV[9] is '1'
    -4 the merchant's config is not a JSON object
    -8 the merchant has max_calls live calls (waiting requests do not count)
    -9 no pod free: the request joined the wait queue until now + ARGV[10] (Redis clock);
       settleWait tells its outcome
    {-10, merchant_id} the call_sid is already waiting (a provider retry): settleWait tells the first one's
       outcome; merchant_id is the waiting request's, so a scoped caller is refused another's call (SPEC 10.1)
    -14 no pod free and the wait queue is full (ARGV[12] waiting in all, or the merchant's max_waiting):
        nothing queued
  Events:
    stream:calls  type=call.allocated call_sid pod tier merchant_id provider at allocation_id state connected_at
                  agent_version rollout_revision
  Derived keys (pod-scoped, named by a pool member, built from ARGV[7]):
    pool:{tier}:available, pod:{name}, pod:tier:{name}, pod:draining:{name}, pod:removing:{name},
    pod:calls:{name}, lease:{name}, call:{sid}, merchant:calls:{merchant_id},
    waiter:{call_sid}, wait:queue, wait:tier:{tier}, wait:merchant:{merchant_id}, wait:seq, wait:wake, calls:active, stream:calls,
    allocation:seq, calls:pending (the call lifecycle, SPEC 9.2),
    rollout:live, version:pods:{version}, rollout:stats:{version} (versioned fleets, SPEC 12)
]]
--- @include "pod-state"
--- @include "chain"

local rcall = redis.call
local callKey = KEYS[1]

local existing = rcall('HMGET', callKey, 'pod_name', 'tier', 'pod_uid', 'allocation_id', 'state', 'agent_version', 'merchant_id')
if existing[1] then
  return {1, existing[1], existing[2] or '', 1, existing[3] or '', existing[4] or '', existing[5] or '', existing[6] or '', existing[7] or ''}
end

if rcall('EXISTS', KEYS[4]) == 0 then
  return -2
end
local tiers = loadTiers(KEYS[3])
if not tiers or not tiers.chains then
  return -2
end
if ARGV[9] == '1' and rcall('EXISTS', KEYS[7]) == 1 then
  return -3
end

local sid, merchant, now = ARGV[1], ARGV[2], ARGV[3]
local rules = tiers.chains
local P = cjson.decode(ARGV[7])

-- The chain (includes/chain.lua); a merchant config that is not a JSON object refuses the call.
local chain, config, dedicated = merchantChain(tiers, merchant ~= '' and rcall('HGET', KEYS[2], merchant) or nil)
if not chain then
  return -4
end
local maxCalls, maxWaiting, priority = nil, nil, 1
if config then
  -- Wait-queue priority (SPEC 9.1): dedicated and gold, then standard or no
  -- config, then basic.
  if dedicated or config.tier == 'gold' or config.tier == 'dedicated' then
    priority = 0
  elseif config.tier == 'basic' then
    priority = 2
  end
  maxCalls = tonumber(config.max_calls)
  maxWaiting = tonumber(config.max_waiting)
end

-- A member of an available pool is allocatable by construction; the checks
-- here are a second line of defence that also evicts a stale member.
local function usable(name)
  local state = rcall('HMGET', P.pod .. name, 'ready', 'terminating')
  return state[1] == '1' and state[2] ~= '1' and not isHeld(P, name)
end

-- >>> wait queue and merchant cap (SPEC 9.1) >>>
if rcall('EXISTS', P.waiter .. sid) == 1 then
  return {-10, rcall('HGET', P.waiter .. sid, 'merchant') or ''}
end
if merchantAtCap(P, merchant, maxCalls) then
  return -8
end
-- Waiters go first: a pod found free here is offered to them before this
-- newcomer takes it (refreshAvailability already did when the pod was freed;
-- this keeps the rule whatever path put the pod back).
local queued = rcall('ZCARD', P.waitQueue) > 0
local function takenByWaiter(name, tier, spec)
  return queued and handOffPod(P, name, tier, spec) > 0
end
-- <<< wait queue and merchant cap <<<

local chosen, chosenTier, spec

-- Takes one pod of the tier from `names` (exclusive: each name tried leaves the
-- available pool, as SPOP would); nil when none of them can take the call.
local function takeShared(key, tier, candidates)
  for _, name in ipairs(candidates) do
    if usable(name) then
      takenByWaiter(name, tier, spec)
      if rcall('SCARD', P.calls .. name) < spec.max_concurrent then
        return name
      end
    else
      rcall('ZREM', key, name)
    end
  end
  return nil
end
local function takeExclusive(key, tier, names)
  for _, name in ipairs(names) do
    if rcall('SREM', key, name) == 1 and usable(name) and rcall('SCARD', P.calls .. name) == 0
      and rcall('EXISTS', P.lease .. name) == 0 and not takenByWaiter(name, tier, spec) then
      return name
    end
  end
  return nil
end

-- >>> versioned fleets (SPEC 12) >>>
-- No rollout key = exactly the walk below as before (one GET more). With one,
-- the split point is drawn once per allocation: random (ARGV[13]), or sticky
-- (a hash of the caller and the revision, so a caller keeps its version while
-- the split is unchanged); each tier tried serves the drawn version when it has
-- a free pod of it, else spills to another target version with one (a canary
-- never costs a call). Versions with percent 0 and versions outside the
-- targets get no new calls while a rollout is configured.
local rollout
local rawRollout = rcall('GET', P.rollout)
if rawRollout then
  local ok, decoded = pcall(cjson.decode, rawRollout)
  if ok and type(decoded) == 'table' and type(decoded.targets) == 'table' and #decoded.targets > 0 then
    rollout = decoded
  end
end
local drawn, revision
local order = {}
if rollout then
  revision = tostring(rollout.revision or '')
  local point
  if rollout.assignment == 'sticky_by_caller' and ARGV[14] and ARGV[14] ~= '' then
    point = (tonumber(string.sub(redis.sha1hex(ARGV[14] .. '\n' .. revision), 1, 8), 16) % 10000) / 100
  else
    point = (tonumber(ARGV[13]) or 0) * 100
  end
  local upto = 0
  for _, target in ipairs(rollout.targets) do
    local percent = tonumber(target.percent) or 0
    if percent > 0 then
      order[#order + 1] = { version = tostring(target.version), percent = percent }
      upto = upto + percent
      if not drawn and point < upto then
        drawn = tostring(target.version)
      end
    end
  end
  drawn = drawn or (order[#order] and order[#order].version)
  -- The spill order: the drawn version first, then the others by share.
  table.sort(order, function(a, b)
    if (a.version == drawn) ~= (b.version == drawn) then
      return a.version == drawn
    end
    if a.percent ~= b.percent then
      return a.percent > b.percent
    end
    return a.version < b.version
  end)
end
local servedVersion

-- One version's free pods in the tier. Exclusive: the intersection of the
-- pool with the version's pods (Redis walks the smaller set). Shared: the
-- least-loaded candidates (as without a rollout, a bounded sample of 64) of
-- that version.
local function takeVersion(key, tier, version)
  if spec.type == 'shared' then
    local candidates = rcall('ZRANGEBYSCORE', key, '-inf', '(' .. spec.max_concurrent, 'LIMIT', 0, 64)
    local mine = {}
    for _, name in ipairs(candidates) do
      if (rcall('HGET', P.pod .. name, 'version') or '') == version then
        mine[#mine + 1] = name
      end
    end
    return takeShared(key, tier, mine)
  end
  if rcall('SINTERCARD', 2, key, P.versionPods .. version, 'LIMIT', 1) == 0 then
    return nil
  end
  return takeExclusive(key, tier, rcall('SINTER', key, P.versionPods .. version))
end
-- <<< versioned fleets <<<

for _, tier in ipairs(chain) do
  spec = tiers.tiers[tier]
  if spec then
    local key = availableKey(P, tier)
    if rollout then
      for _, target in ipairs(order) do
        chosen = takeVersion(key, tier, target.version)
        if chosen then
          servedVersion = target.version
          break
        end
      end
    elseif spec.type == 'shared' then
      chosen = takeShared(key, tier, rcall('ZRANGEBYSCORE', key, '-inf', '(' .. spec.max_concurrent, 'LIMIT', 0, 32))
    else
      while true do
        local name = rcall('SPOP', key)
        if not name then
          break
        end
        if usable(name) and rcall('SCARD', P.calls .. name) == 0 and rcall('EXISTS', P.lease .. name) == 0
          and not takenByWaiter(name, tier, spec) then
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
if not chosen then
  local waitMs = tonumber(ARGV[10])
  if waitMs <= 0 then
    return -1
  end
  -- >>> join the wait queue (SPEC 9.1), bounded (SPEC 10.2) >>>
  local enqueued = nowMs()
  local deadline = enqueued + waitMs
  -- Checked here, in the step that would queue, so N concurrent requests at a
  -- cap of N are exact: dead waiters are dropped first, then beyond either cap
  -- the request is refused and leaves no trace.
  pruneDeadWaiters(P, enqueued, 16)
  if rcall('ZCARD', P.waitQueue) >= tonumber(ARGV[12]) or merchantWaitingFull(P, merchant, maxWaiting) then
    return -14
  end
  rcall('HSET', P.waiter .. sid, 'chain', cjson.encode(chain), 'merchant', merchant, 'max_calls', maxCalls or '',
    'deadline', deadline, 'enqueued_at', enqueued, 'provider', ARGV[4], 'metadata', ARGV[5], 'ttl', ARGV[6],
    'maxlen', ARGV[8], 'connect_ms', ARGV[11])
  -- Outlives the grace after the deadline; a waiter is never left behind by a dead process.
  rcall('PEXPIRE', P.waiter .. sid, waitMs + 60000)
  rcall('ZADD', P.waitQueue, deadline, sid)
  -- An arrival number, not a time: two arrivals in the same millisecond keep their order.
  -- Indexed under every tier of its chain (its dedicated pool included), and only
  -- those: a freed pod looks only at waiters that may use it.
  local score = priority * 1e13 + rcall('INCR', P.waitSequence)
  for _, tier in ipairs(chain) do
    rcall('ZADD', P.waitTier .. tier, score, sid)
  end
  if merchant ~= '' then
    rcall('SADD', P.waitMerchant .. merchant, sid)
  end
  return -9
  -- <<< join the wait queue <<<
end

if rollout then
  local stats = P.rolloutStats .. servedVersion
  rcall('HINCRBY', stats, 'allocations', 1)
  if servedVersion ~= drawn then
    rcall('HINCRBY', stats, 'spills', 1)
  end
end
local uid, allocationId, agentVersion = bindCall(P, KEYS[5], KEYS[6], { sid = sid, merchant = merchant, provider = ARGV[4],
  metadata = ARGV[5], ttl = tonumber(ARGV[6]), maxlen = ARGV[8], connectMs = tonumber(ARGV[11]), revision = revision },
  chosen, chosenTier, spec, now)
return {1, chosen, chosenTier, 0, uid, tostring(allocationId), 'pending', agentVersion}
