-- A SKU's stock policy in Redis (docs/design.md#stock-policy): compare-and-set as
-- stockguard.domain.check_policy_change, on the fields reserve.lua decides with (safety
-- stock, cap, backorder allowance), then domain.check_backorder_cut: an allowance cut
-- below the units already held beyond on_hand is refused (I1, docs/design.md#backorders),
-- decided here, atomically with every hold of the SKU.
-- KEYS: 1 load marker, 2 stock key
-- ARGV: 1 sku, 2 stock key prefix, 3 expected 'safety\tcap\tbackorder' ('' for none;
--       cap '' = none), 4 new safety, 5 new cap ('' for none), 6 new backorder allowance,
--       7.. customer, units pairs: the counts to start from when a cap is newly set
-- Returns {verdict, safety, cap, backorder} as they were ('below': then on_hand, reserved).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local level = redis.call('HMGET', KEYS[2], 'on_hand', 'safety', 'cap', 'backorder', 'reserved')
if not level[1] then
  return {'unknown'}
end
local safety, cap, backorder = level[2] or '0', level[3] or '', level[4] or '0'
if ARGV[3] ~= '' and ARGV[3] ~= safety .. '\t' .. cap .. '\t' .. backorder then
  return {'changed', safety, cap, backorder}
end
local wanted = tonumber(ARGV[6])
if wanted < tonumber(backorder) and tonumber(level[5]) > tonumber(level[1]) + wanted then
  return {'below', safety, cap, backorder, level[1], level[5]}
end
if ARGV[4] == '0' then
  redis.call('HDEL', KEYS[2], 'safety')
else
  redis.call('HSET', KEYS[2], 'safety', ARGV[4])
end
-- Absent when 0, like `safety`: reserve.lua then skips the backordered arithmetic.
if ARGV[6] == '0' then
  redis.call('HDEL', KEYS[2], 'backorder')
else
  redis.call('HSET', KEYS[2], 'backorder', ARGV[6])
end
local ckey = customers_key(ARGV[2], ARGV[1])
if ARGV[5] == '' then
  redis.call('HDEL', KEYS[2], 'cap')
  redis.call('DEL', ckey)
else
  if cap == '' then
    redis.call('DEL', ckey)
    for i = 7, #ARGV, 2 do
      redis.call('HSET', ckey, ARGV[i], ARGV[i + 1])
    end
  end
  redis.call('HSET', KEYS[2], 'cap', ARGV[5])
end
redis.call('HINCRBY', KEYS[2], 'version', 1)
return {'ok', safety, cap, backorder}
