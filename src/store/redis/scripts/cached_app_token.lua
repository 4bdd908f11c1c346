-- Reads the app's cached WeChat access token with its seconds left, in one step.
--
-- KEYS[1]  `mpauthx|access_token|<appId>|current`
-- Returns  {token, TTL in seconds}, or false when none is cached.
local token = redis.call('GET', KEYS[1])
if not token then return false end
return {token, redis.call('TTL', KEYS[1])}
