-- Deletes a string key only while it still holds a given value.
--
-- KEYS[1]  the key: the app token's lock, the cached app token, or a user's index
-- ARGV[1]  the value it must still hold: the lock's owner, the app token WeChat refused, or
--          the token the index named when it was revoked
-- Returns  1 when the key was deleted, 0 when it holds something else or nothing.
-- Invariant: a lock is released only by its holder, a cached app token is dropped only while it
-- is still the refused one, an index only while it still names the revoked token.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
