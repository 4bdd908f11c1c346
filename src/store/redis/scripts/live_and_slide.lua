-- Checks a token for `slidingTtl`, and gives it its whole TTL back in the second half of it.
--
-- KEYS[1]  the token
-- KEYS[2]  (optional) its index, extended only while it still names KEYS[1]
-- KEYS[3]  (optional, with KEYS[2]) the record of its registered user, `mpauthx|user|…`
-- ARGV[1]  the token's whole TTL in seconds
-- ARGV[2]  the window in ms: a token with less left is extended (half its TTL; 0 only checks)
-- ARGV[3]  the record's TTL in seconds (`registrationTtl`, never less than the token's)
-- Returns  0 when KEYS[1] is not a live token, 1 when live and not extended, 2 when extended.
-- Invariants: the condition is checked here, in Redis, so concurrent checks extend a token once
-- per half-TTL, and the record never expires before its token. A key of another type is no
-- token (WRONGTYPE), any other refusal is returned as the error it is. In a Cluster the index
-- and the record live in other slots: KEYS[2] and KEYS[3] are left out, and they go through
-- slide_index.lua and EXPIRE.
local live = redis.pcall('HEXISTS', KEYS[1], 'ctime')
if type(live) == 'table' and not string.find(live.err, '^WRONGTYPE') then return live end
if live ~= 1 then return 0 end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 or pttl >= tonumber(ARGV[2]) then return 1 end
redis.call('EXPIRE', KEYS[1], ARGV[1])
if KEYS[2] then
  local indexed = redis.pcall('GET', KEYS[2])
  if indexed == KEYS[1] then
    redis.call('EXPIRE', KEYS[2], ARGV[1])
  elseif type(indexed) == 'table' and not string.find(indexed.err, '^WRONGTYPE') then
    return indexed
  end
end
if KEYS[3] then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
return 2
