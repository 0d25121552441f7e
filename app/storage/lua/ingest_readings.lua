-- ingest_readings.lua: store validated batches of readings, their events and
-- the alerts they cause. alert_eval.lua (evaluate_alerts) is prepended.
--
-- A run carries one or more batches (concurrent POSTs grouped by
-- group_commit); each batch is refused or stored whole. Guarantees, all
-- inside one atomic script run:
--   * series limits: a series is device + metric + tags (its canonical id,
--     app/storage/keyspace.py series_id). Before anything of a batch is
--     written, the series it would create are counted against the device's
--     count (KEYS[7], a hash device -> series) and the total (HLEN of the
--     latest-ts hash); past either limit the whole batch is refused (nothing
--     written) and each of its readings answers '!limit\tdevice\tmax';
--   * for each reading, the series' latest value is a last-write-wins
--     register keyed by the reading's own ts: it is replaced only when
--     ts >= the stored ts, so a late older reading never replaces a newer one;
--   * the point joins the series' history (a sorted set by ts), trimmed to the
--     newest ARGV[1] points, whether or not it became the latest;
--   * one `metric` event per reading is appended to the event log
--     (MAXLEN ~ ARGV[2]), carrying the series id and whether the reading
--     became the latest;
--   * then the alert rules of the stored readings' series are evaluated over
--     them in ts order (ties in run order), so every `alert` event comes after
--     the `metric` event that caused it. With no rules at all this costs one
--     HLEN.
-- Python validates every batch before calling, so no reading is rejected
-- half-way through for its content.
--
-- KEYS[1] latest values (hash: series -> reading JSON)
-- KEYS[2] latest ts      (hash: series -> ts ms)
-- KEYS[3] event log      (stream)
-- KEYS[4] alert rules, KEYS[5] rules by series, KEYS[6] alert states (hashes)
-- KEYS[7] series per device (hash: device -> count)
-- KEYS[7+i] history of reading i (sorted set)
-- ARGV[1] history size, ARGV[2] event log maxlen, ARGV[3] max series per
-- device, ARGV[4] max series in total, ARGV[5] number of batches B, then B
-- batch sizes, then per reading 8 values: series id, ts ms, reading JSON,
-- history member, topic, the event data JSON up to (not including) the value
-- of its last key, `latest`, the value as JSON, and the device.
-- Returns per reading its `metric` event id, or the refusal of its batch.

local history_size = tonumber(ARGV[1])
local maxlen = ARGV[2]
local max_per_device, max_total = tonumber(ARGV[3]), tonumber(ARGV[4])
local nbatches = tonumber(ARGV[5])
local per = 8
local first_history = 7
local first = 6 + nbatches -- ARGV index of the first reading's first value

-- latest ts per series, read once: false when the series does not exist yet
local known = {}
local function current_ts(field)
  local c = known[field]
  if c == nil then
    local stored = redis.call('HGET', KEYS[2], field)
    c = stored and tonumber(stored) or false
    known[field] = c
  end
  return c
end

local device_counts = {}
local function device_count(device)
  local c = device_counts[device]
  if c == nil then
    c = tonumber(redis.call('HGET', KEYS[7], device) or '0')
    device_counts[device] = c
  end
  return c
end

local total = nil

-- nil when the batch fits the limits, else its refusal
local function check_limits(from, to)
  local new_by_device, devices, seen, new_total = {}, {}, {}, 0
  for i = from, to do
    local base = first + (i - 1) * per
    local field = ARGV[base]
    if not seen[field] and current_ts(field) == false then
      seen[field] = true
      new_total = new_total + 1
      local device = ARGV[base + 7]
      if not new_by_device[device] then
        new_by_device[device] = 0
        devices[#devices + 1] = device
      end
      new_by_device[device] = new_by_device[device] + 1
    end
  end
  if new_total == 0 then return nil end
  for _, device in ipairs(devices) do
    if device_count(device) + new_by_device[device] > max_per_device then
      return '!max_series_per_device\t' .. device .. '\t' .. max_per_device
    end
  end
  total = total or redis.call('HLEN', KEYS[2])
  if total + new_total > max_total then
    return '!max_series\t\t' .. max_total
  end
  for _, device in ipairs(devices) do
    device_counts[device] = device_count(device) + new_by_device[device]
    redis.call('HINCRBY', KEYS[7], device, new_by_device[device])
  end
  total = total + new_total
  return nil
end

local results = {}
local stored = {}
local i = 0
for b = 1, nbatches do
  local size = tonumber(ARGV[5 + b])
  local refusal = check_limits(i + 1, i + size)
  for _ = 1, size do
    i = i + 1
    if refusal then
      results[i] = refusal
    else
      local base = first + (i - 1) * per
      local field = ARGV[base]
      local ts_text = ARGV[base + 1]
      local ts = tonumber(ts_text)
      local history = KEYS[first_history + i]

      local current = current_ts(field)
      local is_latest = (current == false) or ts >= current
      if is_latest then
        redis.call('HSET', KEYS[1], field, ARGV[base + 2])
        redis.call('HSET', KEYS[2], field, ts_text)
        known[field] = ts
      end
      redis.call('ZADD', history, ts_text, ARGV[base + 3])
      redis.call('ZREMRANGEBYRANK', history, 0, -(history_size + 1))

      local data = ARGV[base + 5] .. (is_latest and 'true}' or 'false}')
      results[i] = redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*',
        'type', 'metric', 'topic', ARGV[base + 4], 'data', data)
      stored[#stored + 1] = {field, ts, ARGV[base + 6], i}
    end
  end
end

if #stored > 0 and redis.call('HLEN', KEYS[5]) > 0 then
  table.sort(stored, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[4] < b[4]
  end)
  evaluate_alerts(KEYS[4], KEYS[5], KEYS[6], KEYS[3], maxlen, stored)
end
return results
