-- token_write.lua: look a token up and, only if it is live, count one write against its window.
--
-- Guarantees: the lookup and the count happen in one step (the ingest path's
-- one round trip); an unknown, revoked or expired token creates no key, so a
-- flood of bogus tokens leaves nothing behind. A live token is counted
-- exactly as write_rate.lua counts it (same key, same fixed window).
-- Returns {the token's record (nil when there is none), count, ms left in window}.
--
-- KEYS[1] the token's record (Keys.token)
-- KEYS[2] its write counter (Keys.write_rate)
-- ARGV[1] window length, ms

local record = redis.call('GET', KEYS[1])
if not record then
  return {false, 0, 0}
end
local count = redis.call('INCR', KEYS[2])
if count == 1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
local left = redis.call('PTTL', KEYS[2])
if left < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  left = tonumber(ARGV[1])
end
return {record, count, left}
