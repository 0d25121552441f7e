-- rule_write.lua: create, update or delete one alert rule (after the
-- versioned.lua library, which does the version check, the write, the
-- revision and the `alert_rule` event in this same atomic run).
--
-- Guarantees, on top of vd_write:
--   * the rule table (id -> rule JSON) and the series index (series -> ids)
--     that alert_eval.lua reads always match the live rules;
--   * disabling or deleting a rule clears its state, and if it was firing
--     exactly one `alert` event with state `resolved` says so.
--
-- KEYS[1] rule hash, KEYS[2] revisions, KEYS[3] event log,
-- KEYS[4] rules (hash: id -> rule JSON), KEYS[5] series index (hash: series
-- -> comma list of ids), KEYS[6] rule state (hash: id -> state JSON)
-- ARGV as vd_write, plus ARGV[#ARGV] the plain id.

local result = vd_write(KEYS[1], KEYS[2], KEYS[3], ARGV)
if result[1] ~= 'ok' then return result end

local id, mode, now, rule_json = ARGV[#ARGV], ARGV[1], ARGV[3], result[2]
local rule = cjson.decode(rule_json)
-- The rule's series id (device/metric{tags}, set at create); rules older than tags have none.
local series = rule.series or (rule.device .. '/' .. rule.metric)

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
  local state = redis.call('HGET', KEYS[6], id)
  redis.call('HDEL', KEYS[6], id)
  if state and cjson.decode(state).state == 'firing' then
    local reason = (mode == 'delete') and 'deleted' or 'disabled'
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',
      'type', 'alert', 'topic', 'device/' .. rule.device,
      'data', '{"rule_id":' .. ARGV[4] .. ',"state":"resolved","reason":"' .. reason ..
        '","value":null,"ts":' .. now .. ',"since":' .. now .. ',"rule":' .. rule_json .. '}')
  end
end
return result
