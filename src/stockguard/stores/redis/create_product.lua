-- Creates every SKU of a product or none (none may exist yet), and appends the product.
-- KEYS: 1 load marker, 2 SKU set, 3 event stream
-- ARGV: 1 stock key prefix, 2 the product as JSON (for the persister),
--       3.. sku, on_hand pairs
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local taken = {}
for i = 3, #ARGV, 2 do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 1 then
    taken[#taken + 1] = ARGV[i]
  end
end
if #taken > 0 then
  return {'taken', taken}
end
local now = now_ms()
for i = 3, #ARGV, 2 do
  redis.call('HSET', ARGV[1] .. ARGV[i], 'on_hand', ARGV[i + 1], 'reserved', 0, 'version', 0)
  redis.call('SADD', KEYS[2], ARGV[i])
end
local id = redis.call('XADD', KEYS[3], '*', 'type', 'product', 'product', ARGV[2],
  'at', int(now))
return {'ok', id}
