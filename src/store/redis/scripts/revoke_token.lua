-- Deletes a token.
--
-- KEYS[1]  the token
-- Returns  1 when KEYS[1] was a token and is deleted, 0 otherwise.
-- Invariant: only a token (a hash with `ctime`) is deleted; other keys are left alone. A key of
-- another type is no token (WRONGTYPE), any other refusal is returned as the error it is.
local live = redis.pcall('HEXISTS', KEYS[1], 'ctime')
if type(live) == 'table' and not string.find(live.err, '^WRONGTYPE') then return live end
if live ~= 1 then return 0 end
return redis.call('DEL', KEYS[1])
