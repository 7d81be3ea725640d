-- move.lua - stickyctl move: re-pin a session that exists (one that expired
-- between the operator's lookup and the move must not come back as a bare pin).
-- The record is flagged 'm' (moved by an operator): it then wins over the tag in
-- the session's cookie until an agent has reissued the cookie (agent/assign.c).
-- KEYS[1] the record; KEYS[2] a legacy record (a "1" cookie's hash) or KEYS[1]
--   (always KEYS[1] in a Redis Cluster: one slot per script, and a record's is its own).
-- ARGV[1] the server. Returns the previous server, or false when there is none.
local v = redis.call('GET', KEYS[1])
if not v and KEYS[2] ~= KEYS[1] and redis.call('TYPE', KEYS[2])['ok'] == 'hash' then
  local h = redis.call('HMGET', KEYS[2], 'server', 'created', 'seen', 'inst')
  if h[1] then
    v = h[1] .. ' ' .. (h[2] or '0') .. ' ' .. (h[3] or '0') .. ' - ' .. (h[4] or '')
    local ttl = redis.call('PTTL', KEYS[2])
    redis.call('DEL', KEYS[2])
    if ttl > 0 then redis.call('SET', KEYS[1], v, 'PX', ttl) else redis.call('SET', KEYS[1], v) end
  end
end
if not v then return false end
local old, created, seen, inst = string.match(v, '^(%S+) (%d+) (%d+) [-m] ?(.*)$')
if not old then return false end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. created .. ' ' .. seen .. ' m ' .. inst, 'KEEPTTL')
return old
