-- resync.lua - an instance's heartbeat, its share reset from HAProxy's scur, dead
-- instances dropped, conns recomputed as the sum of the live shares (agent/fleet.c).
-- KEYS[1] conns, KEYS[2] share, KEYS[3] open map, KEYS[4] insts, KEYS[5] servers,
--   KEYS[6..] the share and open map (i:<inst>, o:<inst>) of each instance the agent
--   read from insts just before: every key touched is declared, all in the backend's
--   slot. An instance that joined in between, undeclared, is left to the next resync.
-- ARGV[1] key prefix of the backend ("<prefix>{<backend>}:"), ARGV[2] instance,
--   ARGV[3] now ms, ARGV[4] heartbeat TTL ms, ARGV[5] mode ("scur": reset the share
--   from the pairs, "beat": keep it, "leave": remove this instance), ARGV[6] the pids
--   of this instance's older, still running HAProxy processes (space separated, ''
--   for none), then quadruples server, scur, weight, haproxy-state. In "scur" mode
--   the older processes' tunnels (open-map uids ending in ":<pid>", decimal or
--   zero-padded hex) are added to the share: only the newest process answers
--   "show stat", so its scur alone would forget them.
-- Returns the list of instances dropped (the leaving one included).
local conns, share, open, insts, servers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local declared = {}
for k = 1, #KEYS do declared[KEYS[k]] = true end
local kp, inst, now, hb, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if mode == 'scur' then
  redis.call('DEL', share)
  for i = 7, #ARGV, 4 do
    local n = tonumber(ARGV[i + 1])
    if n > 0 then redis.call('HSET', share, ARGV[i], n) end
  end
  if ARGV[6] ~= '' then
    local older = {}
    for p in string.gmatch(ARGV[6], '%d+') do
      older[tonumber(p)] = true
    end
    local o = redis.call('HGETALL', open)
    for i = 1, #o, 2 do
      local p = string.match(o[i], ':(%x+)$')
      if p and (older[tonumber(p, 10) or -1] or older[tonumber(p, 16)]) then
        redis.call('HINCRBY', share, o[i + 1], 1)
      end
    end
  end
end
local dropped = {}
if mode == 'leave' then
  redis.call('ZREM', insts, inst)
  redis.call('DEL', share, open)
  dropped[1] = inst
else
  redis.call('ZADD', insts, now, inst)
  redis.call('PEXPIRE', share, hb)
  if redis.call('PTTL', open) == -1 then
    redis.call('PEXPIRE', open, math.max(hb, 86400000))
  end
  if #ARGV >= 7 then
    redis.call('DEL', servers)
    for i = 7, #ARGV, 4 do
      redis.call('HSET', servers, ARGV[i], ARGV[i + 2] .. ' ' .. ARGV[i + 3])
    end
  end
end
for _, d in ipairs(redis.call('ZRANGEBYSCORE', insts, '-inf', '(' .. (now - hb))) do
  if declared[kp .. 'i:' .. d] and declared[kp .. 'o:' .. d] then
    redis.call('ZREM', insts, d)
    redis.call('DEL', kp .. 'i:' .. d, kp .. 'o:' .. d)
    dropped[#dropped + 1] = d
  end
end
local sum = {}
for _, l in ipairs(redis.call('ZRANGE', insts, 0, -1)) do
  if declared[kp .. 'i:' .. l] then
    local h = redis.call('HGETALL', kp .. 'i:' .. l)
    for i = 1, #h, 2 do sum[h[i]] = (sum[h[i]] or 0) + tonumber(h[i + 1]) end
  end
end
redis.call('DEL', conns)
for k, v in pairs(sum) do
  if v > 0 then redis.call('HSET', conns, k, v) end
end
return dropped
