-- ingest_readings.lua: store validated batches of readings, their events and
-- the alerts they cause. alert_eval.lua is prepended, wrapped so that its
-- functions are only made when there are rules (evaluate_alerts_library(),
-- app/storage/lua/__init__.py lazy_library).
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
--     per raw chunk, one GETRANGE + SETRANGE per bucket touched), except the
--     history of a series with one reading in the run, written at once (see
--     `Cost` below);
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
-- tiers T, then per tier its step, retention and chunk span (ms), its bucket's
-- size and struct format, and its chunk key base; then the number of batches B, B batch sizes,
-- then per reading 7 values: series id, ts ms, reading JSON, topic, the event
-- data JSON up to (not including) the value of its last key, `latest`, the
-- value as JSON, and the device.
-- Returns per reading its `metric` event id ('o' .. id when no tier kept it),
-- or the refusal of its batch.

-- Cost: a run is often one reading (a single POST that group commit found
-- alone), and every Lua operation here is paid on the server's only thread:
-- a C call, a table or a concatenation costs a fraction of a microsecond, as
-- much as a cheap command. So a run of one reading takes a straight path
-- (below, `one reading`), and the general path makes no table, closure or
-- string it can do without: per-tier settings come precomputed from Python,
-- key names are cached per series and chunk, loops are numeric, and alert
-- bookkeeping is only gathered when there are rules. Both paths share the
-- helpers that define what a write is (raw_chunk_started, open_bucket,
-- add_to_bucket), so they store exactly the same things.

local call, tonumber, format = redis.call, tonumber, string.format
local pack, unpack_record = struct.pack, struct.unpack
local maxlen = ARGV[1]
local max_per_device, max_total = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local prefix = ARGV[5]
local raw_keep, raw_span = tonumber(ARGV[6]), tonumber(ARGV[7])
local raw_base = ARGV[8]
local ntiers = tonumber(ARGV[9])
local per = 7
local tiers_at = 10 -- per tier 6 values: step, retention, span, bucket size, struct format, key base
local sizes_at = tiers_at + 6 * ntiers
local nbatches = tonumber(ARGV[sizes_at])
local first = sizes_at + nbatches + 1 -- ARGV index of the first reading's first value

-- a raw chunk's first APPEND: it expires with its retention; its predecessor is
-- done growing (rewritten to its exact size), and a pre-tiers history sorted
-- set of the series gets the raw retention as its TTL
local function raw_chunk_started(key, field, chunk)
  call('PEXPIREAT', key, chunk + raw_span + raw_keep)
  local previous = raw_base .. field .. ':' .. format('%d', chunk - raw_span)
  local old = call('GET', previous)
  if old then call('SET', previous, old, 'KEEPTTL') end
  local legacy = prefix .. 'history:' .. field
  if call('PTTL', legacy) == -1 then call('PEXPIRE', legacy, raw_keep) end
end

-- the stored bucket at `offset` of a tier's chunk, as {key, offset, low, high,
-- sum, last, count, last_offset, format}; a chunk not there yet is allocated
-- whole (zeros) with its expiry
local function open_bucket(key, offset, size, fmt, chunk, span, step, keep)
  local record = call('GETRANGE', key, offset, offset + size - 1)
  local b = {key, offset, 0, 0, 0, 0, 0, 0, fmt}
  if record == '' then
    call('SET', key, string.rep('\0', span / step * size), 'PXAT', chunk + span + keep)
  else
    b[3], b[4], b[5], b[6], b[7], b[8] = unpack_record(fmt, record)
  end
  return b
end

-- merge a reading into a bucket: min, max, sum, count; last only from a ts >= its own
local function add_to_bucket(b, value, offset_in)
  if b[7] == 0 then
    b[3], b[4], b[5], b[6], b[7], b[8] = value, value, value, value, 1, offset_in
  else
    if value < b[3] then b[3] = value end
    if value > b[4] then b[4] = value end
    b[5] = b[5] + value
    b[7] = b[7] + 1
    if offset_in >= b[8] then b[6], b[8] = value, offset_in end
  end
end

