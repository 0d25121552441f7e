-- annotation_write.lua: create, update or delete one annotation (after the
-- versioned.lua library, which does the version check, the write, the
-- revision and the `annotation` event in this same atomic run).
--
-- Guarantees, on top of vd_write: the time index (a sorted set of ids by
-- `ts`) always lists exactly the live annotations at their current ts.
--
-- KEYS[1] annotation hash, KEYS[2] revisions, KEYS[3] event log,
-- KEYS[4] time index (sorted set: id -> ts)
-- ARGV as vd_write, plus ARGV[#ARGV] the plain id (index member).

local result = vd_write(KEYS[1], KEYS[2], KEYS[3], ARGV)
if result[1] == 'ok' then
  local id = ARGV[#ARGV]
  if ARGV[1] == 'delete' then
    redis.call('ZREM', KEYS[4], id)
  else
    redis.call('ZADD', KEYS[4], redis.call('HGET', KEYS[1], 'f:ts'), id)
  end
end
return result
