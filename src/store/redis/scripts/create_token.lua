-- Writes a new token with its TTL in one command.
--
-- KEYS[1]  the token, `<userId>|<sku>|<64 hex>`
-- ARGV[1]  its issue time, ms since the epoch (field `ctime`)
-- ARGV[2]  its TTL in seconds
-- ARGV[3]  the WeChat session key kept with it (field `sk`), '' for none
-- Returns  1.
-- Invariants: no token ever exists without a TTL, and a cluster client can retry the write
-- after a failover like any single-key command. Where Redis can tell (7.0 and later), a user
-- not allowed to set the TTL writes nothing at all.
if redis.acl_check_cmd and not redis.acl_check_cmd('expire', KEYS[1], ARGV[2]) then
  return redis.error_reply('NOPERM this user may not set a TTL (EXPIRE)')
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'ctime', ARGV[1], 'sk', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'ctime', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
