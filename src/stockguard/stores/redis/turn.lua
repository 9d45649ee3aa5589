-- The persister's turn, in one round trip: the load epoch, and the lease taken or renewed.
-- KEYS: 1 load marker, 2 persister lease   ARGV: 1 holder token, 2 lease length in ms
-- Returns {epoch or '', 1 when the caller holds the lease else 0}.
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  return {'', 0}
end
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {epoch, 1}
end
if not holder then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return {epoch, 1}
end
return {epoch, 0}
