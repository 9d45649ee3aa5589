-- docs/design.md#seed-001: compare-and-set on Redis's on_hand; creates the SKU when absent and no
-- expectation is given. The same rule as domain.check_on_hand_change, applied atomically.
-- KEYS: 1 load marker, 2 stock key, 3 SKU set, 4 event stream
-- ARGV: 1 sku, 2 new on_hand, 3 expected on_hand ('' for none)
-- I1 with the backorder allowance (docs/design.md#backorders): on_hand may be set below
-- what is held by no more than `backorder`. Replies carry the whole level, in
-- codec.level_from's order (on_hand, reserved, version, safety, cap, backorder).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local wanted = tonumber(ARGV[2])
local level = redis.call('HMGET', KEYS[2], 'on_hand', 'reserved', 'version', 'safety', 'cap',
  'backorder')
local policy = {level[4] or false, level[5] or false, level[6] or false}
if not level[1] then
  if ARGV[3] ~= '' then
    return {'unknown'}
  end
  local now = now_ms()
  redis.call('HSET', KEYS[2], 'on_hand', ARGV[2], 'reserved', 0, 'version', 0)
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('XADD', KEYS[4], '*', 'type', 'stock', 'sku', ARGV[1], 'delta', ARGV[2],
    'after', ARGV[2], 'reason', 'created', 'created', '1', 'at', int(now))
  return {'ok', ARGV[2], '0', '0'}
end
if ARGV[3] ~= '' and tonumber(level[1]) ~= tonumber(ARGV[3]) then
  return {'changed', level[1], level[2], level[3], unpack(policy)}
end
if wanted + tonumber(level[6] or '0') < tonumber(level[2]) then
  return {'below', level[1], level[2], level[3], unpack(policy)}
end
if wanted == tonumber(level[1]) then
  return {'ok', level[1], level[2], level[3], unpack(policy)}
end
local now = now_ms()
redis.call('HSET', KEYS[2], 'on_hand', ARGV[2])
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
redis.call('XADD', KEYS[4], '*', 'type', 'stock', 'sku', ARGV[1],
  'delta', int(wanted - tonumber(level[1])), 'after', ARGV[2], 'reason', 'set', 'at', int(now))
return {'ok', ARGV[2], level[2], int(version), unpack(policy)}
