-- Gives an index its whole TTL back while it still names a token live_and_slide.lua just
-- extended (in a Cluster, where the index lives in another slot than the token).
--
-- KEYS[1]  the index
-- ARGV[1]  the token it must still name
-- ARGV[2]  the TTL in seconds
-- Returns  1 when extended, 0 when it names another token or is no string (WRONGTYPE).
-- Invariant: any other refusal is returned as the error it is.
local indexed = redis.pcall('GET', KEYS[1])
if indexed == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if type(indexed) == 'table' and not string.find(indexed.err, '^WRONGTYPE') then return indexed end
return 0
