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
--   * the point joins the series' history, whether or not it became the
--     latest: its raw points if its ts is inside the raw retention, and the
--     bucket of its ts in every rollup tier whose retention covers it (min,
--     max, sum, count merge; `last` is replaced only by a ts >= its own, so a
--     late reading never replaces a newer last). A reading no tier keeps is
--     still the latest if it is newer, still an event, and answers 'o' .. id
--     so the 202 can count it as too old;
--   * one `metric` event per reading is appended to the event log
--     (MAXLEN ~ ARGV[1]), carrying the series id and whether the reading
--     became the latest;
--   * then the alert rules of the stored readings' series are evaluated over
--     them in ts order (ties in run order), so every `alert` event comes after
--     the `metric` event that caused it. With no rules at all this costs one
--     HLEN.
--
-- Why this layout (app/storage/rollups.py reads it; the two must agree):
-- history is the memory of a deployment (the target: at most 1 MiB per 1 Hz
-- series at 6 h raw, 7 d of 1-minute and 400 d of 1-hour buckets), and each
-- command here is paid per reading. A sorted set costs ~100 bytes per entry
-- and a trim per write; instead, time is cut into chunks, one string key per
-- chunk of a series (and tier). This is format 2 (key names with 'v2:'; the
-- key bases come from Python): format 1 keys (12-byte points, 40-byte buckets)
-- are only read, by Python, until they expire; nothing here touches them.
--   * raw: APPEND 11 bytes (struct '<I3d': ms from the chunk start in 3
--     bytes, as a chunk spans at most 10 minutes, then the value): one command
--     per reading; points are sorted when read;
--   * a tier: the chunk is allocated whole (zeros) when its first reading
--     comes, then each reading is GETRANGE + SETRANGE of its bucket (struct
--     '<ddddI4I<w>': min, max, sum, last, count, ms from the bucket start to
--     last's ts in w bytes, the fewest the step needs: 38 bytes a 1-minute
--     bucket, 39 an hourly one); an all-zero bucket (count 0) is a gap;
--   * within a run, writes are gathered and made once per key or bucket at
--     the end (one HSET per 500 series for the latest values, one APPEND
--     per raw chunk, one GETRANGE + SETRANGE per bucket touched);
--   * each chunk key expires (PXAT) at its end + the retention: trimming by
--     time happens in Redis, with no ZREMRANGEBYSCORE per write and no
--     sweeper, and untouched series are trimmed too;
--   * when a raw chunk starts, the previous one (grown by APPEND with spare
--     room) is rewritten to its exact size, and a pre-tiers history sorted
--     set of the series (history:<series>) gets the raw retention as its TTL.
-- The chunk keys are named here from the key bases and the series id, so
-- they are not in KEYS: this needs a standalone Redis (or Valkey), not a
-- cluster.
-- Python validates every batch before calling, so no reading is rejected
-- half-way through for its content.
--
-- KEYS[1] latest values (hash: series -> reading JSON)
-- KEYS[2] latest ts      (hash: series -> ts ms)
-- KEYS[3] event log      (stream)
-- KEYS[4] alert rules, KEYS[5] rules by series, KEYS[6] alert states (hashes)
-- KEYS[7] series per device (hash: device -> count)
-- ARGV[1] event log maxlen, ARGV[2] max series per device, ARGV[3] max series
-- in total, ARGV[4] now (ms), ARGV[5] key prefix, ARGV[6] raw retention ms,
-- ARGV[7] raw chunk span ms, ARGV[8] raw chunk key base, ARGV[9] number of
-- tiers T, then per tier its step, retention and chunk span (ms), the bytes
-- of a bucket's last offset and its chunk key base; then the number of batches B, B batch sizes,
-- then per reading 7 values: series id, ts ms, reading JSON, topic, the event
-- data JSON up to (not including) the value of its last key, `latest`, the
-- value as JSON, and the device.
-- Returns per reading its `metric` event id ('o' .. id when no tier kept it),
-- or the refusal of its batch.

local maxlen = ARGV[1]
local max_per_device, max_total = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local prefix = ARGV[5]
local raw_keep, raw_span = tonumber(ARGV[6]), tonumber(ARGV[7])
local raw_base = ARGV[8]
local tiers = {}
local a = 10
for t = 1, tonumber(ARGV[9]) do
  local step, keep, span = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local size = 36 + tonumber(ARGV[a + 3])
  tiers[t] = {step = step, keep = keep, span = span, size = size, bytes = span / step * size,
    format = '<ddddI4I' .. ARGV[a + 3], base = ARGV[a + 4]}
  a = a + 5
end
local nbatches = tonumber(ARGV[a])
local sizes_at = a
local per = 7
local first = a + nbatches + 1 -- ARGV index of the first reading's first value

local function int(n) return string.format('%d', n) end

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

-- nil when the batch fits the limits (and its new series are counted), else its refusal
local function check_limits(from, to)
  local new_by_device, devices, seen, new_total = {}, {}, {}, 0
  for i = from, to do
    local base = first + (i - 1) * per
    local field = ARGV[base]
    if not seen[field] and current_ts(field) == false then
      seen[field] = true
      new_total = new_total + 1
      local device = ARGV[base + 6]
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

