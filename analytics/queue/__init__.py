"""The Redis queue between the api and the writers: keys, the coalesced push, claims, acks, recovery, dead letters.
Lua scripts live in `lua/`; redis-py's errors stop here (`errors.QueueUnavailable`)."""
