-- ingest_readings.lua: store a validated batch of readings and their events.
--
-- Guarantees, for each reading, all inside one atomic script run:
--   * the series' latest value is a last-write-wins register keyed by the
--     reading's own ts: it is replaced only when ts >= the stored ts, so a late
--     older reading never replaces a newer one;
--   * the point joins the series' history (a sorted set by ts), trimmed to the
--     newest ARGV[1] points, whether or not it became the latest;
--   * one `metric` event is appended to the event log (MAXLEN ~ ARGV[2]),
--     saying whether the reading became the latest.
-- Python validates the whole batch before calling, so no reading is rejected
-- half-way through.
--
-- KEYS[1] latest values (hash: series -> reading JSON)
-- KEYS[2] latest ts      (hash: series -> ts ms)
-- KEYS[3] event log      (stream)
-- KEYS[3+i] history of reading i (sorted set)
-- ARGV[1] history size, ARGV[2] event log maxlen, then per reading 6 values:
--   series field, ts ms, reading JSON, history member, topic, and the event
--   data JSON up to (not including) the value of its last key, `latest`.
-- Returns the event ids, in order.

local history_size = tonumber(ARGV[1])
local maxlen = ARGV[2]
local per = 6
local ids = {}
local n = (#ARGV - 2) / per
for i = 0, n - 1 do
  local base = 2 + i * per
  local field = ARGV[base + 1]
  local ts_text = ARGV[base + 2]
  local ts = tonumber(ts_text)
  local reading = ARGV[base + 3]
  local member = ARGV[base + 4]
  local topic = ARGV[base + 5]
  local data_head = ARGV[base + 6]
  local history = KEYS[3 + i + 1]

  local current = redis.call('HGET', KEYS[2], field)
  local is_latest = (not current) or ts >= tonumber(current)
  if is_latest then
    redis.call('HSET', KEYS[1], field, reading)
    redis.call('HSET', KEYS[2], field, ts_text)
  end
  redis.call('ZADD', history, ts_text, member)
  redis.call('ZREMRANGEBYRANK', history, 0, -(history_size + 1))

  local data = data_head .. (is_latest and 'true}' or 'false}')
  ids[#ids + 1] = redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*',
    'type', 'metric', 'topic', topic, 'data', data)
end
return ids