-- Writes are gathered during the run and made once per key (or bucket) at the
-- end: a batch's readings mostly share series, chunks and buckets, so this
-- turns per-reading commands into per-series ones. Nothing else reads these
-- keys inside the run, and a refused batch adds nothing to them.
local latest_value, latest_ts, latest_order = {}, {}, {}
local raw_parts, raw_chunk, raw_order = {}, {}, {}
local buckets, bucket_order = {}, {} -- key .. '@' .. offset -> {key, offset, low, high, sum, last, count, last_offset, format}
local chunk_keys = {} -- field -> {chunk start -> key name}, per tier (and raw as tier 0)

local function chunk_key(t, base, field, chunk)
  local by_field = chunk_keys[t]
  if not by_field then by_field = {}; chunk_keys[t] = by_field end
  local by_chunk = by_field[field]
  if not by_chunk then by_chunk = {}; by_field[field] = by_chunk end
  local key = by_chunk[chunk]
  if not key then
    key = base .. field .. ':' .. int(chunk)
    by_chunk[chunk] = key
  end
  return key
end

-- the reading's point in every tier that keeps its ts; false when none does
local function keep_history(field, ts, value)
  local kept = false
  if ts >= now - raw_keep then
    local chunk = ts - ts % raw_span
    local key = chunk_key(0, raw_base, field, chunk)
    local parts = raw_parts[key]
    if not parts then
      parts = {}
      raw_parts[key] = parts
      raw_chunk[key] = {field, chunk}
      raw_order[#raw_order + 1] = key
    end
    parts[#parts + 1] = struct.pack('<I3d', ts - chunk, value)
    kept = true
  end
  for t = 1, #tiers do
    local tier = tiers[t]
    if ts >= now - tier.keep then
      local step = tier.step
      local bucket = ts - ts % step
      local chunk = ts - ts % tier.span
      local key = chunk_key(t, tier.base, field, chunk)
      local offset = (bucket - chunk) / step * tier.size
      local id = key .. '@' .. offset
      local b = buckets[id]
      if not b then
        local record = redis.call('GETRANGE', key, offset, offset + tier.size - 1)
        b = {key, offset, 0, 0, 0, 0, 0, 0, tier.format}
        if record == '' then
          redis.call('SET', key, string.rep('\0', tier.bytes), 'PXAT', chunk + tier.span + tier.keep)
        else
          b[3], b[4], b[5], b[6], b[7], b[8] = struct.unpack(tier.format, record)
        end
        buckets[id] = b
        bucket_order[#bucket_order + 1] = id
      end
      local offset_in = ts - bucket
      if b[7] == 0 then
        b[3], b[4], b[5], b[6], b[7], b[8] = value, value, value, value, 1, offset_in
      else
        if value < b[3] then b[3] = value end
        if value > b[4] then b[4] = value end
        b[5] = b[5] + value
        b[7] = b[7] + 1
        if offset_in >= b[8] then b[6], b[8] = value, offset_in end
      end
      kept = true
    end
  end
  return kept
end

local function flush()
  -- latest values: one HSET per up to 500 series
  for from = 1, #latest_order, 500 do
    local values, tss = {}, {}
    for n = from, math.min(from + 499, #latest_order) do
      local field = latest_order[n]
      values[#values + 1] = field
      values[#values + 1] = latest_value[field]
      tss[#tss + 1] = field
      tss[#tss + 1] = latest_ts[field]
    end
    redis.call('HSET', KEYS[1], unpack(values))
    redis.call('HSET', KEYS[2], unpack(tss))
  end
  for _, key in ipairs(raw_order) do
    local packed = table.concat(raw_parts[key])
    if redis.call('APPEND', key, packed) == #packed then
      -- a new chunk: it expires with its retention; its predecessor is done growing
      local field, chunk = raw_chunk[key][1], raw_chunk[key][2]
      redis.call('PEXPIREAT', key, chunk + raw_span + raw_keep)
      local previous = raw_base .. field .. ':' .. int(chunk - raw_span)
      local old = redis.call('GET', previous)
      if old then redis.call('SET', previous, old, 'KEEPTTL') end
      local legacy = prefix .. 'history:' .. field
      if redis.call('PTTL', legacy) == -1 then redis.call('PEXPIRE', legacy, raw_keep) end
    end
  end
  for _, id in ipairs(bucket_order) do
    local b = buckets[id]
    redis.call('SETRANGE', b[1], b[2], struct.pack(b[9], b[3], b[4], b[5], b[6], b[7], b[8]))
  end
end

local results = {}
local stored = {}
local i = 0
for b = 1, nbatches do
  local size = tonumber(ARGV[sizes_at + b])
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
      local raw_value = ARGV[base + 5]

      local current = current_ts(field)
      local is_latest = (current == false) or ts >= current
      if is_latest then
        if latest_value[field] == nil then latest_order[#latest_order + 1] = field end
        latest_value[field], latest_ts[field] = ARGV[base + 2], ts_text
        known[field] = ts
      end
      local kept = keep_history(field, ts, tonumber(raw_value))

      local data = ARGV[base + 4] .. (is_latest and 'true}' or 'false}')
      local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*',
        'type', 'metric', 'topic', ARGV[base + 3], 'data', data)
      results[i] = kept and id or ('o' .. id)
      stored[#stored + 1] = {field, ts, raw_value, i}
    end
  end
end
flush()

if #stored > 0 and redis.call('HLEN', KEYS[5]) > 0 then
  table.sort(stored, function(x, y)
    if x[2] ~= y[2] then return x[2] < y[2] end
    return x[4] < y[4]
  end)
  evaluate_alerts(KEYS[4], KEYS[5], KEYS[6], KEYS[3], maxlen, stored)
end
return results
