-- Drop a shard's lease (KEYS[1]) if this lane (ARGV[1]) holds it, never another lane's. Returns 1 if dropped, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
