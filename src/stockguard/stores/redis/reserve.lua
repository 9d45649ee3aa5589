-- Holds every line of one order or none. Validates everything before its first write.
-- KEYS: 1 load marker, 2 order index key, 3 reservation key, 4 due index, 5 event stream,
--       6.. the stock key of each line, in the order of ARGV[5]
-- ARGV: 1 reservation id, 2 order id, 3 customer id ('' for none), 4 ttl in ms,
--       5 lines ('SKU\tqty' joined by '\n', sorted by SKU), 6 reservation key prefix,
--       7 stock key prefix (for the per-customer counts, customers_key),
--       8 pinned lines ('SKU\tlocation' joined by '\n', '' for none), 9 allocation policy
--       ('priority' or 'most_available'), 10 split ('1' or '0')
-- A SKU whose stock hash says `located`, or a line pinned to a location other than the
-- default one, is allocated over the SKU's levels by `allocate` below, which mirrors
-- stockguard.domain.locations.allocate (docs/locations.md#allocation-policy); every other
-- line pays one more HMGET field and nothing else. The allocations of located lines are
-- stored with the hold and its event as `alloc` (codec.encode_allocations).
-- Mirrors stockguard.domain.customer_refusal then shortfalls: a capped SKU needs a
-- customer and refuses past its cap; safety stock is never held, the backorder allowance
-- (`backorder` in the stock hash, absent = 0) may be (docs/design.md#redis,
-- docs/design.md#backorders). Each line's backordered units (StockLevel.backordered on
-- the level as it stood before this hold) are stored with the hold and its event in the
-- lines' form, only when some line has any: a shop without backorders writes nothing more.
-- Returns {'held', created_at, expires_at, backordered lines ('' for none),
-- allocations ('' for none)}.
-- Mirrors stockguard.domain.locations.allocate (and its _order): the levels a line may
-- draw from are the active locations with a level (only `pinned` when pinned), ordered
-- by (priority, code) or, for most_available, (-max(available, 0), priority, code) on the
-- levels before the line (the code's place is its `rank`); a shelf pass, then an
-- allowance pass; split '0' takes the whole line from the first location whose shelf
-- covers it, else the first whose available does. `levels`: code -> {on_hand, reserved,
-- version, safety, backorder}; `places`: code -> {priority, active, rank}.
-- Returns ({{code, units, backordered}, ...}, nil) or (nil, available) for a shortfall.
local function allocate(levels, places, q, policy, split, pinned)
  local order = {}
  for code, l in pairs(levels) do
    local place = places[code]
    if place and place[2] and (pinned == nil or pinned == code) then
      local available = l[1] + l[5] - l[2] - l[4]
      order[#order + 1] = {code, l, math.max(available, 0), math.max(l[1] - l[4] - l[2], 0),
        available, place}
    end
  end
  if policy == 'most_available' then
    table.sort(order, function(a, b)
      if a[3] ~= b[3] then
        return a[3] > b[3]
      end
      if a[6][1] ~= b[6][1] then
        return a[6][1] < b[6][1]
      end
      return a[6][3] < b[6][3]
    end)
  else
    table.sort(order, function(a, b)
      if a[6][1] ~= b[6][1] then
        return a[6][1] < b[6][1]
      end
      return a[6][3] < b[6][3]
    end)
  end
  -- LocationLevel.backordered: the units past the level's shelf, of `units` held now.
  local function beyond(l, units)
    return math.min(math.max(l[2] + units - (l[1] - l[4]), 0), units)
  end
  if split == '0' then
    local best = 0
    for _, o in ipairs(order) do
      best = math.max(best, o[3])
    end
    if best < q then
      return nil, best
    end
    for _, o in ipairs(order) do
      if o[4] >= q then
        return {{o[1], q, beyond(o[2], q)}}, nil
      end
    end
    for _, o in ipairs(order) do
      if o[5] >= q then
        return {{o[1], q, beyond(o[2], q)}}, nil
      end
    end
  end
  local total = 0
  for _, o in ipairs(order) do
    total = total + o[3]
  end
  if total < q then
    return nil, total
  end
  local taken, drawn, left = {}, {}, q
  for _, o in ipairs(order) do
    if left == 0 then
      break
    end
    local units = math.min(o[4], left)
    if units > 0 then
      taken[o[1]] = units
      drawn[#drawn + 1] = o
      left = left - units
    end
  end
  for _, o in ipairs(order) do
    if left == 0 then
      break
    end
    local units = math.min(o[3] - (taken[o[1]] or 0), left)
    if units > 0 then
      if taken[o[1]] == nil then
        drawn[#drawn + 1] = o
      end
      taken[o[1]] = (taken[o[1]] or 0) + units
      left = left - units
    end
  end
  local result = {}
  for _, o in ipairs(drawn) do
    result[#result + 1] = {o[1], taken[o[1]], beyond(o[2], taken[o[1]])}
  end
  return result, nil
end

-- Every location (KeyLayout.locations) as code -> {priority, active, rank}.
local function read_places(stock_prefix)
  local places = {}
  local flat = redis.call('HGETALL', locations_key(stock_prefix))
  for i = 1, #flat, 2 do
    local p, a, r = string.match(flat[i + 1], '^(%d+) (%d) (%d+)$')
    places[flat[i]] = {tonumber(p), a == '1', tonumber(r)}
  end
  return places
end

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
local pins, places = nil, nil
if ARGV[8] ~= '' then
  pins = {}
  places = read_places(ARGV[7])
  for sku, loc in string.gmatch(ARGV[8], '([^\t\n]+)\t([^\t\n]+)') do
    if places[loc] == nil then
      -- decide_in_order_by_location: a pin to no location refuses before anything else.
      return {'badpin', loc}
    end
    pins[sku] = loc
  end
end
local unknown, short, capped, beyond, drawn = {}, {}, {}, {}, {}
for i = 1, #skus do
  local level = redis.call('HMGET', KEYS[5 + i], 'on_hand', 'reserved', 'safety', 'cap',
    'backorder', 'located')
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
    local pin = pins and pins[skus[i]]
    if level[6] or (pin and pin ~= 'default') then
      if places == nil then
        places = read_places(ARGV[7])
      end
      local levels = {default = {tonumber(level[1]), tonumber(level[2]), 0,
        tonumber(level[3] or '0'), tonumber(level[5] or '0')}}
      if level[6] then
        local flat = redis.call('HGETALL', located_key(ARGV[7], skus[i]))
        for j = 1, #flat, 2 do
          levels[flat[j]] = decode_level(flat[j + 1])
        end
      end
      local got, available = allocate(levels, places, qtys[i], ARGV[9], ARGV[10], pin)
      if got == nil then
        short[#short + 1] = skus[i]
        short[#short + 1] = int(qtys[i])
        short[#short + 1] = int(available)
      else
        drawn[i] = got
        local units = 0
        for _, a in ipairs(got) do
          units = units + a[3]
        end
        if units > 0 then
          beyond[#beyond + 1] = skus[i] .. '\t' .. int(units)
        end
      end
    else
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
local alloc = {}
for i = 1, #skus do
  if drawn[i] then
    for _, a in ipairs(drawn[i]) do
      move_level(ARGV[7], skus[i], a[1], 0, a[2])
      alloc[#alloc + 1] = skus[i] .. '\t' .. a[1] .. '\t' .. int(a[2]) .. '\t' .. int(a[3])
    end
  else
    redis.call('HINCRBY', KEYS[5 + i], 'reserved', qtys[i])
    redis.call('HINCRBY', KEYS[5 + i], 'version', 1)
  end
  if capped[i] then
    redis.call('HINCRBY', capped[i], ARGV[3], qtys[i])
  end
end
redis.call('HSET', KEYS[3], 'order_id', ARGV[2], 'customer_id', ARGV[3], 'status', 'held',
  'lines', ARGV[5], 'expires_at', int(expires), 'created_at', int(now))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[4], int(expires), ARGV[1])
if #beyond == 0 and #alloc == 0 then
  redis.call('XADD', KEYS[5], '*', 'type', 'reserved', 'id', ARGV[1], 'order_id', ARGV[2],
    'customer_id', ARGV[3], 'lines', ARGV[5], 'expires_at', int(expires), 'at', int(now))
  return {'held', int(now), int(expires), '', ''}
end
if #alloc > 0 then
  -- A located hold (docs/locations.md): the event carries the backordered units too.
  local allocated = table.concat(alloc, '\n')
  local backordered = table.concat(beyond, '\n')
  redis.call('HSET', KEYS[3], 'alloc', allocated)
  if #beyond > 0 then
    redis.call('HSET', KEYS[3], 'backordered', backordered)
  end
  redis.call('XADD', KEYS[5], '*', 'type', 'reserved', 'id', ARGV[1], 'order_id', ARGV[2],
    'customer_id', ARGV[3], 'lines', ARGV[5], 'expires_at', int(expires), 'at', int(now),
    'backordered', backordered, 'alloc', allocated)
  return {'held', int(now), int(expires), backordered, allocated}
end
local backordered = table.concat(beyond, '\n')
redis.call('HSET', KEYS[3], 'backordered', backordered)
redis.call('XADD', KEYS[5], '*', 'type', 'reserved', 'id', ARGV[1], 'order_id', ARGV[2],
  'customer_id', ARGV[3], 'lines', ARGV[5], 'expires_at', int(expires), 'at', int(now),
  'backordered', backordered)
return {'held', int(now), int(expires), backordered, ''}
