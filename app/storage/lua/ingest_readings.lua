-- ingest_readings.lua: store a validated batch of readings, their events and
-- the alerts they cause. alert_eval.lua (evaluate_alerts) is prepended.
--
-- Guarantees, all inside one atomic script run:
--   * for each reading, the series' latest value is a last-write-wins
--     register keyed by the reading's own ts: it is replaced only when
--     ts >= the stored ts, so a late older reading never replaces a newer one;
--   * the point joins the series' history (a sorted set by ts), trimmed to the
--     newest ARGV[1] points, whether or not it became the latest;
--   * one `metric` event per reading is appended to the event log
--     (MAXLEN ~ ARGV[2]), saying whether the reading became the latest;
--   * then the alert rules of the batch's series are evaluated over its
--     readings in ts order (ties in batch order), so every `alert` event comes
--     after the `metric` event that caused it. With no rules at all this costs
--     one HLEN.
-- Python validates the whole batch before calling, so no reading is rejected
-- half-way through.
--
-- KEYS[1] latest values (hash: series -> reading JSON)
-- KEYS[2] latest ts      (hash: series -> ts ms)
-- KEYS[3] event log      (stream)
-- KEYS[4] alert rules, KEYS[5] rules by series, KEYS[6] alert states (hashes)
-- KEYS[6+i] history of reading i (sorted set)
-- ARGV[1] history size, ARGV[2] event log maxlen, then per reading 7 values:
--   series field, ts ms, reading JSON, history member, topic, the event data
--   JSON up to (not including) the value of its last key, `latest`, and the
--   value as JSON.
-- Returns the `metric` event ids, in order.

local history_size = tonumber(ARGV[1])
local maxlen = ARGV[2]
local per = 7
local first_history = 6
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
  local history = KEYS[first_history + i + 1]

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

if redis.call('HLEN', KEYS[5]) > 0 then
  local order = {}
  for i = 1, n do
    local base = 2 + (i - 1) * per
    order[i] = {ARGV[base + 1], tonumber(ARGV[base + 2]), ARGV[base + 7], i}
  end
  table.sort(order, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[4] < b[4]
  end)
  evaluate_alerts(KEYS[4], KEYS[5], KEYS[6], KEYS[3], maxlen, order)
end
return ids
