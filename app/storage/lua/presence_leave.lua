-- presence_leave.lua: a session leaves a room, explicitly or by expiry.
--
-- Guarantees, all in one atomic run:
--   * exactly one `leave` per join: the event goes out only when this run's
--     ZREM actually removed the session from the room's expiry set, so an
--     explicit leave racing the sweeper, or sweepers in many processes racing
--     each other, emit it once between them;
--   * reason 'expired' (the sweeper) first checks the heartbeat key: while
--     Redis has not expired it (a heartbeat just came in), nothing happens;
--   * the member's record goes with it, the rooms index keeps the room's
--     earliest deadline (or drops an empty room).
--
-- KEYS[1] rooms index   (zset: room -> earliest deadline ms)
-- KEYS[2] room expiry   (zset: session -> deadline ms)
-- KEYS[3] room members  (hash: session -> {tab, user, subject, self_declared, state, since} JSON)
-- KEYS[4] heartbeat key (string, PX)
-- KEYS[5] event log     (stream)
-- ARGV: 1 session, 2 tab, 3 room, 4 reason ('left' | 'expired'),
--       5 event log maxlen, 6 topic
-- Returns the `leave` event id, or false when this run emitted nothing.

local session, room, reason = ARGV[1], ARGV[3], ARGV[4]
if reason == 'expired' and redis.call('EXISTS', KEYS[4]) == 1 then
  return false
end
if redis.call('ZREM', KEYS[2], session) == 0 then
  return false
end

local raw = redis.call('HGET', KEYS[3], session)
local old = raw and cjson.decode(raw) or {tab = ARGV[2], user = cjson.null, state = cjson.null}
-- Records from before subjects were kept: the name stood for the person.
local subject = old.subject or ('self:' .. (old.user ~= cjson.null and old.user or ''))
redis.call('HDEL', KEYS[3], session)
redis.call('DEL', KEYS[4])
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[1] then
  redis.call('ZADD', KEYS[1], first[2], room)
else
  redis.call('ZREM', KEYS[1], room)
end

-- The person's tabs still open here: 0 means they are gone from the room.
local tabs = 0
for _, raw_other in ipairs(redis.call('HVALS', KEYS[3])) do
  local other = cjson.decode(raw_other)
  local other_subject = other.subject or ('self:' .. (other.user ~= cjson.null and other.user or ''))
  if other_subject == subject then tabs = tabs + 1 end
end
local data = cjson.encode({action = 'leave', room = room, tab = old.tab, user = old.user, subject = subject,
  self_declared = old.self_declared == true, state = old.state, tabs = tabs, reason = reason})
return redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*',
  'type', 'presence', 'topic', ARGV[6], 'data', data)
