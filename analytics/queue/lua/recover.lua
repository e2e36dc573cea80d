-- Give a dead writer's processing list back to the queue, only when its heartbeat has expired.
-- KEYS: queue, processing list, heartbeat, writers set; ARGV: writer id. Returns the records moved, or -1.
if redis.call('EXISTS', KEYS[3]) == 1 then
    return -1
end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local n = #items
for i = 1, n, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(items, i, math.min(i + 999, n)))
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[4], ARGV[1])
return n
