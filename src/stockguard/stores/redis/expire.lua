-- The sweep side of stockguard.domain.ending: a held reservation past expiry ends expired.
-- Ends up to ARGV[3] held reservations whose expiry has passed by Redis's clock.
-- KEYS: 1 load marker, 2 due index, 3 event stream
-- ARGV: 1 reservation key prefix, 2 stock key prefix, 3 batch limit,
--       4 ms to keep a reservation after it ends
-- Returns {ended, looked at}; the caller repeats while a full batch was due.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0}
end
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', int(now), 'LIMIT', 0, tonumber(ARGV[3]))
local ended = 0
for _, id in ipairs(due) do
  local rkey = ARGV[1] .. id
  local found = redis.call('HMGET', rkey, 'status', 'lines', 'alloc')
  if found[1] == 'held' then
    end_hold(rkey, id, found[2], 'expired', now, ARGV[2], KEYS[2], KEYS[3],
      tonumber(ARGV[4]), false, found[3])
    ended = ended + 1
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return {ended, #due}
