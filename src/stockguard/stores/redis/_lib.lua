-- Helpers prepended to every stockguard script by scripts.py (Redis Lua has no require).
-- All keys a script builds from a prefix share the keyspace's hash tag (see keys.py).

-- Redis's own clock, in epoch milliseconds: the one clock that decides expiry.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as exact decimal text (tostring would switch to exponent form past 1e14).
local function int(n)
  return string.format('%d', n)
end

-- Lines are 'SKU<TAB>qty' joined by newlines; SKUs never hold control characters.
local function each_line(lines)
  return string.gmatch(lines, '([^\t\n]+)\t(%d+)')
end

-- The hash of one SKU's per-customer counts (customer id -> units held or bought), kept
-- only while the SKU has a cap (`cap` in its stock hash): keys.py KeyLayout.customers,
-- built from the stock prefix '{tag}:s:' so every script that already has it can reach it.
local function customers_key(stock_prefix, sku)
  return string.sub(stock_prefix, 1, -3) .. 'cu:' .. sku
end

-- Takes units a customer gave back (release, expiry, partial release) off their count;
-- only a counted SKU has the field. Confirmed units stay counted (they were bought).
local function uncount(stock_prefix, customer, sku, q)
  if customer == nil or customer == '' then
    return
  end
  local ckey = customers_key(stock_prefix, sku)
  if redis.call('HEXISTS', ckey, customer) == 1 then
    if redis.call('HINCRBY', ckey, customer, -q) <= 0 then
      redis.call('HDEL', ckey, customer)
    end
  end
end

-- Ends a held reservation: every line leaves `reserved` (and `on_hand` too when `sell`),
-- the status is written once, the due index forgets it, and the event is appended.
local function end_hold(rkey, id, lines, status, now, stock_prefix, due, events, retention_ms, sell)
  local after = {}
  local customer = nil
  if not sell then
    customer = redis.call('HGET', rkey, 'customer_id')
  end
  for sku, qty in each_line(lines) do
    local skey = stock_prefix .. sku
    local q = tonumber(qty)
    if sell then
      after[#after + 1] = sku .. '\t' .. int(redis.call('HINCRBY', skey, 'on_hand', -q))
    end
    redis.call('HINCRBY', skey, 'reserved', -q)
    redis.call('HINCRBY', skey, 'version', 1)
    if not sell then
      uncount(stock_prefix, customer, sku, q)
    end
  end
  redis.call('HSET', rkey, 'status', status, 'ended_at', int(now))
  redis.call('ZREM', due, id)
  redis.call('PEXPIRE', rkey, retention_ms)
  redis.call('XADD', events, '*', 'type', status, 'id', id, 'lines', lines,
    'at', int(now), 'after', table.concat(after, '\n'))
end
