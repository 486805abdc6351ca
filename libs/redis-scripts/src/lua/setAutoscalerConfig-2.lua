--[[
  Stores the autoscaler settings, but only if the stored document is still
  the one the caller merged its update into and validated: a compare-and-set,
  so two concurrent PUTs of different fields never lose one of them, and the
  min/max check always holds for what is stored. Turning the autoscaler off
  clears its surplus clock in the same step. The validation rules stay in
  TypeScript (validateAutoscalerUpdate); on -7 the caller reads, merges,
  validates and tries again.

  Input:
    KEYS[1] autoscaler settings document  autoscaler:config
    KEYS[2] autoscaler state hash         autoscaler:state
    ARGV[1] settings JSON to store
    ARGV[2] the settings document the caller read ('' = none was stored)
    ARGV[3] '1' when the stored settings disable the autoscaler, else '0'
  Output:
    1  written
    -7 the settings changed since the caller read them: merge and validate again
  Events: none
]]

local rcall = redis.call
if (rcall('GET', KEYS[1]) or '') ~= ARGV[2] then
  return -7
end
rcall('SET', KEYS[1], ARGV[1])
if ARGV[3] == '1' then
  rcall('HDEL', KEYS[2], 'surplus_since')
end
return 1
