-- lease.lua: take or renew a lease held by one process among many.
--
-- Guarantees: at most one owner at a time. The key is set to ARGV[1] (the
-- caller's owner id) with a TTL of ARGV[2] ms if it is free or already ours;
-- someone else's lease is left alone. Returns 1 if the caller holds the lease.
--
-- KEYS[1] lease key

local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
