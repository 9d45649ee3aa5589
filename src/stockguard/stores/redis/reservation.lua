-- Reads one reservation, refusing while the keyspace is not loaded.
-- KEYS: 1 load marker, 2 reservation key
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unloaded'}
end
return {'ok', redis.call('HGETALL', KEYS[2])}
