-- resync.lua - an instance's heartbeat, its share reset from HAProxy's scur, dead
-- instances dropped, conns recomputed as the sum of the live shares (agent/fleet.c).
-- KEYS[1] conns, KEYS[2] share, KEYS[3] open map, KEYS[4] insts, KEYS[5] servers,
-- KEYS[6] per-process counts (p:<inst>, kept by ledger.lua), KEYS[7] the open map's
-- previous generation (o2:<inst>), KEYS[8..] the keys (i:, o:, p:, o2:) of each
-- instance the agent read from insts just before: every key touched is declared, all
-- in the backend's slot. An instance that joined in between, undeclared, is left to
-- the next resync.
-- ARGV[1] key prefix of the backend ("<prefix>{<backend>}:"), ARGV[2] instance,
--   ARGV[3] the open map's lifetime T ms (heartbeats and liveness are judged on
--   Redis' TIME, read here, so a skewed agent clock neither drops an instance nor
--   keeps a dead one), ARGV[4] heartbeat TTL ms, ARGV[5] mode ("scur": reset the share
--   from the pairs, "beat": keep it, "leave": remove this instance), ARGV[6] the pids
--   of this instance's older, still running HAProxy processes (space separated, ''
--   for none), then quadruples server, scur, weight, haproxy-state (followed by
--   " <maxconn>" when HAProxy has one on the server line). In "scur" mode
--   the older processes' tunnels (uids ending in ":<pid>", decimal or zero-padded
--   hex, counted per process and server by ledger.lua) are added to the share: only
--   the newest process answers "show stat", so its scur alone would forget them.
--   That costs one read of the small per-process hash, not a walk of the open map.
-- The open map rotates instead of expiring all at once: once the current generation
-- is T/2 old (its TTL, set to T at creation, is below T/2), or the previous one has
-- been previous for T/2, what is left in the previous generation (tunnels whose close
-- line was lost, or older than T/2 at least) is expired, at most EXPIRE_CHUNK entries
-- per run, taken off the share when no scur resets it ("beat" mode: the static server
-- list), and the current generation becomes the previous one. So every tunnel stays
-- counted for at least T/2, and a lost close leaves drift for at most about T.
-- Returns the list of instances dropped (the leaving one included).
local conns, share, open, insts, servers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local pids, old = KEYS[6], KEYS[7]
local declared = {}
for k = 1, #KEYS do declared[KEYS[k]] = true end
local EXPIRE_CHUNK = 1000
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kp, inst, life, hb, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local function pid_of(uid) -- as ledger.lua counts it
  local p = string.match(uid, ':(%x+)$')
  if not p then return nil end
  p = string.lower(p):gsub('^0+', '')
  return p ~= '' and p or '0'
end
local function hdecr(key, field)
  if tonumber(redis.call('HINCRBY', key, field, -1)) <= 0 then redis.call('HDEL', key, field) end
end
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
    local c = redis.call('HGETALL', pids)
    for i = 1, #c, 2 do
      local p, srv = string.match(c[i], '^(%x+) (.+)$')
      local n = tonumber(c[i + 1])
      if p and n > 0 and (older[tonumber(p, 10) or -1] or older[tonumber(p, 16)]) then
        redis.call('HINCRBY', share, srv, n)
      end
    end
  end
end
local dropped = {}
if mode == 'leave' then
  redis.call('ZREM', insts, inst)
  redis.call('DEL', share, open, pids, old)
  dropped[1] = inst
else
  redis.call('ZADD', insts, now, inst)
  for _, k in ipairs({open, pids}) do
    if redis.call('PTTL', k) == -1 then redis.call('PEXPIRE', k, life) end
  end
  local ot, pt = redis.call('PTTL', open), redis.call('PTTL', old)
  if (ot >= 0 and ot < life / 2) or (pt >= 0 and pt < life / 2) then
    local r = redis.call('HSCAN', old, 0, 'COUNT', EXPIRE_CHUNK)
    for i = 1, #r[2], 2 do
      local uid, srv = r[2][i], r[2][i + 1]
      redis.call('HDEL', old, uid)
      local p = pid_of(uid)
      if p then hdecr(pids, p .. ' ' .. srv) end
      if mode ~= 'scur' then hdecr(share, srv) end
    end
    if redis.call('EXISTS', old) == 0 and ot >= 0 then
      redis.call('RENAME', open, old)
      redis.call('PEXPIRE', old, life)
      redis.call('PEXPIRE', pids, life) -- it follows both generations, kept in step above
    end
  end
  redis.call('PEXPIRE', share, hb)
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
    redis.call('DEL', kp .. 'i:' .. d, kp .. 'o:' .. d, kp .. 'p:' .. d, kp .. 'o2:' .. d)
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
