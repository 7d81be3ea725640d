-- states.lua - the cluster's admin states and what this instance set on its HAProxy.
-- KEYS[1] state, KEYS[2] a:<inst>.
-- ARGV (only for a backend with a slow start, agent/fleet.c): pairs server, HAProxy
--   state (ready|drain|maint|down) as this instance sees them. For a server the
--   cluster has ready (no entry, or "ready:<ms>"), the moment it became usable is
--   recorded on Redis time, so that every agent ramps from the same moment: seen
--   not ready -> "ready:0"; seen ready with no entry (newly added, undrained) or
--   "ready:0" (back up) -> "ready:<now>". Drain and maint entries are left alone.
-- Returns {HGETALL state, HGETALL a:<inst>}.
if #ARGV > 0 then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  for i = 1, #ARGV - 1, 2 do
    local srv, st = ARGV[i], ARGV[i + 1]
    local v = redis.call('HGET', KEYS[1], srv)
    if not v or string.match(v, '^ready:%d+$') then
      if st == 'ready' then
        if not v or v == 'ready:0' then redis.call('HSET', KEYS[1], srv, 'ready:' .. now) end
      elseif v ~= 'ready:0' then
        redis.call('HSET', KEYS[1], srv, 'ready:0')
      end
    end
  end
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
