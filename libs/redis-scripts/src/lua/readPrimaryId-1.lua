--[[
  Names the primary that holds the pool state, for failover detection: its
  run_id changes when the server restarts or a replica is promoted. Run as a
  script (not a bare INFO) so that in a cluster it reaches the primary of the
  prefix's slot. Writes nothing.

  Input:
    KEYS[1] epoch marker              epoch
  Output:
    {run_id, epoch_present (1|0)}
  Events: none
]]
local info = redis.call('INFO', 'server')
local runId = string.match(info, 'run_id:(%w+)') or ''
return {runId, redis.call('EXISTS', KEYS[1])}
