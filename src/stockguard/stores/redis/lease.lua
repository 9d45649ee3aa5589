-- Takes or renews a lease: one holder at a time across every process.
-- KEYS: 1 lease key   ARGV: 1 holder token, 2 lease length in ms
-- Returns 1 when the caller holds the lease for ARGV[2] ms from now, 0 otherwise.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
