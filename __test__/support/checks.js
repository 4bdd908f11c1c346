'use strict'

// Token checks as a busy backend makes them, for the validation-cache tests: back to back,
// each from its own macrotask, observed through the instance's diagnostics logger.

const { setImmediate: nextMacrotask } = require('node:timers/promises')

/** Whether diagnostics events include a check answered from the validation cache. */
const answeredFromMemory = (events) => events.some((event) => event.step === 'session.cached')

/**
 * Checks `token` until the instance answers a check from its validation cache (the events
 * are those its `options.logger` collects); resolves with how many checks that took.
 */
async function warmToken(auth, events, token, deadlineMs = 5000) {
  const deadline = Date.now() + deadlineMs
  for (let checks = 1; ; checks++) {
    events.length = 0
    await auth.isTokenValid(token)
    if (answeredFromMemory(events)) return { checks }
    if (Date.now() > deadline) throw new Error(`no check was answered from memory within ${deadlineMs} ms`)
    await nextMacrotask()
  }
}

/**
 * Checks `token` back to back until a check rejects; resolves with `{ rejectedAt, code,
 * validated, lastValidatedAt }`: when (ms since the epoch) the first rejecting check began,
 * its code, how many checks validated before it and when the last of them began.
 */
async function watchToken(auth, token, deadlineMs = 5000) {
  const deadline = Date.now() + deadlineMs
  let lastValidatedAt
  for (let validated = 0; ; validated++) {
    const began = Date.now()
    try {
      await auth.isTokenValid(token)
    } catch (err) {
      return { rejectedAt: began, code: err.code, validated, lastValidatedAt }
    }
    lastValidatedAt = began
    if (began > deadline) throw new Error(`the token still validated after ${deadlineMs} ms`)
    await nextMacrotask()
  }
}

module.exports = { answeredFromMemory, warmToken, watchToken }
