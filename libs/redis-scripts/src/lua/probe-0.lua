--[[
  Readiness probe: proves scripts run (EVALSHA, or EVAL after NOSCRIPT on a
  restarted Redis with an empty script cache). Writes nothing.
  Input: none
  Output: 'PONG'
  Events: none
]]
return 'PONG'
