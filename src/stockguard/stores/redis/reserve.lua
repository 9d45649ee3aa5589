-- Holds every line of one order or none. Validates everything before its first write.
-- KEYS: 1 load marker, 2 order index key, 3 reservation key, 4 due index, 5 event stream,
--       6.. the stock key of each line, in the order of ARGV[5]
-- ARGV: 1 reservation id, 2 order id, 3 customer id ('' for none), 4 ttl in ms,
--       5 lines ('SKU\tqty' joined by '\n', sorted by SKU), 6 reservation key prefix,
--       7 stock key prefix (for the per-customer counts, customers_key)
-- Mirrors stockguard.domain.customer_refusal then shortfalls: a capped SKU needs a
-- customer and refuses past its cap; safety stock is never held, the backorder allowance
-- (`backorder` in the stock hash, absent = 0) may be (docs/design.md#redis,
-- docs/design.md#backorders). Each line's backordered units (StockLevel.backordered on
-- the level as it stood before this hold) are stored with the hold and its event in the
-- lines' form, only when some line has any: a shop without backorders writes nothing more.
-- Returns {'held', created_at, expires_at, backordered lines ('' for none)}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local earlier = redis.call('GET', KEYS[2])
if earlier then
  -- Same order again: Python decides with stockguard.domain.replay_or_conflict.
  return {'known', earlier, redis.call('HGETALL', ARGV[6] .. earlier)}
end
local skus, qtys = {}, {}
for sku, qty in each_line(ARGV[5]) do
  skus[#skus + 1] = sku
  qtys[#qtys + 1] = tonumber(qty)
end
if #skus ~= #KEYS - 5 then
  return redis.error_reply('reserve: lines and stock keys disagree')
end
local unknown, short, capped, beyond = {}, {}, {}, {}
for i = 1, #skus do
  local level = redis.call('HMGET', KEYS[5 + i], 'on_hand', 'reserved', 'safety', 'cap',
    'backorder')
  if not level[1] then
    unknown[#unknown + 1] = skus[i]
  else
    if level[4] then
      if ARGV[3] == '' then
        return {'nocustomer', skus[i]}
      end
      local ckey = customers_key(ARGV[7], skus[i])
      local have = tonumber(redis.call('HGET', ckey, ARGV[3]) or '0')
      if have + qtys[i] > tonumber(level[4]) then
        return {'capped', skus[i], level[4], int(have), int(qtys[i])}
      end
      capped[i] = ckey
    end
    local shelf = tonumber(level[1]) - tonumber(level[3] or '0')
    local available = shelf - tonumber(level[2])
    if level[5] then
      available = available + tonumber(level[5])
    end
    if available < qtys[i] then
      short[#short + 1] = skus[i]
      short[#short + 1] = int(qtys[i])
      short[#short + 1] = int(math.max(available, 0))
    elseif level[5] then
      -- domain StockLevel.backordered: the units past what the shelf still has.
      local units = math.min(math.max(tonumber(level[2]) + qtys[i] - shelf, 0), qtys[i])
      if units > 0 then
        beyond[#beyond + 1] = skus[i] .. '\t' .. int(units)
      end
    end
  end
end
if #unknown > 0 then
  return {'unknown', unknown}
end
if #short > 0 then
  return {'short', short}
end
-- Every line fits: from here on, write.
local now = now_ms()
local expires = now + tonumber(ARGV[4])
for i = 1, #skus do
  redis.call('HINCRBY', KEYS[5 + i], 'reserved', qtys[i])
  redis.call('HINCRBY', KEYS[5 + i], 'version', 1)
  if capped[i] then
    redis.call('HINCRBY', capped[i], ARGV[3], qtys[i])
  end
end
redis.call('HSET', KEYS[3], 'order_id', ARGV[2], 'customer_id', ARGV[3], 'status', 'held',
  'lines', ARGV[5], 'expires_at', int(expires), 'created_at', int(now))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[4], int(expires), ARGV[1])
if #beyond == 0 then
  redis.call('XADD', KEYS[5], '*', 'type', 'reserved', 'id', ARGV[1], 'order_id', ARGV[2],
    'customer_id', ARGV[3], 'lines', ARGV[5], 'expires_at', int(expires), 'at', int(now))
  return {'held', int(now), int(expires), ''}
end
local backordered = table.concat(beyond, '\n')
redis.call('HSET', KEYS[3], 'backordered', backordered)
redis.call('XADD', KEYS[5], '*', 'type', 'reserved', 'id', ARGV[1], 'order_id', ARGV[2],
  'customer_id', ARGV[3], 'lines', ARGV[5], 'expires_at', int(expires), 'at', int(now),
  'backordered', backordered)
return {'held', int(now), int(expires), backordered}
