'use strict'

// The parts of a token `<userId>|<sku>|<64 hex>`, read as src/token.rs reads them; here in
// JavaScript because every authenticated request needs them and a call into the binding
// would cost more than the whole check answered from the validation cache. The user id may
// be an openId or a unionId; the public name of its reader stays 1.3.2's `extractOpenId`.

/** The part before the first `|`, or `''` when there is none. */
function extractUserId(token) {
  const end = token.indexOf('|')
  return end < 0 ? '' : token.slice(0, end)
}

/** The middle part of a token of exactly three `|`-separated parts, else `null`. */
function extractSku(token) {
  const start = token.indexOf('|')
  if (start < 0) return null
  const end = token.indexOf('|', start + 1)
  if (end < 0 || token.includes('|', end + 1)) return null
  return token.slice(start + 1, end)
}

module.exports = { extractUserId, extractSku }
