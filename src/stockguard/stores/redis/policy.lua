-- A SKU's stock policy in Redis (docs/design.md#stock-policy): compare-and-set as
-- stockguard.domain.check_policy_change, on the fields reserve.lua decides with.
-- KEYS: 1 load marker, 2 stock key
-- ARGV: 1 sku, 2 stock key prefix, 3 expected 'safety\tcap' ('' for none; cap '' = none),
--       4 new safety, 5 new cap ('' for none),
--       6.. customer, units pairs: the counts to start from when a cap is newly set
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local level = redis.call('HMGET', KEYS[2], 'on_hand', 'safety', 'cap')
if not level[1] then
  return {'unknown'}
end
local safety, cap = level[2] or '0', level[3] or ''
if ARGV[3] ~= '' and ARGV[3] ~= safety .. '\t' .. cap then
  return {'changed', safety, cap}
end
if ARGV[4] == '0' then
  redis.call('HDEL', KEYS[2], 'safety')
else
  redis.call('HSET', KEYS[2], 'safety', ARGV[4])
end
local ckey = customers_key(ARGV[2], ARGV[1])
if ARGV[5] == '' then
  redis.call('HDEL', KEYS[2], 'cap')
  redis.call('DEL', ckey)
else
  if cap == '' then
    redis.call('DEL', ckey)
    for i = 6, #ARGV, 2 do
      redis.call('HSET', ckey, ARGV[i], ARGV[i + 1])
    end
  end
  redis.call('HSET', KEYS[2], 'cap', ARGV[5])
end
redis.call('HINCRBY', KEYS[2], 'version', 1)
return {'ok', safety, cap}
