-- A waiter's place in the indexes (SPEC 10.2), inlined by wait-queue.lua and by
-- settleWait: a waiting request is in wait:queue (scored by its deadline: the
-- count and the sweep of dead waiters), in wait:tier:{tier} for every tier of its
-- chain (scored by priority then arrival: what a freed pod of that tier reads),
-- and in wait:merchant:{merchant_id} (the merchant's exact waiting count). Every
-- script that removes a waiter removes it from all of them in the same step.

-- Drops the waiter from its tier indexes and its merchant's waiting set.
-- chainJson and merchant come from its waiter hash (nil when the hash is gone:
-- then the tier entries are dropped lazily, when they reach the head of their
-- index, and the merchant's set is pruned at its cap).
local function unindexWaiter(P, sid, chainJson, merchant)
  if chainJson then
    local ok, chain = pcall(cjson.decode, chainJson)
    if ok and type(chain) == 'table' then
      for _, tier in ipairs(chain) do
        redis.call('ZREM', P.waitTier .. tier, sid)
      end
    end
  end
  if merchant and merchant ~= '' then
    redis.call('SREM', P.waitMerchant .. merchant, sid)
  end
end
