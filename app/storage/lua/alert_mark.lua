-- alert_mark.lua: acknowledge a firing rule, or silence / unsilence a rule,
-- with its event, in one atomic run.
--
-- Guarantees:
--   * an acknowledgement is only recorded while the rule is firing (checked
--     against the state in this run), and the next transition clears it
--     (alert_eval.lua's alert_transition), so an ack always belongs to the
--     firing it was made on;
--   * a silence (until a time) is stored or removed for a live rule only;
--     while it lasts, transitions are still evaluated, recorded and sent as
--     events, but no delivery is enqueued (alert_transition reads it);
--   * each accepted mark is one event on the rule's device topic:
--     `alert_ack` {rule_id, ack, rule} or `alert_silence` {rule_id, silence
--     (null when removed), rule}.
--
-- KEYS[1] rules (hash), KEYS[2] states (hash), KEYS[3] acks (hash),
-- KEYS[4] silences (hash), KEYS[5] event log
-- ARGV[1] mode (ack | silence | unsilence), ARGV[2] rule id, ARGV[3] the
-- mark's JSON object without its closing brace (who, when, until, ...), to
-- which this script adds what it knows, ARGV[4] event log maxlen, ARGV[5] now ms
-- Returns {status, mark JSON or '', event id or ''}: status ok, missing,
-- not_firing.

local mode, id = ARGV[1], ARGV[2]
local rule_json = redis.call('HGET', KEYS[1], id)
if not rule_json then return {'missing', '', ''} end
local rule = cjson.decode(rule_json)
local now = tonumber(ARGV[5])

local mark, event_type, key
if mode == 'ack' then
  local stored = redis.call('HGET', KEYS[2], id)
  local state = stored and cjson.decode(stored) or {}
  if state.state ~= 'firing' then return {'not_firing', '', ''} end
  local since = state.since
  if since == nil or since == cjson.null then since = 'null' else since = string.format('%d', since) end
  mark = ARGV[3] .. ',"firing_since":' .. since .. '}'
  redis.call('HSET', KEYS[3], id, mark)
  event_type, key = 'alert_ack', 'ack'
elseif mode == 'silence' then
  mark = ARGV[3] .. '}'
  redis.call('HSET', KEYS[4], id, mark)
  event_type, key = 'alert_silence', 'silence'
else
  redis.call('HDEL', KEYS[4], id)
  mark = 'null'
  event_type, key = 'alert_silence', 'silence'
end
local event_id = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*',
  'type', event_type, 'topic', 'device/' .. rule.device,
  'data', '{"rule_id":' .. cjson.encode(id) .. ',"' .. key .. '":' .. mark .. ',"at":' .. string.format('%d', now) ..
    ',"rule":' .. rule_json .. '}')
return {'ok', mark, event_id}