-- a reading's point written at once in every tier that keeps its ts (false
-- when none does): for a reading whose series has no other reading in the run,
-- where gathering (below) would only add work
local function write_history(field, ts, value)
  local kept = false
  if ts >= now - raw_keep then
    local chunk = ts - ts % raw_span
    local key = raw_base .. field .. ':' .. format('%d', chunk)
    local packed = pack('<I3d', ts - chunk, value)
    if call('APPEND', key, packed) == #packed then raw_chunk_started(key, field, chunk) end
    kept = true
  end
  local a = tiers_at
  for _ = 1, ntiers do
    local keep = tonumber(ARGV[a + 1])
    if ts >= now - keep then
      local step, span, size, fmt = tonumber(ARGV[a]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4]
      local bucket = ts - ts % step
      local chunk = ts - ts % span
      local b = open_bucket(ARGV[a + 5] .. field .. ':' .. format('%d', chunk), (bucket - chunk) / step * size,
        size, fmt, chunk, span, step, keep)
      add_to_bucket(b, value, ts - bucket)
      call('SETRANGE', b[1], b[2], pack(fmt, b[3], b[4], b[5], b[6], b[7], b[8]))
      kept = true
    end
    a = a + 6
  end
  return kept
end

-- One reading: the steps of the general path below, each made directly.
if #ARGV == first + per - 1 then
  local field, ts_text = ARGV[first], ARGV[first + 1]
  local ts = tonumber(ts_text)
  local stored = call('HGET', KEYS[2], field)
  if not stored then
    local device = ARGV[first + 6]
    if tonumber(call('HGET', KEYS[7], device) or '0') + 1 > max_per_device then
      return {'!max_series_per_device\t' .. device .. '\t' .. max_per_device}
    end
    if call('HLEN', KEYS[2]) + 1 > max_total then
      return {'!max_series\t\t' .. max_total}
    end
    call('HINCRBY', KEYS[7], device, 1)
  end
  local is_latest = (not stored) or ts >= tonumber(stored)
  if is_latest then
    call('HSET', KEYS[1], field, ARGV[first + 2])
    call('HSET', KEYS[2], field, ts_text)
  end
  local raw_value = ARGV[first + 5]
  local value = tonumber(raw_value)
  local kept = write_history(field, ts, value)
  local id = call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*',
    'type', 'metric', 'topic', ARGV[first + 3], 'data', ARGV[first + 4] .. (is_latest and 'true}' or 'false}'))
  if call('HLEN', KEYS[5]) > 0 then
    evaluate_alerts_library()(KEYS[4], KEYS[5], KEYS[6], KEYS[3], maxlen, {{field, ts, raw_value, 1}})
  end
  return {kept and id or ('o' .. id)}
end

-- The general path. Per tier, in arrays:
local t_step, t_keep, t_span, t_size, t_format, t_base = {}, {}, {}, {}, {}, {}
local a = tiers_at
for t = 1, ntiers do
  t_step[t], t_keep[t], t_span[t] = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  t_size[t], t_format[t], t_base[t] = tonumber(ARGV[a + 3]), ARGV[a + 4], ARGV[a + 5]
  a = a + 6
end
local has_rules = call('HLEN', KEYS[5]) > 0

