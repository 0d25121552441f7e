-- ingest_readings.lua: store validated batches of readings, their events and
-- the alerts they cause. A Redis Function library (its function `ingest`),
-- made by app/series.py of its settings (as constants), alert_eval.lua and
-- this file; see `Cost` below for why it is not a script.
--
-- A run (one call) carries one or more batches (concurrent POSTs grouped by
-- group_commit); each batch is refused or stored whole. Guarantees, all
-- inside one atomic run:
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
--     (MAXLEN ~ maxlen), carrying the series id and whether the reading
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
--   * a tier: each series' newest bucket of each tier is open: it lives in
--     the series' field of one hash (KEYS[8]; the tiers' steps as a signature,
--     then per tier the bucket's start as a double and its record), read
--     once and written once a run. A reading in the open bucket merges there,
--     with no command of its own; a newer bucket closes it: the open bucket
--     is merged into its slot of its chunk, and the new one opens. At 1 Hz a
--     tier's chunk is written once a bucket (a minute, an hour), not once a
--     reading. A late reading older than the open bucket goes to its chunk
--     directly. A chunk is allocated whole (zeros) when its first bucket
--     comes, then written with GETRANGE + SETRANGE of a bucket (struct
--     '<ddddI4I<w>': min, max, sum, last, count, ms from the bucket start to
--     last's ts in w bytes, the fewest the step needs: 38 bytes a 1-minute
--     bucket, 39 an hourly one); an all-zero bucket (count 0) is a gap. A
--     reader merges the open bucket with its slot (rollups.py). An open
--     bucket whose chunk is past its retention is dropped, never written; a
--     series' open buckets outlive its silence as its latest value does (one
--     field, ~110 bytes), but readers ignore them once past retention;
--   * within a run, writes are gathered and made once per key or bucket at
--     the end (one HSET per 500 series for the latest values and for the
--     open buckets, one APPEND per raw chunk, one GETRANGE + SETRANGE per
--     chunk bucket touched), except the raw point of a series with one
--     reading in the run, written at once (see `Cost` below);
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
-- KEYS[8] open buckets (hash: series -> signature .. per tier start and bucket)
-- ARGV[1] key prefix, ARGV[2] now (ms), ARGV[3] the number of batches B, B batch sizes,
-- then per reading 7 values: series id, ts ms, reading JSON, topic, the event
-- data JSON up to (not including) the value of its last key, `latest`, the
-- value as JSON, and the device.
-- Returns per reading its `metric` event id ('o' .. id when no tier kept it),
-- or the refusal of its batch.

-- Cost: a run is often one reading (a single POST that group commit found
-- alone), or a few readings of as many series (concurrent single POSTs), and
-- every Lua operation here is paid on the server's only thread: a C call, a
-- table or a concatenation costs a fraction of a microsecond, and a command
-- called from Lua a few. Measured with valgrind (instructions in the server
-- per reading, bench/README.md), a script run of one reading spent more on
-- making its helpers (closures), its tables of settings and their garbage
-- than on its commands. So:
--   * this is a library (a Redis Function, loaded once per server:
--     app/storage/lua/__init__.py `Library`): every helper below is made
--     once, at load, and a call runs `ingest` alone. Loading sees no global
--     (not even `string`), so the library's own names for them are bound on
--     the first call;
--   * settings are constants of the code, not arguments parsed on every run;
--   * the open buckets turn a tier's two commands per reading into none;
--   * a run of one reading takes a straight path (`one_reading`), and the
--     general path makes no table or string it can do without: key names are
--     cached per series and chunk, loops are numeric, and alert bookkeeping
--     is only gathered when there are rules.
-- Both paths share the helpers that define what a write is
-- (raw_chunk_started, tier_point and what it calls), so they store exactly
-- the same things.
local call, format, pack, unpack_record, rep, sub

