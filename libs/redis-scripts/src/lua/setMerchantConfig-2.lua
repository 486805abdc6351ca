--[[
  Writes (or deletes) one merchant's config, but only if the tier config is
  still the document the caller validated it against: a compare-and-set, so a
  tier removed by a concurrent PUT /api/v1/admin/tiers can never be written
  into a merchant's config. The validation rules stay in TypeScript
  (merchantConfigProblem); on -7 the caller reads, validates and tries again.

  Input:
    KEYS[1] merchant config hash      merchant:config
    KEYS[2] tier config document      config:tiers
    ARGV[1] merchant_id
    ARGV[2] config JSON to store ('' = delete the merchant's config)
    ARGV[3] the tier config document the caller validated against ('' = none was stored,
            '*' = unconditional: a delete needs no validation)
  Output:
    1  written (or deleted)
    0  delete of a merchant that has no config
    -7 the tier config changed since the caller read it: validate again
  Events: none
]]

local rcall = redis.call
if ARGV[3] ~= '*' and (rcall('GET', KEYS[2]) or '') ~= ARGV[3] then
  return -7
end
if ARGV[2] == '' then
  if rcall('HDEL', KEYS[1], ARGV[1]) == 0 then
    return 0
  end
  return 1
end
rcall('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
