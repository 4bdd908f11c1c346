'use strict'

// The bridge from the native side to the application's `options.userStore`: the store's
// methods as the one function the native side calls.

const { describe, USER_STORE_OPTIONAL_METHODS } = require('./options.js')
const { OUTCOMES } = require('./sql-user-stores.js')

/**
 * `(call, userId, profile)`, the profile as JSON, resolving with the outcome as JSON:
 * `{ answer }` (the optional methods, which resolve with nothing, answer true; a store without
 * one does nothing for it), with `refused` when the table refused the profile values (known
 * of the shipped SQL adapters' methods only, through `OUTCOMES`), or `{ failed, code }` when
 * the method threw or rejected: `failed` is its message (the detail), `code` its error's
 * `code` or `name` (the public message), when it is a short word. `hasUser` or `addUser`
 * resolving with anything but a boolean fails, so that a store answering `1` or a row is
 * found at once.
 */
function userStoreCall(store) {
  const answer = async (call, userId, profile) => {
    const method = store[call]
    // The shipped adapter's own method (not one the application put in its place).
    const outcomes = typeof method === 'function' ? method[OUTCOMES] : undefined
    if (USER_STORE_OPTIONAL_METHODS.includes(call)) {
      if (method == null) return { answer: true }
      if (call === 'ready') {
        await store.ready()
        return { answer: true }
      }
      if (outcomes !== undefined) return { answer: true, refused: (await outcomes(userId, JSON.parse(profile))).refused }
      await store[call](userId, JSON.parse(profile))
      return { answer: true }
    }
    if (call === 'addUser' && outcomes !== undefined) {
      const { added, refused } = await outcomes(userId, JSON.parse(profile))
      return { answer: added, refused }
    }
    const answer = await (call === 'addUser' ? store.addUser(userId, JSON.parse(profile)) : store.hasUser(userId))
    if (typeof answer !== 'boolean') return { failed: `resolved with ${describe(answer)}, not a boolean` }
    return { answer }
  }
  const publicCode = (value) =>
    (typeof value === 'string' || typeof value === 'number') && /^[A-Za-z0-9_.-]{1,64}$/.test(String(value)) ? String(value) : undefined
  return async (call, userId, profile) => {
    try {
      return JSON.stringify(await answer(call, userId, profile))
    } catch (err) {
      const name = err?.name === 'Error' ? undefined : err?.name
      const failed = err instanceof Error ? String(err.message) : typeof err === 'string' ? err : `threw ${describe(err)}`
      return JSON.stringify({ failed, code: publicCode(err?.code) ?? publicCode(name) })
    }
  }
}

module.exports = { userStoreCall }
