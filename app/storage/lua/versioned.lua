-- versioned.lua: the version check and the write of one versioned document,
-- as a library prepended to annotation_write.lua and rule_write.lua.
--
-- Guarantees, inside the one script run that calls vd_write:
--   * the precondition (an expected version, when given) is compared with the
--     stored version and the write happens only if they match; without one
--     the write is last-write-wins. Either way the version grows by exactly 1;
--   * a deleted document stays a tombstone (version kept, `deleted` set, the
--     key expiring after ARGV[7] ms): later writes answer `gone`, never
--     resurrect it;
--   * the revision (who, when, before, after) and the event are appended in
--     the same step, so an accepted write is never missing from either.
-- Field values arrive as JSON text encoded by Python and are stored and
-- concatenated verbatim, so no number or string is re-encoded by Lua.
--
-- KEYS[1] document hash: version, created, updated, deleted?, json, f:<field>
-- KEYS[2] revision list, KEYS[3] event log
-- ARGV[1] mode (create | update | delete), ARGV[2] expected version or '',
-- ARGV[3] now ms, ARGV[4] id (JSON), ARGV[5] event log maxlen, ARGV[6] actor:
-- a JSON object ({"by", "by_id", "self_declared"}) whose members are spliced
-- into the revision and the event, ARGV[7] tombstone ttl ms, ARGV[8] revisions kept, ARGV[9] field
-- order (comma list), ARGV[10] event type, ARGV[11] noun (key of the document
-- in the event data), then: n, n x (field, JSON) to set; n, n x (field, JSON)
-- that must equal the stored value (immutable fields); n, n x field to clear.
-- Returns {status, document JSON or '', event id or '', field}: status is ok,
-- exists, missing, gone, conflict or immutable (field names the culprit).

local function vd_build(doc, id_json, order)
  local parts = {'{"id":' .. id_json}
  for name in string.gmatch(order, '[^,]+') do
    local raw = redis.call('HGET', doc, 'f:' .. name)
    parts[#parts + 1] = '"' .. name .. '":' .. (raw or 'null')
  end
  local meta = redis.call('HMGET', doc, 'created', 'updated', 'version', 'deleted')
  parts[#parts + 1] = '"created":' .. meta[1]
  parts[#parts + 1] = '"updated":' .. meta[2]
  parts[#parts + 1] = '"version":' .. meta[3]
  parts[#parts + 1] = '"deleted":' .. (meta[4] and 'true' or 'false')
  return table.concat(parts, ',') .. '}'
end

local function vd_write(doc, revisions, events, argv)
  local mode, expected, now, id_json = argv[1], argv[2], argv[3], argv[4]
  local by = string.sub(argv[6], 2, -2)  -- the actor object's members, without its braces
  local meta = redis.call('HMGET', doc, 'version', 'deleted', 'json')
  local version, deleted, current = tonumber(meta[1]), meta[2], meta[3]

  if mode == 'create' then
    if version then return {'exists', current or '', '', ''} end
  else
    if not version then return {'missing', '', '', ''} end
    if deleted then return {'gone', current, '', ''} end
    if expected ~= '' and tonumber(expected) ~= version then
      return {'conflict', current, '', ''}
    end
  end

  -- Parse the three argument groups before touching anything.
  local i = 12
  local sets = {}
  for _ = 1, tonumber(argv[i]) do
    sets[#sets + 1] = {argv[i + 1], argv[i + 2]}
    i = i + 2
  end
  i = i + 1
  for _ = 1, tonumber(argv[i]) do
    if mode ~= 'create' then
      local stored = redis.call('HGET', doc, 'f:' .. argv[i + 1])
      if stored ~= argv[i + 2] then return {'immutable', current, '', argv[i + 1]} end
    end
    i = i + 2
  end
  i = i + 1
  local clears = {}
  for _ = 1, tonumber(argv[i]) do
    clears[#clears + 1] = argv[i + 1]
    i = i + 1
  end

  local action
  if mode == 'create' then
    action = 'created'
    redis.call('HSET', doc, 'created', now, 'version', 1)
  elseif mode == 'update' then
    action = 'updated'
    redis.call('HINCRBY', doc, 'version', 1)
  else
    action = 'deleted'
    redis.call('HINCRBY', doc, 'version', 1)
    redis.call('HSET', doc, 'deleted', now)
  end
  redis.call('HSET', doc, 'updated', now)
  for _, pair in ipairs(sets) do redis.call('HSET', doc, 'f:' .. pair[1], pair[2]) end
  for _, name in ipairs(clears) do redis.call('HDEL', doc, 'f:' .. name) end

  local after = vd_build(doc, id_json, argv[9])
  redis.call('HSET', doc, 'json', after)
  local new_version = redis.call('HGET', doc, 'version')

  redis.call('RPUSH', revisions, '{"version":' .. new_version .. ',"action":"' .. action ..
    '",' .. by .. ',"at":' .. now .. ',"before":' .. (current or 'null') ..
    ',"after":' .. after .. '}')
  redis.call('LTRIM', revisions, -tonumber(argv[8]), -1)
  if mode == 'delete' then
    redis.call('PEXPIRE', doc, argv[7])
    redis.call('PEXPIRE', revisions, argv[7])
  end

  local device = cjson.decode(redis.call('HGET', doc, 'f:device'))
  local event_id = redis.call('XADD', events, 'MAXLEN', '~', argv[5], '*',
    'type', argv[10], 'topic', 'device/' .. device,
    'data', '{"action":"' .. action .. '",' .. by .. ',"' .. argv[11] .. '":' .. after .. '}')
  return {'ok', after, event_id, ''}
end
