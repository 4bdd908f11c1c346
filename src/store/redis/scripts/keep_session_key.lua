-- Keeps a login's session key with the user's live token.
--
-- KEYS[1]  the token
-- ARGV[1]  the session key (field `sk`)
-- Returns  1 when KEYS[1] is a live token (the key is kept), 0 when it is not.
-- Invariant: only a token (a hash with `ctime`) is written; a key of another type is no token
-- (WRONGTYPE), any other refusal is returned as the error it is, never taken to mean "no such
-- token", which would issue a new one.
local live = redis.pcall('HEXISTS', KEYS[1], 'ctime')
if type(live) == 'table' and not string.find(live.err, '^WRONGTYPE') then return live end
if live ~= 1 then return 0 end
redis.call('HSET', KEYS[1], 'sk', ARGV[1])
return 1
