-- Waiting allocations (SPEC 9.1, bounded by SPEC 10.2), inlined into pod-state
-- before refreshAvailability: every script that makes a pod allocatable
-- (release, ready, undrain, a new pod, sweep, rebalance) offers it to the
-- waiters in the same atomic step, so a freed pod can never be taken by a
-- newcomer while a waiter that could use it waits.
--
-- Each waiter's request is waiter:{call_sid}; its place in the indexes is
-- described in waiters.lua. The hand-off of a pod of tier T reads only
-- wait:tier:{T} (score = priority * 1e13 + arrival number from wait:seq: lowest
-- first, so higher priority first, oldest first within it), so its cost does not
-- grow with waiters whose chain cannot use T: one ZCARD when none can, one
-- ZRANGE of the head when one can. A waiter leaves every index in the same step
-- that gives it a pod (hand-off) or decides it timed out (settleWait), and its
-- call_sid is published on wait:wake so the waiting request wakes at once.
--- @include "waiters"

-- A waiter whose deadline passed this long ago belongs to a request that is
-- gone (its process died before settling): it is dropped, never given a pod.
local WAIT_GRACE_MS = 2000

-- Redis's clock: every deadline is set and compared on it, whatever the
-- clocks of the app processes say.
local function nowMs()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- The one definition of "this call holds this pod": call record, pod's call
-- set, live calls, the merchant's live calls, lease or shared score, and the
-- call.allocated event. Used by allocateCall and by the hand-off to a waiter.
-- Returns the pod's UID and the call's allocation_id.
local function bindCall(P, activeKey, streamKey, call, name, tier, spec, now)
  local sid, merchant = call.sid, call.merchant
  -- The version is the pod's (SPEC 12), recorded whether or not a rollout is
  -- configured: the same HMGET as the uid alone cost before.
  local pod = redis.call('HMGET', P.pod .. name, 'uid', 'version')
  local uid, version = pod[1] or '', pod[2] or ''
  local sourcePool = 'pool:' .. tier
  -- >>> call lifecycle (SPEC 9.2): the fencing token and the connect deadline.
  -- One INCR per new allocation: ids are strictly increasing across every
  -- replica, so a release carrying an older id can never end this allocation.
  local allocationId = redis.call('INCR', P.allocationSequence)
  local deadline = call.connectMs and call.connectMs > 0 and tonumber(now) + call.connectMs or nil
  -- <<< call lifecycle
  -- The whole call record in one HSET (one command on the hot path, not three).
  local record = { 'pod_name', name, 'pod_uid', uid, 'source_pool', sourcePool, 'tier', tier,
    'merchant_id', merchant, 'allocated_at', now, 'provider', call.provider, 'metadata', call.metadata,
    'allocation_id', allocationId, 'state', 'pending', 'agent_version', version }
  if call.revision then
    record[#record + 1] = 'rollout_revision'
    record[#record + 1] = call.revision
  end
  if deadline then
    record[#record + 1] = 'connect_deadline'
    record[#record + 1] = deadline
  end
  redis.call('HSET', P.call .. sid, unpack(record))
  if deadline then
    redis.call('ZADD', P.pendingCalls, deadline, sid)
  end
  redis.call('EXPIRE', P.call .. sid, call.ttl)
  redis.call('SADD', P.calls .. name, sid)
  redis.call('ZADD', activeKey, now, sid)
  if merchant ~= '' then
    redis.call('SADD', P.merchantCalls .. merchant, sid)
  end
  if spec.type == 'shared' then
    redis.call('ZADD', availableKey(P, tier), redis.call('SCARD', P.calls .. name), name)
    redis.call('HSET', P.pod .. name, 'status', 'allocated')
  else
    redis.call('SREM', availableKey(P, tier), name)
    redis.call('SET', P.lease .. name, sid, 'EX', call.ttl)
    redis.call('HSET', P.pod .. name, 'status', 'allocated', 'allocated_call_sid', sid, 'allocated_at', now,
      'source_pool', sourcePool, 'allocation_id', allocationId)
  end
  redis.call('XADD', streamKey, 'MAXLEN', '~', call.maxlen, '*', 'type', 'call.allocated', 'call_sid', sid,
    'pod', name, 'tier', tier, 'merchant_id', merchant, 'provider', call.provider, 'at', now,
    'allocation_id', allocationId, 'state', 'pending', 'connected_at', '', 'agent_version', version,
    'rollout_revision', call.revision or '')
  return uid, allocationId, version
end

-- True when the merchant already has max_calls live calls. Members whose call
-- record is gone (expired without a release) are pruned first, so a lost
-- release can never lock a merchant out; only checked at the cap, so the
-- common path is one SCARD.
local function merchantAtCap(P, merchant, maxCalls)
  if merchant == '' or not maxCalls then
    return false
  end
  local key = P.merchantCalls .. merchant
  if redis.call('SCARD', key) < maxCalls then
    return false
  end
  for _, sid in ipairs(redis.call('SMEMBERS', key)) do
    if redis.call('HGET', P.call .. sid, 'merchant_id') ~= merchant then
      redis.call('SREM', key, sid)
    end
  end
  return redis.call('SCARD', key) >= maxCalls
end

-- Removes a waiter from every index and wakes its request(s) wherever they wait.
local function leaveQueue(P, sid, chainJson, merchant)
  redis.call('ZREM', P.waitQueue, sid)
  unindexWaiter(P, sid, chainJson, merchant)
  redis.call('DEL', P.waiter .. sid)
  redis.call('PUBLISH', P.waitChannel, sid)
end

-- The versions the live rollout sends calls to (SPEC 12: listed with a percent
-- above 0) as a set, and its revision; nil when no rollout is configured (every
-- version serves). Shared by the hand-off to a waiter and by rehomeCall.
local function servedVersions(P)
  local rawRollout = redis.call('GET', P.rollout)
  if not rawRollout then
    return nil
  end
  local ok, rollout = pcall(cjson.decode, rawRollout)
  if not (ok and type(rollout) == 'table' and type(rollout.targets) == 'table' and #rollout.targets > 0) then
    return nil
  end
  local served = {}
  for _, target in ipairs(rollout.targets) do
    if (tonumber(target.percent) or 0) > 0 then
      served[tostring(target.version)] = true
    end
  end
  return served, tostring(rollout.revision or '')
end

-- Offers an allocatable pod to the waiters whose chain names its tier (so a
-- gold pod never goes to a chain without gold, a dedicated pool only to its
-- merchant), best first, while it has room, skipping a waiter whose merchant is
-- at its max_calls (it stays queued). Returns how many waiters got the pod.
-- Cost: O(1) when no waiter can use the tier; O(log n) per waiter served or
-- dropped (past its deadline and grace); the only repeated cost is skipping
-- waiters of merchants at their max_calls, at most those merchants' waiting
-- counts (each bounded by its max_waiting and by WAIT_QUEUE_MAX), with each
-- such merchant's cap checked once per call.
local function handOffPod(P, name, tier, spec)
  local index = P.waitTier .. tier
  if redis.call('ZCARD', index) == 0 then
    return 0
  end
  -- Versioned fleets (SPEC 12): a waiter takes a pod of any version the live
  -- rollout sends calls to, never one at 0 % or outside the targets (a
  -- promoted-away or rolled-back version draining its calls); the call is
  -- stamped with the revision and counted on its version like an allocation.
  local served, revision = servedVersions(P)
  if served and not served[redis.call('HGET', P.pod .. name, 'version') or ''] then
    return 0
  end
  local now = nowMs()
  local given, skipped, capped = 0, 0, {}
  while true do
    local calls = redis.call('SCARD', P.calls .. name)
    if spec.type == 'shared' then
      if calls >= spec.max_concurrent then
        break
      end
    elseif calls > 0 or redis.call('EXISTS', P.lease .. name) == 1 then
      break
    end
    local sid = redis.call('ZRANGE', index, skipped, skipped)[1]
    if not sid then
      break
    end
    local w = redis.call('HMGET', P.waiter .. sid, 'chain', 'deadline', 'merchant', 'max_calls', 'provider',
      'metadata', 'ttl', 'maxlen', 'connect_ms')
    if not w[1] or tonumber(w[2]) + WAIT_GRACE_MS < now then
      -- Gone (its process died before settling): dropped, never given a pod.
      -- The ZREM covers a waiter hash that is already gone (no chain to read).
      redis.call('ZREM', index, sid)
      leaveQueue(P, sid, w[1], w[3])
    elseif capped[w[3]] or merchantAtCap(P, w[3], tonumber(w[4])) then
      capped[w[3]] = true
      skipped = skipped + 1
    else
      -- A waiter never has a call record (allocateCall returns the record
      -- first); the check only keeps a hand-off from ever overwriting one.
      if redis.call('EXISTS', P.call .. sid) == 0 then
        local _, _, version = bindCall(P, P.activeCalls, P.callStream, { sid = sid, merchant = w[3], provider = w[5],
          metadata = w[6], ttl = tonumber(w[7]), maxlen = w[8], connectMs = tonumber(w[9] or '0'), revision = revision },
          name, tier, spec, now)
        if revision then
          redis.call('HINCRBY', P.rolloutStats .. version, 'allocations', 1)
        end
        given = given + 1
      end
      leaveQueue(P, sid, w[1], w[3])
    end
  end
  return given
end

-- Drops up to `limit` waiters whose deadline passed more than the grace ago
-- (their request is gone), oldest deadline first: one ZRANGEBYSCORE when there
-- are none. Run before a request joins the queue, so dead waiters never hold
-- places under WAIT_QUEUE_MAX or a merchant's max_waiting.
local function pruneDeadWaiters(P, now, limit)
  local dead = redis.call('ZRANGEBYSCORE', P.waitQueue, '-inf', now - WAIT_GRACE_MS, 'LIMIT', 0, limit)
  for _, sid in ipairs(dead) do
    local w = redis.call('HMGET', P.waiter .. sid, 'chain', 'merchant', 'deadline')
    if w[3] and tonumber(w[3]) + WAIT_GRACE_MS >= now then
      -- A score that is not its deadline (written by an older router during a
      -- rolling upgrade): corrected, not dropped.
      redis.call('ZADD', P.waitQueue, w[3], sid)
    else
      leaveQueue(P, sid, w[1], w[2])
    end
  end
end

-- True when the merchant already has max_waiting requests waiting. Members
-- whose waiter is gone (expired after its process died) are pruned first, and
-- only at the cap, so the common path is one SCARD.
local function merchantWaitingFull(P, merchant, maxWaiting)
  if merchant == '' or not maxWaiting then
    return false
  end
  local key = P.waitMerchant .. merchant
  if redis.call('SCARD', key) < maxWaiting then
    return false
  end
  for _, sid in ipairs(redis.call('SMEMBERS', key)) do
    if redis.call('EXISTS', P.waiter .. sid) == 0 then
      redis.call('SREM', key, sid)
    end
  end
  return redis.call('SCARD', key) >= maxWaiting
end
