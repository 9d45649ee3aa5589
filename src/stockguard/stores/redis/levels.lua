-- Reads stock levels atomically, refusing while the keyspace is not loaded.
-- KEYS: 1 load marker, 2.. stock keys
-- Each level: on_hand, reserved, version, then the policy fields reserve.lua decides with
-- (codec.level_from's order): safety, cap, backorder (docs/design.md#backorders).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local levels = {}
for i = 2, #KEYS do
  local level = redis.call('HMGET', KEYS[i], 'on_hand', 'reserved', 'version', 'safety', 'cap',
    'backorder')
  if level[1] then
    levels[#levels + 1] = level
  else
    levels[#levels + 1] = {}
  end
end
return {'ok', levels}
