-- The fallback chain of a merchant's call (SPEC: tiers and chains), shared by
-- allocateCall and rehomeCall so both walk the same pools in the same order:
-- the merchant's dedicated pool first, then its explicit fallback or its
-- tier's chain, else the default chain. Dedicated pools are reachable only as
-- a merchant's own pool; gold only when the chain names it.
-- `raw`: the merchant's config JSON (nil or false = none).
-- Returns chain, config (nil when none), dedicated (its own pool leads the
-- chain); nil when `raw` is not a JSON object.
local function merchantChain(tiers, raw)
  local chain, seen = {}, {}
  local function push(tier)
    if type(tier) == 'string' and not seen[tier] then
      seen[tier] = true
      chain[#chain + 1] = tier
    end
  end
  local list = tiers.chains.default
  local config, dedicated = nil, false
  if raw then
    local ok, decoded = pcall(cjson.decode, raw)
    if not ok or type(decoded) ~= 'table' then
      return nil
    end
    config = decoded
    local own = config.pool
    if type(own) == 'string' and tiers.tiers[own] and tiers.tiers[own].dedicated then
      push(own)
      dedicated = true
    end
    if type(config.fallback) == 'table' and #config.fallback > 0 then
      list = config.fallback
    elseif type(config.tier) == 'string' and tiers.chains.byTier[config.tier] then
      list = tiers.chains.byTier[config.tier]
    end
  end
  for _, tier in ipairs(list) do
    local spec = tiers.tiers[tier]
    if not (spec and spec.dedicated) then
      push(tier)
    end
  end
  return chain, config, dedicated
end
