-- One consistent picture of the keyspace for reconcile: epoch, every SKU's level, every
-- held reservation (with its allocations), and the id of the newest event (the stream tail ends there).
-- KEYS: 1 load marker, 2 SKU set, 3 due index, 4 event stream
-- ARGV: 1 stock key prefix, 2 reservation key prefix
local epoch = redis.call('GET', KEYS[1])
-- Each level: sku, on_hand, reserved, version, then the policy fields reserve.lua decides
-- with (safety, cap, backorder: '' when absent), which reconcile compares with SQL's.
local levels = {}
for _, sku in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local level = redis.call('HMGET', ARGV[1] .. sku, 'on_hand', 'reserved', 'version', 'safety',
    'cap', 'backorder', 'located')
  -- then, for a located SKU, its levels at the other locations (docs/locations.md)
  local others = {}
  if level[7] then
    others = redis.call('HGETALL', located_key(ARGV[1], sku))
  end
  levels[#levels + 1] = {sku, level[1] or '', level[2] or '', level[3] or '', level[4] or '',
    level[5] or '', level[6] or '', others}
end
local held = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local r = redis.call('HMGET', ARGV[2] .. id, 'status', 'lines', 'expires_at', 'alloc')
  held[#held + 1] = {id, r[1] or '', r[2] or '', r[3] or '', r[4] or ''}
end
local newest = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
local last = ''
if #newest > 0 then
  last = newest[1][1]
end
return {epoch or '', levels, held, last}
