-- Give this writer's own processing list back to the queue. KEYS: queue, processing list. Returns the records moved.
-- The list is deleted only after every chunk was pushed: a failure part-way can duplicate, never lose.
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local n = #items
for i = 1, n, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(items, i, math.min(i + 999, n)))
end
redis.call('DEL', KEYS[2])
return n
