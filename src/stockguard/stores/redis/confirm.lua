-- Mirrors stockguard.domain.ending(reservation, CONFIRMED, now) (domain/rules.py):
-- past expiry it writes expired and Python refuses the confirm; else held -> confirmed.
-- Paid: a held reservation's units leave on_hand and reserved. Past its expiry (Redis
-- clock) it ends as expired instead, whatever the sweeper has done so far.
-- A hold with backordered units takes on_hand below 0 (docs/design.md#backorders), and
-- no further than the allowance: on_hand and reserved drop by the same units, so I1
-- (reserved <= on_hand + backorder) holds after as before, with no check to make here.
-- The ledger's on_hand after may then be negative ('SKU\t-3' in the event's `after`).
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
  if now >= tonumber(found[2]) then
    end_hold(KEYS[2], ARGV[1], found[3], 'expired', now, ARGV[2], KEYS[3], KEYS[4],
      tonumber(ARGV[3]), false, found[4])
  else
    end_hold(KEYS[2], ARGV[1], found[3], 'confirmed', now, ARGV[2], KEYS[3], KEYS[4],
      tonumber(ARGV[3]), true, found[4])
  end
end
-- Python reads the final status: confirmed (done or replay), expired, released.
return {'found', redis.call('HGETALL', KEYS[2])}
