-- Reads stock levels atomically, refusing while the keyspace is not loaded.
-- KEYS: 1 load marker, 2.. stock keys
-- ARGV: 1 stock key prefix, 2.. the SKU of each stock key (in KEYS' order)
-- Each level: on_hand, reserved, version, then the policy fields reserve.lua decides with
-- (codec.level_from's order): safety, cap, backorder (docs/design.md#backorders); then
-- `located`, and for a located SKU its levels at the other locations (HGETALL of
-- located_key). When any SKU is located, the reply ends with every location, so the
-- totals are taken on one picture (docs/locations.md#totals).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local levels = {}
local any_located = false
for i = 2, #KEYS do
  local level = redis.call('HMGET', KEYS[i], 'on_hand', 'reserved', 'version', 'safety', 'cap',
    'backorder', 'located')
  if level[1] then
    if level[7] then
      any_located = true
      level[8] = redis.call('HGETALL', located_key(ARGV[1], ARGV[i]))
    end
    levels[#levels + 1] = level
  else
    levels[#levels + 1] = {}
  end
end
if any_located then
  return {'ok', levels, redis.call('HGETALL', locations_key(ARGV[1]))}
end
return {'ok', levels}