-- latest ts of every series in the run, read up front in one HMGET per 1,000
-- series (not one HGET per reading); false when the series does not exist yet
local known = {}
local readings_of = {} -- series -> its readings in the run
do
  local fields = {}
  for n = first, #ARGV, per do
    local field = ARGV[n]
    readings_of[field] = (readings_of[field] or 0) + 1
    if known[field] == nil then
      known[field] = false
      fields[#fields + 1] = field
    end
  end
  for from = 1, #fields, 1000 do
    local last = math.min(from + 999, #fields)
    local got = call('HMGET', KEYS[2], unpack(fields, from, last))
    for k = from, last do
      local stored = got[k - from + 1]
      if stored then known[fields[k]] = tonumber(stored) end
    end
  end
end

local device_counts = {}
local function device_count(device)
  local c = device_counts[device]
  if c == nil then
    c = tonumber(call('HGET', KEYS[7], device) or '0')
    device_counts[device] = c
  end
  return c
end

local total = nil

-- nil when the batch fits the limits (and its new series are counted), else its refusal
local function check_limits(from, to)
  local new_by_device, devices, seen, new_total = nil, nil, nil, 0
  for i = from, to do
    local base = first + (i - 1) * per
    local field = ARGV[base]
    if known[field] == false and not (seen and seen[field]) then
      if not seen then new_by_device, devices, seen = {}, {}, {} end
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
  for n = 1, #devices do
    local device = devices[n]
    if device_count(device) + new_by_device[device] > max_per_device then
      return '!max_series_per_device\t' .. device .. '\t' .. max_per_device
    end
  end
  total = total or call('HLEN', KEYS[2])
  if total + new_total > max_total then
    return '!max_series\t\t' .. max_total
  end
  for n = 1, #devices do
    local device = devices[n]
    device_counts[device] = device_count(device) + new_by_device[device]
    call('HINCRBY', KEYS[7], device, new_by_device[device])
  end
  total = total + new_total
  return nil
end

-- Writes are gathered during the run and made once per key (or bucket) at the
-- end: a batch's readings mostly share series, chunks and buckets, so this
-- turns per-reading commands into per-series ones (the history of a series
-- with one reading in the run is written at once: write_history). Nothing else reads these
-- keys inside the run, and a refused batch adds nothing to them.
local latest_value, latest_ts, latest_order = {}, {}, {}
local raw_parts, raw_field, raw_chunk, raw_order = {}, {}, {}, {}
-- bucket id (key .. '@' .. offset) -> {key, offset, low, high, sum, last, count, last_offset, format}
local buckets, bucket_order = {}, {}
-- per tier (0: raw), the chunk key last named for each series, and that chunk's start
local key_of, chunk_of = {[0] = {}}, {[0] = {}}
for t = 1, ntiers do key_of[t], chunk_of[t] = {}, {} end

-- the reading's point in every tier that keeps its ts; false when none does
local function keep_history(field, ts, value)
  local kept = false
  if ts >= now - raw_keep then
    local chunk = ts - ts % raw_span
    local key = key_of[0][field]
    if chunk_of[0][field] ~= chunk then
      key = raw_base .. field .. ':' .. format('%d', chunk)
      key_of[0][field], chunk_of[0][field] = key, chunk
    end
    local parts = raw_parts[key]
    if not parts then
      parts = {}
      raw_parts[key], raw_field[key], raw_chunk[key] = parts, field, chunk
      raw_order[#raw_order + 1] = key
    end
    parts[#parts + 1] = pack('<I3d', ts - chunk, value)
    kept = true
  end
  for t = 1, ntiers do
    local keep = t_keep[t]
    if ts >= now - keep then
      local step, span, size = t_step[t], t_span[t], t_size[t]
      local bucket = ts - ts % step
      local chunk = ts - ts % span
      local key = key_of[t][field]
      if chunk_of[t][field] ~= chunk then
        key = t_base[t] .. field .. ':' .. format('%d', chunk)
        key_of[t][field], chunk_of[t][field] = key, chunk
      end
      local offset = (bucket - chunk) / step * size
      local id = key .. '@' .. offset
      local b = buckets[id]
      if not b then
        b = open_bucket(key, offset, size, t_format[t], chunk, span, step, keep)
        buckets[id] = b
        bucket_order[#bucket_order + 1] = id
      end
      add_to_bucket(b, value, ts - bucket)
      kept = true
    end
  end
  return kept
end

local function flush()
  -- latest values: one HSET per up to 500 series
  local nlatest = #latest_order
  for from = 1, nlatest, 500 do
    local values, tss = {}, {}
    local n = 0
    for k = from, math.min(from + 499, nlatest) do
      local field = latest_order[k]
      values[n + 1], values[n + 2] = field, latest_value[field]
      tss[n + 1], tss[n + 2] = field, latest_ts[field]
      n = n + 2
    end
    call('HSET', KEYS[1], unpack(values))
    call('HSET', KEYS[2], unpack(tss))
  end
  for n = 1, #raw_order do
    local key = raw_order[n]
    local parts = raw_parts[key]
    local packed = #parts == 1 and parts[1] or table.concat(parts)
    if call('APPEND', key, packed) == #packed then raw_chunk_started(key, raw_field[key], raw_chunk[key]) end
  end
  for n = 1, #bucket_order do
    local b = buckets[bucket_order[n]]
    call('SETRANGE', b[1], b[2], pack(b[9], b[3], b[4], b[5], b[6], b[7], b[8]))
  end
end

local results = {}
local stored = {} -- what the alert rules are evaluated over (only gathered when there are rules)
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

      local current = known[field]
      local is_latest = (current == false) or ts >= current
      if is_latest then
        if latest_value[field] == nil then latest_order[#latest_order + 1] = field end
        latest_value[field], latest_ts[field] = ARGV[base + 2], ts_text
        known[field] = ts
      end
      local kept
      if readings_of[field] == 1 then
        kept = write_history(field, ts, tonumber(raw_value))
      else
        kept = keep_history(field, ts, tonumber(raw_value))
      end

      local id = call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*',
        'type', 'metric', 'topic', ARGV[base + 3], 'data', ARGV[base + 4] .. (is_latest and 'true}' or 'false}'))
      results[i] = kept and id or ('o' .. id)
      if has_rules then stored[#stored + 1] = {field, ts, raw_value, i} end
    end
  end
end
flush()

if #stored > 0 then
  table.sort(stored, function(x, y)
    if x[2] ~= y[2] then return x[2] < y[2] end
    return x[4] < y[4]
  end)
  evaluate_alerts_library()(KEYS[4], KEYS[5], KEYS[6], KEYS[3], maxlen, stored)
end
return results
