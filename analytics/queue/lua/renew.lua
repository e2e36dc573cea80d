-- Extend a shard's lease (KEYS[1]) to ARGV[2] ms, only while this lane (ARGV[1]) still holds it: a lease that expired
-- and was taken by another lane stays theirs. Returns 1 if renewed, 0 if not held.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
