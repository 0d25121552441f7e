-- presence_heartbeat.lua: a tab says "I am here" in a room.
--
-- Guarantees, all in one atomic run, timed by Redis's own clock (TIME), so
-- the web processes' clocks never matter:
--   * the session's heartbeat key lives ARGV[6] ms more (PX): its existence
--     is what "alive" means; the room's expiry set scores the session with the
--     same deadline, and the rooms index keeps the room's earliest deadline,
--     so a sweeper finds due sessions without scanning or keyspace events;
--   * membership is the expiry set alone, and only presence_leave.lua removes
--     from it (emitting `leave` when its ZREM removed the member), so per
--     session `join` and `leave` strictly alternate, never doubled;
--   * a session not in the room joins: one `presence` event, action `join`;
--   * a session already there is refreshed silently, or with one `update`
--     event when its user, subject or state changed;
--   * `tabs` counts the tabs of the same person: the same subject (the
--     caller's stable id), never just the same display name.
--
-- KEYS[1] rooms index   (zset: room -> earliest deadline ms)
-- KEYS[2] room expiry   (zset: session -> deadline ms)
-- KEYS[3] room members  (hash: session -> {tab, user, subject, self_declared, state, since} JSON)
-- KEYS[4] heartbeat key (string, PX = the session's remaining life)
-- KEYS[5] event log     (stream)
-- ARGV: 1 session, 2 tab, 3 room, 4 user ('' = anonymous), 5 state,
--       6 life ms (TTL + grace), 7 event log maxlen, 8 topic,
--       9 subject (who, stably: from the caller's identity), 10 self-declared ('1' | '0')
-- Returns {action ('join' | 'update' | 'refresh'), event id or false}.

local session, tab, room, state = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local user = ARGV[4]
if user == '' then user = cjson.null end
local subject, self_declared = ARGV[9], ARGV[10] == '1'
local life = tonumber(ARGV[6])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local present = redis.call('ZSCORE', KEYS[2], session)
redis.call('ZADD', KEYS[2], now + life, session)
redis.call('SET', KEYS[4], state, 'PX', life)
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[1], first[2], room)

local action = 'join'
local since = now
if present then
  local raw = redis.call('HGET', KEYS[3], session)
  local old = raw and cjson.decode(raw)
  if old and old.user == user and old.subject == subject and old.state == state then
    return {'refresh', false}
  end
  action = 'update'
  if old and old.since then since = old.since end
end
redis.call('HSET', KEYS[3], session, cjson.encode({tab = tab, user = user, subject = subject,
  self_declared = self_declared, state = state, since = since}))

-- The person's open tabs in this room, after this change (rooms hold few tabs).
local tabs = 0
for _, raw in ipairs(redis.call('HVALS', KEYS[3])) do
  if cjson.decode(raw).subject == subject then tabs = tabs + 1 end
end
local data = cjson.encode({action = action, room = room, tab = tab, user = user, subject = subject,
  self_declared = self_declared, state = state, tabs = tabs})
local id = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*',
  'type', 'presence', 'topic', ARGV[8], 'data', data)
return {action, id}
