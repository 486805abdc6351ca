--[[
  Stores the answer a claimed answer webhook got, in place of its claim
  (claimWebhookReplay), so a replay of it gets the same document. Written
  only over this request's own claim: a record that expired and was claimed
  again meanwhile is left alone. The TTL set by the claim is kept.

  Input:
    KEYS[1] replay record             webhook:replay:{digest}
    KEYS[2] replay record of the second identity (or KEYS[1] again)  webhook:replay:{digest}
    ARGV[1] this request's claim marker (as given to claimWebhookReplay)
    ARGV[2] the answer document, JSON ({"status","contentType","body"})
  Output:
    number of records written (0 when neither still holds the claim)
  Events: none
]]

local rcall = redis.call

local written = 0
if rcall('GET', KEYS[1]) == ARGV[1] then
  rcall('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  written = written + 1
end
if KEYS[2] ~= KEYS[1] and rcall('GET', KEYS[2]) == ARGV[1] then
  rcall('SET', KEYS[2], ARGV[2], 'KEEPTTL')
  written = written + 1
end
return written
