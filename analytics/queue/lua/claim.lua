-- Move up to ARGV[1] records from the queue head (KEYS[1]) into a processing list (KEYS[2]), atomically; return them.
-- Lua's unpack() fails past ~8,000 values and a script is not rolled back, so push in chunks and trim last: a failure
-- can duplicate (harmless: the merge is idempotent) but never lose.
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local n = #items
for i = 1, n, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 999, n)))
end
if n > 0 then
    redis.call('LTRIM', KEYS[1], n, -1)
end
return items
