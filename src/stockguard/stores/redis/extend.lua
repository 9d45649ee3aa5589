-- Mirrors stockguard.domain.extension(reservation, ttl, now) (domain/rules.py): past
-- expiry (Redis clock) the hold ends as expired and Python refuses the extend; else the
-- expiry moves to now + ttl, clamped to created_at + the lifetime limit, never earlier.
-- Atomic with expire.lua (one script at a time): the sweep ends a hold or it is extended.
-- KEYS: 1 load marker, 2 reservation key, 3 due index, 4 event stream
-- ARGV: 1 reservation id, 2 stock key prefix, 3 ms to keep the reservation after it ends,
--       4 ttl in ms, 5 lifetime limit in ms
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
local found = redis.call('HMGET', KEYS[2], 'status', 'expires_at', 'lines', 'created_at',
  'alloc')
if not found[1] then
  return {'missing'}
end
if found[1] == 'held' then
  local now = now_ms()
  local expires = tonumber(found[2])
  if now >= expires then
    end_hold(KEYS[2], ARGV[1], found[3], 'expired', now, ARGV[2], KEYS[3], KEYS[4],
      tonumber(ARGV[3]), false, found[5])
  else
    local wanted = math.min(now + tonumber(ARGV[4]), tonumber(found[4]) + tonumber(ARGV[5]))
    if wanted > expires then
      redis.call('HSET', KEYS[2], 'expires_at', int(wanted))
      redis.call('ZADD', KEYS[3], int(wanted), ARGV[1])
      redis.call('XADD', KEYS[4], '*', 'type', 'extended', 'id', ARGV[1],
        'expires_at', int(wanted), 'at', int(now))
    end
  end
end
-- Python reads the final status: held (extended or already long enough), or an ending.
return {'found', redis.call('HGETALL', KEYS[2])}
