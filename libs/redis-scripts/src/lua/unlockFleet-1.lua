--[[
  Releases the fleet step lock if this reconciler still holds it (a lock that
  expired and was taken by another replica is left alone).

  Input:
    KEYS[1] fleet step lock            fleet:lock
    ARGV[1] lock token
  Output:
    1 released
    0 not ours
  Events: none
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
