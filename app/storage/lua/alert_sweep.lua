-- alert_sweep.lua: fire the no-data rules whose deadline has passed (after
-- the alert_eval.lua library). Every process runs it (app/alerts/nodata.py);
-- the check and the transition are this one atomic run, so each firing
-- happens exactly once however many processes sweep at the same moment.
--
-- Guarantees:
--   * a rule fires only when its deadline (last arrival + no_data_seconds,
--     pushed by every reading in the ingest script) is at or before Redis's
--     clock now, it is still a live, enabled no-data rule, and it is not
--     firing already; the due entry is removed in the same run, so a second
--     sweep finds nothing;
--   * the transition (event, history, outbox) is alert_transition's.
--
-- KEYS[1] rules (hash), KEYS[2] rule states (hash), KEYS[3] event log
-- ARGV[1] event log maxlen, ARGV[2] most rules handled in this run
-- Returns the ids of the `alert` events appended.

local base = alert_base(KEYS[2])
local due = base .. 'nodata-due'
local now = alert_now()
local ids = {}
for _, rule_id in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))) do
  redis.call('ZREM', due, rule_id)
  local rule_json = redis.call('HGET', KEYS[1], rule_id)
  local rule = rule_json and cjson.decode(rule_json)
  if rule and rule.enabled ~= false and rule.kind == 'no_data' then
    local stored = redis.call('HGET', KEYS[2], rule_id)
    if not (stored and cjson.decode(stored).state == 'firing') then
      redis.call('HSET', KEYS[2], rule_id,
        '{"state":"firing","since":' .. num(now) .. ',"pending_since":null,"last_value":null,"last_ts":null}')
      ids[#ids + 1] = alert_transition(KEYS[2], KEYS[3], ARGV[1], rule_id, rule_json, rule, 'firing', 'no_data',
        nil, now, now)
    end
  end
end
return ids
