-- Reads a token's issue time and TTL. Sent over the validation cache's tracking connection, it
-- also makes Redis track the key for that client.
--
-- KEYS[1]  the token
-- Returns  {ctime, PTTL in ms} for a token, false for a key that is not one.
-- Invariant: a key of another type is no token (WRONGTYPE); any other refusal is returned as
-- the error it is.
local ctime = redis.pcall('HGET', KEYS[1], 'ctime')
if type(ctime) == 'table' then
  if string.find(ctime.err, '^WRONGTYPE') then return false end
  return ctime
end
if type(ctime) ~= 'string' then return false end
return {ctime, redis.call('PTTL', KEYS[1])}
