-- A SKU's stock at a location other than the default one (docs/locations.md): the
-- compare-and-set of set_on_hand.lua on that level, as stockguard.stores.operations
-- set_level decides it (domain.check_on_hand_change, then domain.check_backorder_cut on an
-- allowance cut), atomically with every hold of the SKU. An absent level is created (the
-- SKU too, at 0, when absent and not expected) and the stock hash becomes `located`.
-- KEYS: 1 load marker, 2 stock key, 3 SKU set, 4 event stream
-- ARGV: 1 sku, 2 location, 3 new on_hand, 4 expected on_hand ('' for none),
--       5 safety stock ('' keeps the level's), 6 backorder allowance ('' keeps it),
--       7 stock key prefix
-- Returns {verdict, on_hand, reserved, version, safety, backorder} of the level before:
-- 'ok', 'changed', 'below' (on_hand under what is held), 'cut' (allowance under what is
-- held beyond on_hand), 'unknown' (no SKU), 'nolocation'.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local place = redis.call('HGET', locations_key(ARGV[7]), ARGV[2])
if not place or ARGV[2] == 'default' then
  return {'nolocation'}
end
local now = now_ms()
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[4] ~= '' then
    return {'unknown'}
  end
  redis.call('HSET', KEYS[2], 'on_hand', 0, 'reserved', 0, 'version', 0)
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('XADD', KEYS[4], '*', 'type', 'stock', 'sku', ARGV[1], 'delta', '0',
    'after', '0', 'reason', 'created', 'created', '1', 'at', int(now))
end
local lkey = located_key(ARGV[7], ARGV[1])
local text = redis.call('HGET', lkey, ARGV[2])
local created = '0'
local level = {0, 0, 0, 0, 0}
if text then
  level = decode_level(text)
else
  created = '1'
end
local before = {int(level[1]), int(level[2]), int(level[3]), int(level[4]), int(level[5])}
local wanted = tonumber(ARGV[3])
local safety, backorder = level[4], level[5]
if ARGV[5] ~= '' then
  safety = tonumber(ARGV[5])
end
if ARGV[6] ~= '' then
  backorder = tonumber(ARGV[6])
end
if ARGV[4] ~= '' and level[1] ~= tonumber(ARGV[4]) then
  return {'changed', unpack(before)}
end
if wanted + backorder < level[2] then
  return {'below', unpack(before)}
end
if level[5] > backorder and level[2] > level[1] + backorder then
  return {'cut', unpack(before)}
end
redis.call('HSET', lkey, ARGV[2], encode_level({wanted, level[2], level[3] + 1, safety, backorder}))
if redis.call('HSETNX', KEYS[2], 'located', 1) == 1 then
  redis.call('HINCRBY', KEYS[2], 'version', 1)
end
redis.call('XADD', KEYS[4], '*', 'type', 'location', 'sku', ARGV[1], 'location', ARGV[2],
  'delta', int(wanted - level[1]), 'after', ARGV[3], 'safety', int(safety),
  'backorder', int(backorder), 'created', created, 'at', int(now))
return {'ok', unpack(before)}
