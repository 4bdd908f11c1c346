-- Makes a new token the user's current one: replaces the index by compare-and-set, and deletes
-- the token it named.
--
-- KEYS[1]  the index, `mpauthx|index|<sku>|<userId>`
-- KEYS[2]  (optional) the token the index names now, deleted once the index is replaced
-- KEYS[3]  (optional, with KEYS[2]; a refresh) the new token, which takes KEYS[2]'s session key
-- ARGV[1]  what the index must still hold, '' for nothing
-- ARGV[2]  the new token
-- ARGV[3]  the index's TTL in seconds (the token's)
-- Returns  1 when the index was replaced, 0 when it held something else (a concurrent caller
--          won: the caller deletes its own new token, which nobody saw).
-- Invariants: the index is only ever replaced by compare-and-set. KEYS[2] is deleted only if it
-- is a token (a hash with `ctime`), so a stray or tampered index never deletes a key of the
-- application's; a key of another type is no token (WRONGTYPE), any other refusal is returned
-- as the error it is. In a Cluster the keys live in different slots: KEYS[2] and KEYS[3] are
-- left out, the session key is read beforehand, and the old token goes through
-- revoke_token.lua, which makes the same check.
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
local old_is_token = false
if KEYS[2] then
  local live = redis.pcall('HEXISTS', KEYS[2], 'ctime')
  if type(live) == 'table' then
    if not string.find(live.err, '^WRONGTYPE') then return live end
  else
    old_is_token = live == 1
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if old_is_token then
  local sk = KEYS[3] and redis.call('HGET', KEYS[2], 'sk')
  if sk and redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HSET', KEYS[3], 'sk', sk) end
  redis.call('DEL', KEYS[2])
end
return 1
