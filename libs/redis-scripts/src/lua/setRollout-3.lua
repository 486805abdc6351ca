--[[
  Makes a rollout (SPEC 12) the live one as a new, immutable revision, and
  writes its event in the same step: the split every allocation draws from
  from the next allocation on. Revisions are numbered 1, 2, ... and never
  rewritten, so a rollback returns to an exact earlier split. Validation
  stays in TypeScript (parseRollout); this script only numbers and stores.
  Moves no replicas (a plain PUT; promote and rollback do).

  Input:
    KEYS[1] live rollout document     rollout:live
    KEYS[2] revisions hash            rollout:revisions
    KEYS[3] fleet event stream        stream:fleet
    ARGV[1] rollout JSON object, validated (parseRollout): {"targets":[{"version","percent"}...],"assignment","guardrail"}
    ARGV[2] now, milliseconds since the Unix epoch
    ARGV[3] stream MAXLEN (approximate trim)
    ARGV[4] why (e.g. 'admin: PUT /api/v1/admin/rollout')
    ARGV[5] event type: 'rollout.updated' (a PUT) or another rollout.* type (promote, rollback)
  Output:
    {1, revision, previous revision ('' = none), stored document JSON}
  Events:
    stream:fleet  type=<ARGV[5]> revision previous rollout (ARGV[1]) reason at
]]

local rcall = redis.call
local previous = ''
local live = rcall('GET', KEYS[1])
if live then
  local ok, current = pcall(cjson.decode, live)
  if ok and type(current) == 'table' and current.revision then
    previous = tostring(current.revision)
  end
end
local revision = rcall('HLEN', KEYS[2]) + 1
-- The stored document is the validated JSON object with the revision's own
-- fields put first (ARGV[1] starts with '{'): no decode and re-encode, so
-- what TypeScript validated is byte for byte what allocations read.
local document = '{"revision":' .. revision .. ',"previous":' .. (previous ~= '' and previous or 'null') ..
  ',"at":' .. tonumber(ARGV[2]) .. ',"reason":' .. cjson.encode(ARGV[4]) .. ',' .. string.sub(ARGV[1], 2)
rcall('HSET', KEYS[2], revision, document)
rcall('SET', KEYS[1], document)
rcall('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[5], 'revision', revision, 'previous', previous,
  'rollout', ARGV[1], 'reason', ARGV[4], 'at', ARGV[2])
return {1, revision, previous, document}
