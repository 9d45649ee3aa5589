-- Mirrors stockguard.domain.release_part(reservation, lines, now) (domain/rules.py):
-- past expiry it writes expired; a SKU the hold does not hold, or more units than it
-- holds, writes nothing (Python names the error); giving back every unit left is a full
-- release; otherwise the lines shrink (a line at 0 goes) and `reserved` drops by the units.
-- Units given back leave a line's backordered part first (domain.remaining_lines,
-- docs/design.md#backorders): the hold's `backordered` field shrinks with it, and goes
-- when no line has any left.
-- A line with allocations (`alloc`) gives back per location as
-- stockguard.domain.shrink_allocations says, each level moved where its units were held;
-- the event then carries `given_at` ('SKU\tlocation\tunits' rows).
-- KEYS: 1 load marker, 2 reservation key, 3 due index, 4 event stream
-- ARGV: 1 reservation id, 2 stock key prefix, 3 ms to keep the reservation after it ends,
--       4 lines to give back ('SKU\tqty' joined by '\n', each SKU once)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local found = redis.call('HMGET', KEYS[2], 'status', 'expires_at', 'lines', 'customer_id',
  'backordered', 'alloc')
if not found[1] then
  return {'missing'}
end
if found[1] == 'held' then
  local now = now_ms()
  if now >= tonumber(found[2]) then
    end_hold(KEYS[2], ARGV[1], found[3], 'expired', now, ARGV[2], KEYS[3], KEYS[4],
      tonumber(ARGV[3]), false, found[6])
    return {'found', redis.call('HGETALL', KEYS[2])}
  end
  local held, order = {}, {}
  for sku, qty in each_line(found[3]) do
    held[sku] = tonumber(qty)
    order[#order + 1] = sku
  end
  for sku, qty in each_line(ARGV[4]) do
    if held[sku] == nil or tonumber(qty) > held[sku] then
      return {'refused', redis.call('HGETALL', KEYS[2]), int(now)}
    end
    held[sku] = held[sku] - tonumber(qty)
  end
  local left = {}
  for _, sku in ipairs(order) do
    if held[sku] > 0 then
      left[#left + 1] = sku .. '\t' .. int(held[sku])
    end
  end
  if #left == 0 then
    end_hold(KEYS[2], ARGV[1], found[3], 'released', now, ARGV[2], KEYS[3], KEYS[4],
      tonumber(ARGV[3]), false, found[6])
  else
    local drawn = allocations_by_sku(found[6])
    local given_at = {}
    for sku, qty in each_line(ARGV[4]) do
      local q = tonumber(qty)
      if drawn[sku] then
        -- Mirrors stockguard.domain.shrink_allocations: backordered units first, then in
        -- the reverse of the order drawn (docs/locations.md#settling).
        local a, left = drawn[sku], q
        local back = {}
        for j = #a, 1, -1 do
          local taken = math.min(a[j][3], left)
          a[j][3] = a[j][3] - taken
          a[j][2] = a[j][2] - taken
          back[j] = taken
          left = left - taken
        end
        for j = #a, 1, -1 do
          local taken = math.min(a[j][2], left)
          a[j][2] = a[j][2] - taken
          back[j] = back[j] + taken
          left = left - taken
        end
        for j = 1, #a do
          if back[j] > 0 then
            move_level(ARGV[2], sku, a[j][1], 0, -back[j])
            given_at[#given_at + 1] = sku .. '\t' .. a[j][1] .. '\t' .. int(back[j])
          end
        end
      else
        local skey = ARGV[2] .. sku
        redis.call('HINCRBY', skey, 'reserved', -q)
        redis.call('HINCRBY', skey, 'version', 1)
      end
      uncount(ARGV[2], found[4], sku, q)
    end
    if found[6] then
      local rows = {}
      for _, row in ipairs(each_sku_sorted(drawn)) do
        for _, a in ipairs(drawn[row]) do
          if a[2] > 0 then
            rows[#rows + 1] = row .. '\t' .. a[1] .. '\t' .. int(a[2]) .. '\t' .. int(a[3])
          end
        end
      end
      if #rows == 0 then
        redis.call('HDEL', KEYS[2], 'alloc')
      else
        redis.call('HSET', KEYS[2], 'alloc', table.concat(rows, '\n'))
      end
    end
    redis.call('HSET', KEYS[2], 'lines', table.concat(left, '\n'))
    if found[5] then
      local back = {}
      for sku, qty in each_line(ARGV[4]) do
        back[sku] = tonumber(qty)
      end
      local beyond = {}
      for sku, units in each_line(found[5]) do
        local still = tonumber(units) - (back[sku] or 0)
        if still > 0 then
          beyond[#beyond + 1] = sku .. '\t' .. int(still)
        end
      end
      if #beyond == 0 then
        redis.call('HDEL', KEYS[2], 'backordered')
      else
        redis.call('HSET', KEYS[2], 'backordered', table.concat(beyond, '\n'))
      end
    end
    if #given_at > 0 then
      redis.call('XADD', KEYS[4], '*', 'type', 'released_part', 'id', ARGV[1],
        'lines', ARGV[4], 'at', int(now), 'given_at', table.concat(given_at, '\n'))
    else
      redis.call('XADD', KEYS[4], '*', 'type', 'released_part', 'id', ARGV[1],
        'lines', ARGV[4], 'at', int(now))
    end
  end
end
return {'found', redis.call('HGETALL', KEYS[2])}
