-- rule_write.lua: create, update or delete one alert rule (after the
-- versioned.lua library, which does the version check, the write, the
-- revision and the `alert_rule` event, and alert_eval.lua, which evaluates;
-- all in this same atomic run).
--
-- Guarantees, on top of vd_write:
--   * the rule table (id -> rule JSON) and the series index (series -> ids;
--     '<device>/*' for a device-wide rule) that alert_eval.lua reads always
--     match the live rules;
--   * disabling or deleting a rule clears its state (and its no-data
--     deadline), and if it was firing exactly one `alert` transition with
--     state `resolved` says so;
--   * creating, editing or enabling a rule evaluates it at once: a threshold
--     rule against the series' latest value (reason 'rule_changed'), a
--     no-data rule against its last arrival (or the series' latest ts, or
--     now, on create): past its deadline it fires now, else the deadline
--     goes into the due set the sweeper (alert_sweep.lua) reads.
--
-- KEYS[1] rule hash, KEYS[2] revisions, KEYS[3] event log,
-- KEYS[4] rules (hash: id -> rule JSON), KEYS[5] series index (hash: series
-- -> comma list of ids), KEYS[6] rule state (hash: id -> state JSON),
-- KEYS[7] latest values (hash: series -> reading JSON), KEYS[8] latest ts
-- (hash: series -> ts ms)
-- ARGV as vd_write, plus ARGV[#ARGV] the plain id.

local result = vd_write(KEYS[1], KEYS[2], KEYS[3], ARGV)
if result[1] ~= 'ok' then return result end

local id, mode, rule_json = ARGV[#ARGV], ARGV[1], result[2]
local now = tonumber(ARGV[3])
local rule = cjson.decode(rule_json)
-- The rule's series id (device/metric{tags}, set at create); rules older than tags have none.
local series = opt(rule.series) or (rule.device .. '/' .. rule.metric)
local base = alert_base(KEYS[6])

local listed = {}
for member in string.gmatch(redis.call('HGET', KEYS[5], series) or '', '[^,]+') do
  if member ~= id then listed[#listed + 1] = member end
end
if mode == 'delete' then
  redis.call('HDEL', KEYS[4], id)
else
  redis.call('HSET', KEYS[4], id, rule_json)
  listed[#listed + 1] = id
end
if #listed > 0 then
  redis.call('HSET', KEYS[5], series, table.concat(listed, ','))
else
  redis.call('HDEL', KEYS[5], series)
end

if mode == 'delete' or rule.enabled == false then
  redis.call('ZREM', base .. 'nodata-due', id)
  redis.call('HDEL', base .. 'nodata-seen', id)
  local state = redis.call('HGET', KEYS[6], id)
  redis.call('HDEL', KEYS[6], id)
  if state and cjson.decode(state).state == 'firing' then
    local reason = (mode == 'delete') and 'deleted' or 'disabled'
    alert_transition(KEYS[6], KEYS[3], ARGV[5], id, rule_json, rule, 'resolved', reason, nil, now, now)
  end
elseif rule.kind == 'no_data' then
  local stored = redis.call('HGET', KEYS[6], id)
  if not (stored and cjson.decode(stored).state == 'firing') then
    local seen = tonumber(redis.call('HGET', base .. 'nodata-seen', id) or '')
    if not seen then
      local latest = opt(rule.metric) and tonumber(redis.call('HGET', KEYS[8], series) or '')
      seen = (latest and latest < now) and latest or now
      redis.call('HSET', base .. 'nodata-seen', id, seen)
    end
    local deadline = seen + (tonumber(opt(rule.no_data_seconds)) or 60) * 1000
    if deadline <= now then
      redis.call('ZREM', base .. 'nodata-due', id)
      redis.call('HSET', KEYS[6], id,
        '{"state":"firing","since":' .. num(now) .. ',"pending_since":null,"last_value":null,"last_ts":null}')
      alert_transition(KEYS[6], KEYS[3], ARGV[5], id, rule_json, rule, 'firing', 'no_data', nil, now, now)
    else
      redis.call('ZADD', base .. 'nodata-due', deadline, id)
    end
  end
else
  local ts = tonumber(redis.call('HGET', KEYS[8], series) or '')
  local latest = redis.call('HGET', KEYS[7], series)
  local value = latest and cjson.decode(latest).value
  if ts and type(value) == 'number' then
    alert_step(KEYS[6], KEYS[3], ARGV[5], id, rule_json, rule, ts, alert_value_text(value), now, 'rule_changed')
  end
end
return result
