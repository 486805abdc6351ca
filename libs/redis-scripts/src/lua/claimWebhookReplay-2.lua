--[[
  Claims a signed answer webhook for answering (SPEC 10.2, replays are
  refused), or returns what a request with the same identity stored first.
  A request may carry two identities (Twilio: its idempotency token and its
  signature); either seen before makes it a replay. Checking and claiming in
  one step means two copies of one request never both allocate.

  Input:
    KEYS[1] replay record             webhook:replay:{digest}
    KEYS[2] replay record of the second identity (or KEYS[1] again)  webhook:replay:{digest}
    ARGV[1] claim marker, JSON ({"pending":true,"claim":"<unique>","until":ms}): stored until the answer replaces it
    ARGV[2] TTL, seconds (TOMBSTONE_TTL_SECONDS)
  Output:
    {1, ''}      claimed: this request is the first; both records now hold ARGV[1]
    {0, record}  seen before: the stored record (the first answer's document JSON, or its pending claim)
  Events: none
]]

local rcall = redis.call

local stored = rcall('GET', KEYS[1]) or rcall('GET', KEYS[2])
if stored then
  return {0, stored}
end
rcall('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
rcall('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return {1, ''}
