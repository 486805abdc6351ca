--[[
  Updates, finishes or abandons the replica move of a promote or rollback
  (SPEC 12, rollout:move), compare-and-set on the revision the move belongs
  to: the reconciler's RolloutMover read the move of revision ARGV[1], and a
  promote or rollback stored since (setRollout writes a new move in the same
  step as its revision) is never overwritten nor deleted by a step that
  judged the old one.

  Input:
    KEYS[1] replica move record       rollout:move
    KEYS[2] fleet event stream        stream:fleet
    ARGV[1] the move's revision, as the caller read it
    ARGV[2] operation: 'update' (set ARGV[3] and ARGV[4] on the move), 'done' (delete it),
            'abandon' (delete it and write its event)
    ARGV[3] cover: the fleet size the move scales the version to ('' = unchanged)
    ARGV[4] seen_at: the last time a pod of the version was seen, ms ('' = unchanged)
    ARGV[5] now, milliseconds since the Unix epoch
    ARGV[6] stream MAXLEN (approximate trim)
    ARGV[7] why the move is abandoned ('abandon'; '' otherwise)
  Output:
    1 done: the move was the revision's
    0 nothing changed: no move, or a move of another revision
  Events:
    stream:fleet  type=rollout.move_abandoned revision version reason at
]]

local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local ok, move = pcall(cjson.decode, raw)
if not ok or type(move) ~= 'table' or tostring(move.revision) ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'update' then
  if ARGV[3] ~= '' then
    move.cover = tonumber(ARGV[3])
  end
  if ARGV[4] ~= '' then
    move.seen_at = tonumber(ARGV[4])
  end
  redis.call('SET', KEYS[1], cjson.encode(move))
  return 1
end
redis.call('DEL', KEYS[1])
if ARGV[2] == 'abandon' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'type', 'rollout.move_abandoned', 'revision', ARGV[1],
    'version', tostring(move.version), 'reason', ARGV[7], 'at', ARGV[5])
end
return 1
