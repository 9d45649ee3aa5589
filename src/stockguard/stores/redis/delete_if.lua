-- Deletes a key only while it still holds the given value (give back a lease; fence a
-- load marker only if it is still the epoch that was judged).
-- KEYS: 1 the key   ARGV: 1 the value it must hold
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
