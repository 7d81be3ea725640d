-- decide.lua - one arbitrated decision (contract in agent/model.h, rules in agent/assign.c).
-- Run only when the cookie cannot decide alone: its tagged server is unusable, it
-- has no tag (a "1" cookie), or the affinity follows a key. The agent has already
-- judged every server (affinity.c); this script only makes the decision atomic
-- across agents: an existing usable pin wins, else the agent's choice is written.
-- KEYS[1] the record; KEYS[2] a legacy record to carry over (a "1" cookie's hash, or
--   the previous secret's key record), or KEYS[1] again when there is none. Both are
--   in one slot: in a Redis Cluster, where each record has its own, always KEYS[1].
-- ARGV[1] deadline, Redis time in ms (0: none): past it the agent has answered
--   without us, so nothing is written; ARGV[2] session TTL ms; ARGV[3] instance;
--   ARGV[4] the agent's choice for a new session or a repin ('' when none);
--   ARGV[5] a legacy record's value the agent read from its own slot (a Redis
--   Cluster), carried over when there is no record ('' when none);
--   ARGV[6..] the servers a pin may stay on.
-- Returns {'late'} | {'hit', server, moved 0/1} | {'repin', server, from} |
--   {'new', server} | {'none', reason}.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dl = tonumber(ARGV[1])
if dl > 0 and now > dl then return {'late'} end
local rec, ttl, inst, choice = KEYS[1], ARGV[2], ARGV[3], ARGV[4]
local nows = string.format('%d', now)
local function record(srv, created) -- the record format: agent/model.h
  return srv .. ' ' .. created .. ' ' .. nows .. ' - ' .. inst
end
local v = redis.call('GET', rec)
if not v and KEYS[2] ~= rec then
  local kind = redis.call('TYPE', KEYS[2])['ok']
  if kind == 'hash' then
    local h = redis.call('HMGET', KEYS[2], 'server', 'created')
    if h[1] then v = record(h[1], h[2] or nows) end
  elseif kind == 'string' then
    v = redis.call('GET', KEYS[2])
  end
  if v then
    redis.call('DEL', KEYS[2])
    redis.call('SET', rec, v, 'PX', ttl)
  end
end
if not v and ARGV[5] ~= '' then
  v = ARGV[5]
  redis.call('SET', rec, v, 'PX', ttl)
end
local srv, created, flag
if v then srv, created, flag = string.match(v, '^(%S+) (%d+) %d+ ([-m])') end
if srv then
  for i = 6, #ARGV do
    if ARGV[i] == srv then
      redis.call('SET', rec, record(srv, created), 'PX', ttl)
      if flag == 'm' then return {'hit', srv, 1} end
      return {'hit', srv, 0}
    end
  end
  if choice == '' then return {'none', 'no usable server'} end
  redis.call('SET', rec, record(choice, created), 'PX', ttl)
  return {'repin', choice, srv}
end
if choice == '' then return {'none', 'no usable server'} end
redis.call('SET', rec, record(choice, nows), 'PX', ttl)
return {'new', choice}
