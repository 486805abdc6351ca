--[[
  Makes a rollout (SPEC 12) the live one as a new, immutable revision, and
  writes its event in the same step: the split every allocation draws from
  from the next allocation on. Revisions are numbered 1, 2, ... and never
  rewritten, so a rollback returns to an exact earlier split. Validation
  stays in TypeScript (parseRollout); this script only numbers and stores.
  Compare-and-set on the live revision (ARGV[6]) so promote, which builds
  on the live split, never overwrites a PUT it did not see. A rollback
  (ARGV[7]) stores the previous revision's split again, decided here on the
  live document. Writes the replica move (rollout:move) in the same step
  as the revision (ARGV[9]): a promote or rollback whose stored split sends
  100 % to one version asks the reconciler to move replicas call-safely to
  it (apps/reconciler/src/rollout-move.ts); anything else (a plain PUT, a
  rollback to a split of several versions) deletes any pending move, so the
  live revision never runs another revision's move and two racing promotes
  leave the winner with its own. A promote (ARGV[10]) refuses, in the same
  step, a version no pod carries and no known StatefulSet serves: its move
  could never get a replica (checked here, not in a round trip before, so a
  pod removed meanwhile cannot slip between the check and the write).

  Input:
    KEYS[1] live rollout document     rollout:live
    KEYS[2] revisions hash            rollout:revisions
    KEYS[3] fleet event stream        stream:fleet
    KEYS[4] replica move record       rollout:move
    KEYS[5] promoted version's pods   version:pods:{version}
    KEYS[6] version -> StatefulSet    rollout:statefulsets
    ARGV[1] rollout JSON object, validated (parseRollout): {"targets":[{"version","percent"}...],"assignment","guardrail"}
    ARGV[2] now, milliseconds since the Unix epoch
    ARGV[3] stream MAXLEN (approximate trim)
    ARGV[4] why (e.g. 'admin: PUT /api/v1/admin/rollout')
    ARGV[5] event type: 'rollout.updated' (a PUT), 'rollout.promoted', 'rollout.rolled_back'
    ARGV[6] the live revision the caller built on ('' = whatever is live, '0' = none is live)
    ARGV[7] '1' = roll back: store the live revision's previous one again (ARGV[1] is ignored)
    ARGV[8] cause recorded on the event ('' = operator; 'guardrail' = the reconciler's guardrail job,
            which passes the revision it judged as ARGV[6], so a split changed meanwhile is never rolled back)
    ARGV[9] '1' = promote or rollback: write the move to the version at 100 % (if any); '' = a PUT, moves none
    ARGV[10] '1' = promote: refuse unless KEYS[5] has a pod or KEYS[6] has the field ARGV[11]; '' = no check
             (KEYS[5] and KEYS[6] are then not touched: callers pass the unlabelled version's key)
    ARGV[11] the promoted version (the field of KEYS[6]; '' = pods without the version label)
  Output:
    {1, revision, previous revision ('' = none), stored document JSON}
    -7 the live revision is not ARGV[6] (changed meanwhile): read again and retry
    -17 ARGV[7] is '1' and the live revision has no previous one (or none is live)
    -20 ARGV[10] is '1' and no pod carries the version and no StatefulSet of it is known: nothing changed
  Events:
    stream:fleet  type=<ARGV[5]> revision previous rollout (the stored split) reason cause at
]]

local rcall = redis.call
if ARGV[10] == '1' and rcall('SCARD', KEYS[5]) == 0 and rcall('HEXISTS', KEYS[6], ARGV[11]) == 0 then
  return -20
end
local previous = ''
local current
local live = rcall('GET', KEYS[1])
if live then
  local ok, decoded = pcall(cjson.decode, live)
  if ok and type(decoded) == 'table' and decoded.revision then
    current = decoded
    previous = tostring(decoded.revision)
  end
end
if ARGV[6] ~= '' and ARGV[6] ~= (previous ~= '' and previous or '0') then
  return -7
end
local rollout = ARGV[1]
if ARGV[7] == '1' then
  local back = current and current.previous ~= cjson.null and current.previous and
    rcall('HGET', KEYS[2], tostring(current.previous))
  if not back then
    return -17
  end
  local old = cjson.decode(back)
  rollout = cjson.encode({ targets = old.targets, assignment = old.assignment, guardrail = old.guardrail })
end
local revision = rcall('HLEN', KEYS[2]) + 1
-- The stored document is the validated JSON object with the revision's own
-- fields put first (it starts with '{'): a PUT's is not decoded and
-- re-encoded, so what TypeScript validated is byte for byte what allocations read.
local document = '{"revision":' .. revision .. ',"previous":' .. (previous ~= '' and previous or 'null') ..
  ',"at":' .. tonumber(ARGV[2]) .. ',"reason":' .. cjson.encode(ARGV[4]) .. ',' .. string.sub(rollout, 2)
rcall('HSET', KEYS[2], revision, document)
rcall('SET', KEYS[1], document)
-- The move: {"version","revision","at"[, "cover"]} (the mover adds cover and seen_at).
local moveTo
if ARGV[9] == '1' then
  local stored = cjson.decode(rollout)
  for _, target in ipairs(stored.targets or {}) do
    if tonumber(target.percent) == 100 then
      moveTo = tostring(target.version)
    end
  end
end
if moveTo then
  -- A move replacing one still under way (a rollback during a promote) keeps its
  -- cover: the fleet's size before either began, not the sum of both versions'
  -- plans mid-move (which counts the surge twice).
  local move = { version = moveTo, revision = revision, at = tonumber(ARGV[2]) }
  local running = rcall('GET', KEYS[4])
  if running then
    local ok, previous = pcall(cjson.decode, running)
    if ok and type(previous) == 'table' and tonumber(previous.cover) then
      move.cover = tonumber(previous.cover)
    end
  end
  rcall('SET', KEYS[4], cjson.encode(move))
else
  rcall('DEL', KEYS[4])
end
rcall('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[5], 'revision', revision, 'previous', previous,
  'rollout', rollout, 'reason', ARGV[4], 'cause', ARGV[8] ~= '' and ARGV[8] or 'operator', 'at', ARGV[2])
return {1, revision, previous, document}
