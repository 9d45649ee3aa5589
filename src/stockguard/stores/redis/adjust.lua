-- Adds a signed delta to on_hand, never below what is reserved less the backorder
-- allowance (I1, docs/design.md#backorders) nor above the limit. A restock of a SKU whose
-- confirmed backorders took on_hand below 0 covers them first: it is the same addition.
-- KEYS: 1 load marker, 2 stock key, 3 event stream
-- ARGV: 1 sku, 2 delta, 3 reason, 4 on_hand limit
-- Replies carry the whole level, in codec.level_from's order (then the on_hand wanted).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local level = redis.call('HMGET', KEYS[2], 'on_hand', 'reserved', 'version', 'safety', 'cap',
  'backorder')
if not level[1] then
  return {'unknown'}
end
local policy = {level[4] or false, level[5] or false, level[6] or false}
local wanted = tonumber(level[1]) + tonumber(ARGV[2])
if wanted + tonumber(level[6] or '0') < tonumber(level[2]) then
  return {'below', level[1], level[2], level[3], policy[1], policy[2], policy[3], int(wanted)}
end
if wanted > tonumber(ARGV[4]) then
  return {'too-much', level[1], level[2], level[3], policy[1], policy[2], policy[3], int(wanted)}
end
local now = now_ms()
redis.call('HSET', KEYS[2], 'on_hand', int(wanted))
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
redis.call('XADD', KEYS[3], '*', 'type', 'stock', 'sku', ARGV[1], 'delta', ARGV[2],
  'after', int(wanted), 'reason', ARGV[3], 'at', int(now))
return {'ok', int(wanted), level[2], int(version), unpack(policy)}
