-- alert_eval.lua: evaluate the alert rules of freshly ingested readings.
-- A library: prepended to ingest_readings.lua, which calls evaluate_alerts
-- after storing a batch, so storing readings and reacting to them is one
-- script run (one round trip per group of POSTs) and an `alert` event always
-- follows the `metric` event that caused it.
--
-- Guarantees, for each reading, in that one atomic run:
--   * a reading older than the last one a rule has seen is ignored, so a
--     late, out-of-order reading never flips a state (the same order as the
--     latest-value register), whichever process ingested it;
--   * a rule fires when its value is past the threshold (above: v > t,
--     below: v < t) and has stayed past it for min_duration_ms of reading
--     time; it resolves only once the value is back past threshold -/+
--     hysteresis (above: v <= t - h, below: v >= t + h);
--   * the state (ok / firing, since, pending_since, last value and ts) is
--     updated and exactly one `alert` event is appended per state change,
--     none for readings that change nothing.
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

local function evaluate_alerts(rules, index, states, log, maxlen, readings)
  local ids = {}
  for _, reading in ipairs(readings) do
    local series, ts, raw = reading[1], reading[2], reading[3]
    local value = tonumber(raw)
    for rule_id in string.gmatch(redis.call('HGET', index, series) or '', '[^,]+') do
      local rule_json = redis.call('HGET', rules, rule_id)
      local rule = rule_json and cjson.decode(rule_json)
      if rule and rule.enabled ~= false then
        local stored = redis.call('HGET', states, rule_id)
        local st = stored and cjson.decode(stored) or {}
        local state = opt(st.state) or 'ok'
        local since, pending, last_ts = opt(st.since), opt(st.pending_since), opt(st.last_ts)
        if last_ts == nil or ts >= last_ts then
          local t, h = rule.threshold, rule.hysteresis or 0
          local past, back
          if rule.op == 'below' then
            past, back = value < t, value >= t + h
          else
            past, back = value > t, value <= t - h
          end
          local change = nil
          if state == 'firing' then
            if back then state, since, change = 'ok', ts, 'resolved' end
          elseif past then
            pending = pending or ts
            if ts - pending >= (rule.min_duration_ms or 0) then
              state, since, pending, change = 'firing', ts, nil, 'firing'
            end
          else
            pending = nil
          end
          redis.call('HSET', states, rule_id, '{"state":"' .. state .. '","since":' .. num(since) ..
            ',"pending_since":' .. num(pending) .. ',"last_value":' .. raw .. ',"last_ts":' .. num(ts) .. '}')
          if change then
            ids[#ids + 1] = redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
              'type', 'alert', 'topic', 'device/' .. rule.device,
              'data', '{"rule_id":' .. cjson.encode(rule_id) .. ',"state":"' .. change ..
                '","reason":"threshold","value":' .. raw .. ',"ts":' .. num(ts) .. ',"since":' .. num(ts) ..
                ',"rule":' .. rule_json .. '}')
          end
        end
      end
    end
  end
  return ids
end

