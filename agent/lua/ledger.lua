-- ledger.lua - one batch of this instance's writes for one backend (agent/ledger.c):
-- tunnel opens and closes, counted once per unique-id, and session-record touches.
-- Everything here was already answered to HAProxy: a touch never moves a session
-- against its cookie, it only makes the record follow it (the cookie is the
-- authority), except for a record an operator moved, which is reported back.
-- ARGV[7] is the number of count keys: 7, or 0 for a call of record touches only.
-- KEYS[1] conns, KEYS[2] this instance's share, KEYS[3] its open map, KEYS[4] insts,
--   KEYS[5] state, KEYS[6] its per-process counts (p:<inst>: "<pid> <server>" -> open
--   tunnels whose unique-id ends in ":<pid>", so a resync finds an older HAProxy
--   process's tunnels without reading the open map), KEYS[7] the open map's previous
--   generation (o2:<inst>, rotated by resync.lua: a tunnel opened before the rotation
--   is found and closed there) (those seven when ARGV[7] is 7), then one record per
--   touch, in order. Standalone, one call carries both; in a Redis Cluster the agent
--   sends the counts (the backend's slot) and each record's touches (the record's own
--   slot) apart, so that every call touches one slot, each key declared here.
-- ARGV[1] instance, ARGV[2] heartbeat TTL ms, ARGV[3] open-map TTL ms,
--   ARGV[4] session TTL ms, ARGV[5] number of opens, ARGV[6] number of closes,
--   ARGV[7] number of count keys, then
--   opens (uid, server), closes (uid), touches (server, mode) where mode is
--   'n' new (never overwrites), 'a' adopt (hit), 'r' adopt and refresh the TTL,
--   'f' force (a correction).
-- Returns {now ms, conns (flat), state (flat), opened, closed, moved, instances, rank}
--   where moved lists {touch index (1-based), recorded server} of records an operator
--   moved, instances counts the live instances and rank is this one's among them by
--   name (the caps' room is split by it: agent/affinity.h); a touches-only call
--   returns {now ms, {}, {}, 0, 0, moved}.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nows = string.format('%d', now)
local ncount = tonumber(ARGV[7])
local conns, share, open, insts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local inst, ttl = ARGV[1], ARGV[4]
local nopen, nclose = tonumber(ARGV[5]), tonumber(ARGV[6])
local delta, opened, closed = {}, 0, 0
local pids, old = KEYS[6], KEYS[7]
-- the pid token a unique-id ends with (the reference format ends in %pid), as
-- resync.lua matches it: lower case, leading zeros dropped
local function pid_of(uid)
  local p = string.match(uid, ':(%x+)$')
  if not p then return nil end
  p = string.lower(p):gsub('^0+', '')
  return p ~= '' and p or '0'
end
local function pid_add(uid, srv, d)
  local p = pid_of(uid)
  if p and tonumber(redis.call('HINCRBY', pids, p .. ' ' .. srv, d)) <= 0 then
    redis.call('HDEL', pids, p .. ' ' .. srv)
  end
end
-- a counted tunnel now on another server: its count, and its process's, follow it
local function move(uid, from, to)
  delta[from] = (delta[from] or 0) - 1
  delta[to] = (delta[to] or 0) + 1
  pid_add(uid, from, -1)
  pid_add(uid, to, 1)
end
local i = 8
if ncount == 0 and (nopen > 0 or nclose > 0) then
  return redis.error_reply('ERR ledger: opens and closes need the count keys')
end
for _ = 1, nopen do
  local uid, srv = ARGV[i], ARGV[i + 1]
  i = i + 2
  if redis.call('HSETNX', open, uid, srv) == 1 then
    local was = redis.call('HGET', old, uid)
    if was then -- counted before the rotation: it moves to this generation
      redis.call('HDEL', old, uid)
      if was ~= srv then move(uid, was, srv) end
    else
      delta[srv] = (delta[srv] or 0) + 1
      opened = opened + 1
      pid_add(uid, srv, 1)
    end
  else
    local prev = redis.call('HGET', open, uid)
    if prev ~= srv then -- counted elsewhere (a redispatch): move it
      redis.call('HSET', open, uid, srv)
      move(uid, prev, srv)
    end
  end
end
for _ = 1, nclose do
  local uid = ARGV[i]
  i = i + 1
  local map = open
  local srv = redis.call('HGET', open, uid)
  if not srv then
    map = old
    srv = redis.call('HGET', old, uid)
  end
  if srv then
    redis.call('HDEL', map, uid)
    delta[srv] = (delta[srv] or 0) - 1
    closed = closed + 1
    pid_add(uid, srv, -1)
  end
end
for srv, d in pairs(delta) do
  if d ~= 0 then
    for _, key in ipairs({share, conns}) do
      if tonumber(redis.call('HINCRBY', key, srv, d)) <= 0 then redis.call('HDEL', key, srv) end
    end
  end
end
if ncount > 0 then
  redis.call('ZADD', insts, now, inst)
  redis.call('PEXPIRE', share, tonumber(ARGV[2]))
  if redis.call('PTTL', open) == -1 then redis.call('PEXPIRE', open, tonumber(ARGV[3])) end
  if redis.call('PTTL', pids) == -1 then redis.call('PEXPIRE', pids, tonumber(ARGV[3])) end
end
local function record(srv, created) -- the record format: agent/model.h
  return srv .. ' ' .. created .. ' ' .. nows .. ' - ' .. inst
end
local moved = {}
for k = ncount + 1, #KEYS do
  local srv, mode = ARGV[i], ARGV[i + 1]
  i = i + 2
  local rec = KEYS[k]
  local v = redis.call('GET', rec)
  if not v then
    redis.call('SET', rec, record(srv, nows), 'PX', ttl)
  elseif mode == 'n' then
    -- a new session's id is fresh: a record there was written since, keep it
  else
    local have, created, flag = string.match(v, '^(%S+) (%d+) %d+ ([-m])')
    if not have then
      redis.call('SET', rec, record(srv, nows), 'PX', ttl)
    elseif flag == 'm' and mode ~= 'f' then
      moved[#moved + 1] = {k - ncount, have}
    elseif have ~= srv or mode ~= 'a' then
      redis.call('SET', rec, record(srv, created), 'PX', ttl)
    end
  end
end
if ncount == 0 then return {now, {}, {}, 0, 0, moved} end
local live, rank = redis.call('ZRANGE', insts, 0, -1), 0
for _, n in ipairs(live) do
  if n < inst then rank = rank + 1 end
end
return {now, redis.call('HGETALL', conns), redis.call('HGETALL', KEYS[5]), opened, closed, moved,
  #live, rank}
