-- alert_eval.lua: evaluate alert rules and record their transitions.
-- A library: part of the ingest library (ingest_readings.lua calls
-- evaluate_alerts after storing a batch), prepended to rule_write.lua (a rule evaluated against the
-- series' latest value in the run that writes it) and to alert_sweep.lua
-- (no-data deadlines). Storing readings and reacting to them is one script
-- run, and an `alert` event always follows the `metric` event that caused it.
--
-- Guarantees, for each reading, in that one atomic run:
--   * a reading older than the last one a threshold rule has seen is ignored,
--     so a late, out-of-order reading never flips a state (the same order as
--     the latest-value register), whichever process ingested it;
--   * a threshold rule fires when its value is past the threshold (above:
--     v > t, below: v < t) and has stayed past it for min_duration_ms of
--     reading time; it resolves only once the value is back past threshold
--     -/+ hysteresis (above: v <= t - h, below: v >= t + h);
--   * a no-data rule (kind 'no_data', on a series or on a device: series
--     '<device>/*') records the arrival (Redis time) and pushes its deadline
--     (arrival + no_data_seconds) in the due set; a firing one resolves
--     (reason 'data') on the first reading that arrives;
--   * the state (ok / firing, since, pending_since, last value and ts) is
--     updated and exactly one `alert` event is appended per state change,
--     none for readings that change nothing;
--   * each transition (alert_transition) is, in the same run: the `alert`
--     event, one entry in the bounded transition history, the rule's
--     acknowledgement cleared, and, unless the rule is silenced, one outbox
--     entry per notification channel of the rule (delivered later, by
--     app/alerts/delivery.py, never in this run).
-- The alert tables beside the states hash ('<prefix>alerts:state') are named
-- from its name (alerts:history, :outbox, :silences, :acks, :nodata-due,
-- :nodata-seen, :config): like the ingest script's chunk keys, this needs a
-- standalone Redis (or Valkey), not a cluster. app/storage/keyspace.py names
-- the same keys.
--
-- evaluate_alerts(rules, index, states, log, maxlen, readings):
--   rules  hash: id -> rule JSON;  index  hash: series -> comma list of ids;
--   states hash: id -> state JSON; log    the event log (stream);
--   readings: a list of {series, ts (number), raw value JSON}, in ts order.
-- Returns the ids of the `alert` events appended.

local function opt(value)
  if value == nil or value == cjson.null then return nil end
  return value
end

local function num(value)
  if value == nil then return 'null' end
  return string.format('%d', value)
end

-- A number as JSON text that reads back as the same double.
local function alert_value_text(v)
  if type(v) ~= 'number' then return 'null' end
  local text = string.format('%.15g', v)
  if tonumber(text) ~= v then text = string.format('%.17g', v) end
  return text
end

-- '<prefix>alerts:state' -> '<prefix>alerts:'
local function alert_base(states)
  return string.sub(states, 1, #states - 5)
end

local function alert_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- One transition: its event, its history entry and its deliveries. Returns the event id.
local function alert_transition(states, log, maxlen, rule_id, rule_json, rule, change, reason, raw, ts, now)
  local base = alert_base(states)
  local silenced = false
  local silence = redis.call('HGET', base .. 'silences', rule_id)
  if silence then
    local until_ms = tonumber(opt(cjson.decode(silence)['until']))
    silenced = until_ms ~= nil and until_ms > now
  end
  local data = '{"rule_id":' .. cjson.encode(rule_id) .. ',"state":"' .. change .. '","reason":"' .. reason ..
    '","value":' .. (raw or 'null') .. ',"ts":' .. num(ts) .. ',"since":' .. num(ts) .. ',"at":' .. num(now) ..
    ',"silenced":' .. tostring(silenced) .. ',"rule":' .. rule_json .. '}'
  local id = redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
    'type', 'alert', 'topic', 'device/' .. rule.device, 'data', data)
  local keep = tonumber(redis.call('HGET', base .. 'config', 'history_maxlen') or '10000')
  redis.call('XADD', base .. 'history', 'MAXLEN', '~', keep, '*',
    'event', id, 'device', rule.device, 'rule', rule_id, 'data', data)
  redis.call('HDEL', base .. 'acks', rule_id)
  if not silenced and type(rule.channels) == 'table' then
    for _, channel in ipairs(rule.channels) do
      redis.call('XADD', base .. 'outbox', 'MAXLEN', '~', 100000, '*',
        'channel', channel, 'key', rule_id .. '/' .. id, 'event', id, 'data', data)
    end
  end
  return id
end

-- A threshold rule's state: {state, since, pending, raw (last value JSON), ts}.
local function state_decode(stored)
  local st = stored and cjson.decode(stored) or {}
  return {state = opt(st.state) or 'ok', since = opt(st.since), pending = opt(st.pending_since),
    raw = (opt(st.last_value) ~= nil) and alert_value_text(st.last_value) or 'null', ts = opt(st.last_ts)}
end

local function state_encode(s)
  return '{"state":"' .. s.state .. '","since":' .. num(s.since) .. ',"pending_since":' .. num(s.pending) ..
    ',"last_value":' .. s.raw .. ',"last_ts":' .. num(s.ts) .. '}'
end

-- One value of the series against one threshold rule: updates the state, returns the event id of a change.
-- cache: nil (read and write the states hash now), or a run's table of id -> state, written by the caller.
local function alert_step(states, log, maxlen, rule_id, rule_json, rule, ts, raw, now, reason, cache)
  local s = cache and cache[rule_id]
  if not s then
    s = state_decode(redis.call('HGET', states, rule_id))
    if cache then cache[rule_id] = s end
  end
  if s.ts ~= nil and ts < s.ts then return nil end
  local value = tonumber(raw)
  local t, h = rule.threshold, opt(rule.hysteresis) or 0
  local past, back
  if rule.op == 'below' then
    past, back = value < t, value >= t + h
  else
    past, back = value > t, value <= t - h
  end
  local change = nil
  if s.state == 'firing' then
    if back then s.state, s.since, change = 'ok', ts, 'resolved' end
  elseif past then
    s.pending = s.pending or ts
    if ts - s.pending >= (opt(rule.min_duration_ms) or 0) then
      s.state, s.since, s.pending, change = 'firing', ts, nil, 'firing'
    end
  else
    s.pending = nil
  end
  s.raw, s.ts, s.dirty = raw, ts, true
  if not cache then redis.call('HSET', states, rule_id, state_encode(s)) end
  if change then
    return alert_transition(states, log, maxlen, rule_id, rule_json, rule, change, reason, raw, ts, now)
  end
  return nil
end

-- A reading arrived for a no-data rule: push its deadline; resolve it if it was firing.
local function alert_arrived(states, log, maxlen, rule_id, rule_json, rule, ts, raw, now)
  local base = alert_base(states)
  redis.call('HSET', base .. 'nodata-seen', rule_id, now)
  redis.call('ZADD', base .. 'nodata-due', now + (tonumber(opt(rule.no_data_seconds)) or 60) * 1000, rule_id)
  local stored = redis.call('HGET', states, rule_id)
  if stored and cjson.decode(stored).state == 'firing' then
    redis.call('HSET', states, rule_id, '{"state":"ok","since":' .. num(now) ..
      ',"pending_since":null,"last_value":' .. raw .. ',"last_ts":' .. num(ts) .. '}')
    return alert_transition(states, log, maxlen, rule_id, rule_json, rule, 'resolved', 'data', raw, ts, now)
  end
  return nil
end

local function evaluate_alerts(rules, index, states, log, maxlen, readings)
  local ids = {}
  local now = alert_now()
  local arrived = {} -- no-data rules already told in this run
  local rule_cache = {} -- id -> {json, decoded} (false: gone), read once per run
  local state_cache = {} -- id -> threshold state, written once at the end
  local device_rules = {} -- device -> its device-wide rule ids (comma list), read once per run
  for _, reading in ipairs(readings) do
    local series, ts, raw = reading[1], reading[2], reading[3]
    local device = string.match(series, '^[^/]+')
    local listed = device_rules[device]
    if listed == nil then
      listed = redis.call('HGET', index, device .. '/*') or ''
      device_rules[device] = listed
    end
    for _, ids_text in ipairs({redis.call('HGET', index, series) or '', listed}) do
      for rule_id in string.gmatch(ids_text, '[^,]+') do
        local cached = rule_cache[rule_id]
        if cached == nil then
          local text = redis.call('HGET', rules, rule_id)
          cached = text and {text, cjson.decode(text)} or false
          rule_cache[rule_id] = cached
        end
        local rule_json, rule = cached and cached[1], cached and cached[2]
        if rule and rule.enabled ~= false then
          local id = nil
          if rule.kind == 'no_data' then
            if not arrived[rule_id] then
              arrived[rule_id] = true
              id = alert_arrived(states, log, maxlen, rule_id, rule_json, rule, ts, raw, now)
            end
          else
            id = alert_step(states, log, maxlen, rule_id, rule_json, rule, ts, raw, now, 'threshold', state_cache)
          end
          if id then ids[#ids + 1] = id end
        end
      end
    end
  end
  local fields = {}
  for rule_id, s in pairs(state_cache) do
    if s.dirty then
      fields[#fields + 1] = rule_id
      fields[#fields + 1] = state_encode(s)
    end
  end
  for from = 1, #fields, 1000 do
    redis.call('HSET', states, unpack(fields, from, math.min(from + 999, #fields)))
  end
  return ids
end

