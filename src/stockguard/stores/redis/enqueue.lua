-- Appends one reservation request to a queue partition, unless the partition is full.
-- KEYS: 1 the partition's stream   ARGV: 1 depth limit, 2.. field, value pairs
-- Returns the entry id (its time part is the enqueue time by Redis's clock), or false.
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
