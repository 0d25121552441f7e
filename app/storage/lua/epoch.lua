-- epoch.lua: the identity of this Redis dataset, created once.
--
-- Guarantees: if the epoch hash is missing (a new Redis, or one that lost its
-- data), it is created with a fresh token (ARGV[1]) and a floor. The floor is
-- the first event still in the log if there is one (those events belong to
-- this dataset, whoever wrote them first), else the server's clock now. Event
-- ids below the floor belong to an earlier dataset, so a client resuming from
-- one gets `reset`. An existing epoch is never changed. Returns {token, floor}.
--
-- KEYS[1] epoch hash, KEYS[2] event log stream

local token = redis.call('HGET', KEYS[1], 'token')
if token then
  return {token, redis.call('HGET', KEYS[1], 'floor')}
end
local floor
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first > 0 then
  floor = first[1][1]
else
  local now = redis.call('TIME')
  floor = tostring(tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)) .. '-0'
end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'floor', floor)
return {ARGV[1], floor}
