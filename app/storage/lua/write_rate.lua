-- write_rate.lua: count one write against a token's fixed window.
--
-- Guarantees: the count and the window's start happen in one step, so every
-- process sharing this Redis counts against the same window; the window
-- starts at the first write after the previous one ended (PX on first INCR)
-- and a refused write does not extend it. Returns {count, ms left in window}.
--
-- KEYS[1] counter key
-- ARGV[1] window length, ms

local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  -- A counter without expiry (e.g. restored from an old dump) would block forever.
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
