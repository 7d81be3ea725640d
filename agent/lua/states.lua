-- states.lua - the cluster's admin states and what this instance set on its HAProxy.
-- KEYS[1] state, KEYS[2] a:<inst>. Returns {HGETALL state, HGETALL a:<inst>}.
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
