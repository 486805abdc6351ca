--[[
  Forgets a deleted pod: ends its calls (call.orphaned), takes it out of every
  pool and deletes every key it had. Idempotent; a delete for an older
  incarnation than the one recorded is ignored. Only a deletion marker stays
  behind: pod:deleted:{name} = deleted_at (ms) for 10 minutes, so a full LIST
  that started before the delete cannot bring the pod back (upsertPod ARGV[11]).

  Input:
    KEYS[1] pod index set             pods
    KEYS[2] tier config document      config:tiers
    KEYS[3] pod metadata hash         pod:metadata
    KEYS[4] call event stream         stream:calls
    KEYS[5] active calls zset         calls:active
    KEYS[6] watcher term              watcher:term
    ARGV[1] pod name
    ARGV[2] pod UID that was deleted ('' = whatever incarnation is recorded)
    ARGV[3] pod key prefixes JSON (RedisKeys.podKeyPrefixes)
    ARGV[4] now, milliseconds since the Unix epoch
    ARGV[5] stream MAXLEN (approximate trim)
    ARGV[6] leader term of the publishing watcher ('' = not from a watcher); a higher
            term is recorded, fencing the older leader as upsertPod does
    ARGV[7] snapshot time, ms: skip if the pod record changed after it ('' = unconditional)
  Output:
    {1, orphaned_calls}
    0  nothing to do (unknown pod, or a newer incarnation is recorded)
    -5 the event comes from a deposed watcher leader
    -6 the pod record is newer than the snapshot (ARGV[7]); nothing changed
  Events:
    stream:calls  type=call.orphaned call_sid pod tier reason=pod_deleted at allocation_id state connected_at  (one per call)
  Derived keys (pod-scoped, built from ARGV[3]): pod:{name}, pod:tier:{name},
    pod:draining:{name}, pod:removing:{name}, pod:calls:{name}, pod:deleted:{name}, lease:{name}, pool:{tier}:*, call:{sid},
    merchant:calls:{merchant_id}, calls:pending, version:all, version:pods:{version}
]]
--- @include "pod-state"

local rcall = redis.call
local name = ARGV[1]

if ARGV[6] ~= '' then
  local seen = tonumber(rcall('GET', KEYS[6]) or '0')
  local term = tonumber(ARGV[6])
  if term < seen then
    return -5
  end
  if term > seen then
    rcall('SET', KEYS[6], term)
  end
end

local P = cjson.decode(ARGV[3])
local knownUid = rcall('HGET', P.pod .. name, 'uid')
local tier = rcall('GET', P.tier .. name)
if not knownUid and not tier and rcall('SISMEMBER', KEYS[1], name) == 0 then
  return 0
end
if ARGV[2] ~= '' and knownUid and knownUid ~= ARGV[2] then
  return 0
end
if ARGV[7] ~= '' and lastChange(P, name) > tonumber(ARGV[7]) then
  return -6
end

local orphaned = orphanCalls(P, name, KEYS[5], KEYS[4], ARGV[5], ARGV[4], 'pod_deleted')
if tier then
  removeFromAvailable(P, tier, name)
  rcall('SREM', assignedKey(P, tier), name)
end
local version = rcall('HGET', P.pod .. name, 'version')
if version then
  forgetVersionMember(P, version, name)
end
rcall('DEL', P.pod .. name, P.tier .. name, P.draining .. name, P.lease .. name, P.calls .. name)
-- Outlives any full reconcile that could have listed the pod before it went.
rcall('SET', P.deleted .. name, ARGV[4], 'PX', 600000)
rcall('SREM', KEYS[1], name)
rcall('HDEL', KEYS[3], name)
return {1, orphaned}
