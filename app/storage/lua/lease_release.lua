-- lease_release.lua: give up a lease taken with lease.lua, if it is still ours.
--
-- Guarantees: the key is deleted only while it holds ARGV[1] (the caller's
-- owner id); someone else's lease is left alone. Returns 1 if it was released.
--
-- KEYS[1] lease key

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
