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

-- The hash of a located SKU's levels at locations other than the default one (keys.py
-- KeyLayout.located): location code -> 'on_hand reserved version safety backorder'.
local function located_key(stock_prefix, sku)
  return string.sub(stock_prefix, 1, -3) .. 'ls:' .. sku
end

-- The hash of every location (keys.py KeyLayout.locations): code -> 'priority active rank'.
local function locations_key(stock_prefix)
  return string.sub(stock_prefix, 1, -3) .. 'locations'
end

-- One level of located_key's hash as {on_hand, reserved, version, safety, backorder}.
local function decode_level(text)
  local o, r, v, s, b = string.match(text, '^(%-?%d+) (%d+) (%d+) (%d+) (%d+)$')
  return {tonumber(o), tonumber(r), tonumber(v), tonumber(s), tonumber(b)}
end

local function encode_level(l)
  return int(l[1]) .. ' ' .. int(l[2]) .. ' ' .. int(l[3]) .. ' ' .. int(l[4]) .. ' ' .. int(l[5])
end

-- Allocations are 'SKU<TAB>location<TAB>qty<TAB>backordered' joined by newlines, each
-- line's in the order drawn (codec.encode_allocations).
local function each_allocation(text)
  return string.gmatch(text, '([^\t\n]+)\t([^\t\n]+)\t(%d+)\t(%d+)')
end

-- Moves one level of a SKU by (on_hand, reserved), version + 1: the default location's
-- is the stock hash, any other one a field of located_key's hash. Returns on_hand after.
local function move_level(stock_prefix, sku, loc, on_hand, reserved)
  local skey = stock_prefix .. sku
  if loc == 'default' then
    local after = nil
    if on_hand ~= 0 then
      after = redis.call('HINCRBY', skey, 'on_hand', on_hand)
    end
    redis.call('HINCRBY', skey, 'reserved', reserved)
    redis.call('HINCRBY', skey, 'version', 1)
    return after
  end
  local lkey = located_key(stock_prefix, sku)
  local level = decode_level(redis.call('HGET', lkey, loc))
  level[1] = level[1] + on_hand
  level[2] = level[2] + reserved
  level[3] = level[3] + 1
  redis.call('HSET', lkey, loc, encode_level(level))
  return level[1]
end

-- The allocations text as SKU -> {{location, qty, backordered}, ...} in the order drawn.
local function allocations_by_sku(text)
  local by_sku = {}
  if text then
    for sku, loc, q, b in each_allocation(text) do
      local drawn = by_sku[sku]
      if drawn == nil then
        drawn = {}
        by_sku[sku] = drawn
      end
      drawn[#drawn + 1] = {loc, tonumber(q), tonumber(b)}
    end
  end
  return by_sku
end

-- The keys of a table in byte order (the SKU order of encode_lines).
local function each_sku_sorted(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  return keys
end

-- Ends a held reservation: every line leaves `reserved` (and `on_hand` too when `sell`),
-- the status is written once, the due index forgets it, and the event is appended.
-- A line with allocations (`alloc`, the hold's field: docs/locations.md#settling) settles
-- exactly at its allocations' locations; a confirm's on_hand after is then per location
-- ('SKU\tlocation\tafter' in the event's `after_loc`, the default one's in `after`).
local function end_hold(rkey, id, lines, status, now, stock_prefix, due, events, retention_ms, sell,
    alloc)
  local after, after_loc = {}, {}
  local customer = nil
  if not sell then
    customer = redis.call('HGET', rkey, 'customer_id')
  end
  local drawn = {}
  if alloc then
    drawn = allocations_by_sku(alloc)
  end
  for sku, qty in each_line(lines) do
    local q = tonumber(qty)
    if drawn[sku] then
      for _, a in ipairs(drawn[sku]) do
        local moved = a[2]
        local on_hand = 0
        if sell then
          on_hand = -moved
        end
        local left = move_level(stock_prefix, sku, a[1], on_hand, -moved)
        if sell and a[1] == 'default' then
          after[#after + 1] = sku .. '\t' .. int(left)
        elseif sell then
          after_loc[#after_loc + 1] = sku .. '\t' .. a[1] .. '\t' .. int(left)
        end
      end
    else
      local skey = stock_prefix .. sku
      if sell then
        after[#after + 1] = sku .. '\t' .. int(redis.call('HINCRBY', skey, 'on_hand', -q))
      end
      redis.call('HINCRBY', skey, 'reserved', -q)
      redis.call('HINCRBY', skey, 'version', 1)
    end
    if not sell then
      uncount(stock_prefix, customer, sku, q)
    end
  end
  redis.call('HSET', rkey, 'status', status, 'ended_at', int(now))
  redis.call('ZREM', due, id)
  redis.call('PEXPIRE', rkey, retention_ms)
  if alloc then
    redis.call('XADD', events, '*', 'type', status, 'id', id, 'lines', lines,
      'at', int(now), 'after', table.concat(after, '\n'), 'alloc', alloc,
      'after_loc', table.concat(after_loc, '\n'))
  else
    redis.call('XADD', events, '*', 'type', status, 'id', id, 'lines', lines,
      'at', int(now), 'after', table.concat(after, '\n'))
  end
end
