-- Reads the WeChat session key kept with a live token.
--
-- KEYS[1]  the token
-- Returns  the session key (field `sk`), or false when KEYS[1] is not a token or keeps none.
-- Invariant: a key of another type is no token (WRONGTYPE); any other refusal is returned as
-- the error it is.
local fields = redis.pcall('HMGET', KEYS[1], 'ctime', 'sk')
if fields.err then
  if string.find(fields.err, '^WRONGTYPE') then return false end
  return fields
end
if not fields[1] then return false end
return fields[2]
