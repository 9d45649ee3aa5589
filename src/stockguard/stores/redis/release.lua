-- Mirrors stockguard.domain.ending(reservation, RELEASED, now) (domain/rules.py):
-- past expiry it writes expired, else held -> released; terminal states write nothing.
-- Not paid: a held reservation's units become available again. Past its expiry it ends
-- as expired (the units come back either way; the status tells the truth).
-- KEYS: 1 load marker, 2 reservation key, 3 due index, 4 event stream
-- ARGV: 1 reservation id, 2 stock key prefix, 3 ms to keep the reservation after it ends
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local found = redis.call('HMGET', KEYS[2], 'status', 'expires_at', 'lines', 'alloc')
if not found[1] then
  return {'missing'}
end
if found[1] == 'held' then
  local now = now_ms()
  local status = 'released'
  if now >= tonumber(found[2]) then
    status = 'expired'
  end
  end_hold(KEYS[2], ARGV[1], found[3], status, now, ARGV[2], KEYS[3], KEYS[4],
    tonumber(ARGV[3]), false, found[4])
end
return {'found', redis.call('HGETALL', KEYS[2])}