-- Settings are constants of the library, not arguments: SeriesStore prepends
-- them (app/storage/lua/__init__.py `constants`), so a call parses none of
-- them. They are maxlen (the event log's MAXLEN, as a string), max_per_device,
-- max_total, raw_keep and raw_span (ms), raw_name (the raw chunk key base
-- after the key prefix), open_signature, ntiers, and per tier, in arrays:
-- t_step, t_keep, t_span (ms), t_size (bytes a bucket), t_format and t_open
-- (struct formats of a bucket and of an open bucket), t_name (its chunk key
-- base after the key prefix).
local per = 7
local sizes_at = 3
local t_empty = {} -- by tier, an empty open bucket (made when first needed)

-- A call's arguments and what follows from them, set by `ingest` before
-- anything reads them (Redis runs one call at a time).
local KEYS, ARGV, prefix, now, nbatches, raw_base
local first -- ARGV index of the first reading's first value

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

-- A bucket is a table {key, offset, low, high, sum, last, count, last_offset, format, start}:
-- where it lives in its chunk (key, offset, format; false for an open bucket
-- until it closes), what it holds, and its start.

-- the stored bucket of tier t starting at `start`, read from its chunk; a chunk
-- not there yet is allocated whole (zeros) with its expiry
local function chunk_bucket(t, field, start)
  local step, span, size = t_step[t], t_span[t], t_size[t]
  local chunk = start - start % span
  local key = prefix .. t_name[t] .. field .. ':' .. format('%d', chunk)
  local offset = (start - chunk) / step * size
  local record = call('GETRANGE', key, offset, offset + size - 1)
  local b = {key, offset, 0, 0, 0, 0, 0, 0, t_format[t], start}
  if record == '' then
    call('SET', key, rep('\0', span / step * size), 'PXAT', chunk + span + t_keep[t])
  else
    b[3], b[4], b[5], b[6], b[7], b[8] = unpack_record(t_format[t], record)
  end
  return b
end

local function write_bucket(b)
  call('SETRANGE', b[1], b[2], pack(b[9], b[3], b[4], b[5], b[6], b[7], b[8]))
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

-- merge bucket o (the same start) into b, as if o's readings came after b's
local function merge_bucket(b, o)
  if b[7] == 0 then
    b[3], b[4], b[5], b[6], b[7], b[8] = o[3], o[4], o[5], o[6], o[7], o[8]
  else
    if o[3] < b[3] then b[3] = o[3] end
    if o[4] > b[4] then b[4] = o[4] end
    b[5] = b[5] + o[5]
    b[7] = b[7] + o[7]
    if o[8] >= b[8] then b[6], b[8] = o[6], o[8] end
  end
end

-- a series' open buckets, by tier, from its field of the open-buckets hash
-- (none when the field is missing or was written for other tiers)
local function decode_open(value)
  local opens = {}
  if value and sub(value, 1, #open_signature) == open_signature then
    local pos = #open_signature + 1
    for t = 1, ntiers do
      local start, low, high, sum, last, count, last_offset
      start, low, high, sum, last, count, last_offset, pos = unpack_record(t_open[t], value, pos)
      if count > 0 then opens[t] = {false, false, low, high, sum, last, count, last_offset, false, start} end
    end
  end
  return opens
end

local function encode_open(opens)
  local parts = {open_signature}
  for t = 1, ntiers do
    local b = opens[t]
    if b then
      parts[t + 1] = pack(t_open[t], b[10], b[3], b[4], b[5], b[6], b[7], b[8])
    else
      t_empty[t] = t_empty[t] or rep('\0', 8 + t_size[t])
      parts[t + 1] = t_empty[t]
    end
  end
  return table.concat(parts)
end

-- A reading's point in tier t (whose retention keeps its ts). `opens` are the
-- series' open buckets; `stored(t, field, start)` gives the chunk bucket a
-- point older than the open one merges into: read and written at once on the
-- straight path, gathered on the general one.
local function tier_point(t, field, ts, value, opens, stored)
  local step = t_step[t]
  local start = ts - ts % step
  local o = opens[t]
  if o and start == o[10] then
    add_to_bucket(o, value, ts - start)
  elseif o == nil or start > o[10] then
    if o then
      -- the open bucket closes into its chunk, unless that chunk's retention is over
      local span = t_span[t]
      if o[10] - o[10] % span + span + t_keep[t] > now then merge_bucket(stored(t, field, o[10]), o) end
    end
    o = {false, false, 0, 0, 0, 0, 0, 0, false, start}
    add_to_bucket(o, value, ts - start)
    opens[t] = o
  else
    add_to_bucket(stored(t, field, start), value, ts - start)
  end
end

-- straight path: a chunk bucket is written as soon as it is changed, so it is
-- read here and written by the caller through `written` (rarely: only a late
-- reading, or a reading that closes an open bucket, touches a chunk)
local written
local function direct(t, field, start)
  local b = chunk_bucket(t, field, start)
  written = written or {}
  written[#written + 1] = b
  return b
end

-- One reading: the steps of the general path below, each made directly.
local function one_reading()
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
  local kept = false
  if ts >= now - raw_keep then
    local chunk = ts - ts % raw_span
    local key = raw_base .. field .. ':' .. format('%d', chunk)
    local packed = pack('<I3d', ts - chunk, value)
    if call('APPEND', key, packed) == #packed then raw_chunk_started(key, field, chunk) end
    kept = true
  end
  local opens = nil
  for t = 1, ntiers do
    if ts >= now - t_keep[t] then
      opens = opens or decode_open(call('HGET', KEYS[8], field))
      tier_point(t, field, ts, value, opens, direct)
      kept = true
    end
  end
  if written then
    for n = 1, #written do write_bucket(written[n]) end
    written = nil
  end
  if opens then call('HSET', KEYS[8], field, encode_open(opens)) end
  local id = call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*',
    'type', 'metric', 'topic', ARGV[first + 3], 'data', ARGV[first + 4] .. (is_latest and 'true}' or 'false}'))
  if call('HLEN', KEYS[5]) > 0 then
    evaluate_alerts(KEYS[4], KEYS[5], KEYS[6], KEYS[3], maxlen, {{field, ts, raw_value, 1}})
  end
  return {kept and id or ('o' .. id)}
end

-- The general path. Its state, made afresh by each call of `general`:
-- the latest ts of every series in the run (false when the series does not
-- exist yet), its readings in the run and its open buckets (only with tiers);
local known, readings_of, open_of
-- the series count of each device read so far, and the total (nil until read);
local device_counts, total
-- writes gathered during the run, made once per key (or bucket) at the end
-- (`flush`): a batch's readings mostly share series, chunks and buckets, so
-- this turns per-reading commands into per-series ones (the raw point of a
-- series with one reading in the run is written at once). Nothing else reads
-- these keys inside the run, and a refused batch adds nothing to them.
local latest_value, latest_ts, latest_order
local raw_parts, raw_field, raw_chunk, raw_order
local opened_order, opened -- series whose open buckets the run touched
local buckets, bucket_order -- chunk bucket id -> bucket, in order
local raw_key_of, raw_chunk_of -- the raw chunk key last named for each series, and that chunk's start

-- latest ts of every series in the run, and its open buckets, read up front in
-- one HMGET each per 1,000 series (not one HGET per reading)
local function read_series()
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
    if ntiers > 0 then
      got = call('HMGET', KEYS[8], unpack(fields, from, last))
      for k = from, last do open_of[fields[k]] = decode_open(got[k - from + 1]) end
    end
  end
end

local function device_count(device)
  local c = device_counts[device]
  if c == nil then
    c = tonumber(call('HGET', KEYS[7], device) or '0')
    device_counts[device] = c
  end
  return c
end

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

local function gathered(t, field, start)
  local id = t .. '@' .. field .. '@' .. format('%d', start)
  local b = buckets[id]
  if not b then
    b = chunk_bucket(t, field, start)
    buckets[id] = b
    bucket_order[#bucket_order + 1] = id
  end
  return b
end

-- the reading's point in every tier that keeps its ts; false when none does
local function keep_history(field, ts, value, alone)
  local kept = false
  if ts >= now - raw_keep then
    local chunk = ts - ts % raw_span
    local key = raw_key_of[field]
    if raw_chunk_of[field] ~= chunk then
      key = raw_base .. field .. ':' .. format('%d', chunk)
      raw_key_of[field], raw_chunk_of[field] = key, chunk
    end
    if alone then
      local packed = pack('<I3d', ts - chunk, value)
      if call('APPEND', key, packed) == #packed then raw_chunk_started(key, field, chunk) end
    else
      local parts = raw_parts[key]
      if not parts then
        parts = {}
        raw_parts[key], raw_field[key], raw_chunk[key] = parts, field, chunk
        raw_order[#raw_order + 1] = key
      end
      parts[#parts + 1] = pack('<I3d', ts - chunk, value)
    end
    kept = true
  end
  for t = 1, ntiers do
    if ts >= now - t_keep[t] then
      tier_point(t, field, ts, value, open_of[field], gathered)
      if not opened[field] then
        opened[field] = true
        opened_order[#opened_order + 1] = field
      end
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
  for n = 1, #bucket_order do write_bucket(buckets[bucket_order[n]]) end
  local nopened = #opened_order
  for from = 1, nopened, 500 do
    local values = {}
    local n = 0
    for k = from, math.min(from + 499, nopened) do
      local field = opened_order[k]
      values[n + 1], values[n + 2] = field, encode_open(open_of[field])
      n = n + 2
    end
    call('HSET', KEYS[8], unpack(values))
  end
end

local function general()
  known, readings_of, open_of = {}, {}, {}
  device_counts, total = {}, nil
  latest_value, latest_ts, latest_order = {}, {}, {}
  raw_parts, raw_field, raw_chunk, raw_order = {}, {}, {}, {}
  opened_order, opened = {}, {}
  buckets, bucket_order = {}, {}
  raw_key_of, raw_chunk_of = {}, {}
  local has_rules = call('HLEN', KEYS[5]) > 0
  read_series()

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
        local kept = keep_history(field, ts, tonumber(raw_value), readings_of[field] == 1)

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
    evaluate_alerts(KEYS[4], KEYS[5], KEYS[6], KEYS[3], maxlen, stored)
  end
  -- the library outlives the call: let its tables go
  known, readings_of, open_of, device_counts, latest_value, latest_ts, latest_order = nil, nil, nil, nil, nil, nil, nil
  raw_parts, raw_field, raw_chunk, raw_order, opened_order, opened = nil, nil, nil, nil, nil, nil
  buckets, bucket_order, raw_key_of, raw_chunk_of = nil, nil, nil, nil
  return results
end

-- KEYS and ARGV as in the header; returns per reading its event id or refusal.
local function ingest(keys, args)
  if not call then
    call, format, pack, unpack_record = redis.call, string.format, struct.pack, struct.unpack
    rep, sub = string.rep, string.sub
  end
  KEYS, ARGV, written = keys, args, nil
  prefix, now, nbatches = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
  first = sizes_at + nbatches + 1
  raw_base = prefix .. raw_name
  if #ARGV == first + per - 1 then return one_reading() end
  return general()
end
