-- refusal.lua: count one refused request against its source, and sample it into the refusal log.
--
-- Guarantees: one key per source (a client address) whatever the request
-- presented, so a flood of bogus tokens leaves one small hash behind, never
-- a key per token; the counts and the window's start happen in one step, so
-- every process sharing this Redis counts against the same window (which
-- starts at the source's first refusal, as in write_rate.lua). The refusal
-- log is a stream of its own, capped apart from the security audit log, and
-- gets only the 1st, 2nd, 4th, 8th, ... refusal of each kind from a source
-- in a window (each entry carrying that count): a flood of N refusals writes
-- about log2(N) entries. Returns {count of this kind in the window, failed
-- credentials in the window, ms left in the window}.
--
-- KEYS[1] the source's counts: a hash of kind -> count, plus "_failures"
-- KEYS[2] the refusal log (a stream)
-- ARGV[1] window length, ms
-- ARGV[2] kind (bad-token, login-failed, anonymous, wrong-role, csrf, ...)
-- ARGV[3] "1" if it is a failed credential (it counts against the source's failure limit)
-- ARGV[4] the refusal log's length (approximate cap)
-- ARGV[5] the entry, JSON (without its count)

local count = redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
local failures
if ARGV[3] == '1' then
  failures = redis.call('HINCRBY', KEYS[1], '_failures', 1)
else
  failures = tonumber(redis.call('HGET', KEYS[1], '_failures') or '0')
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  -- First refusal of the window (or a hash restored without expiry): the window starts now.
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
local sample = 1
while sample < count do
  sample = sample * 2
end
if sample == count then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'entry', ARGV[5], 'count', count)
end
return {count, failures, left}
