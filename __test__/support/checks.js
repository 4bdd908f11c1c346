'use strict'

// Token checks as a busy backend makes them, for the validation-cache tests: back to back,
// each from its own macrotask, observed through the instance's diagnostics logger.

const { fork } = require('node:child_process')
const path = require('node:path')
const { setImmediate: nextMacrotask } = require('node:timers/promises')

/** Whether diagnostics events include a check answered from the validation cache. */
const answeredFromMemory = (events) => events.some((event) => event.step === 'token.cached')

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

/**
 * A backend in another process (check-worker.js) on the deployment `settings` describe
 * (`{ dbFile, options }`, and the app and sku unless given), driven by messages: `warm(token)`
 * and `watch(token)` resolve with what `warmToken` and `watchToken` report there. `env` is the
 * process's environment (this one's by default).
 */
async function startWorker(settings, env) {
  const { APP_ID, APP_SECRET, SKU } = require('./harness')
  const child = fork(path.join(__dirname, 'check-worker.js'), { env: env ?? process.env })
  const ask = (message) =>
    new Promise((resolve, reject) => {
      child.once('message', (answer) => (answer.error ? reject(new Error(answer.error)) : resolve(answer)))
      child.send(message)
    })
  await ask({ appId: APP_ID, appSecret: APP_SECRET, sku: SKU, ...settings })
  return {
    warm: (token) => ask({ warm: token }),
    watch: (token) => ask({ watch: token }),
    stop: () => {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.disconnect()
      return exited
    },
  }
}

/** Whether `promise` resolves (true) or rejects with 6007 (false); other failures throw. */
const validates = (promise) =>
  promise.then(
    () => true,
    (err) => {
      if (err.code === 6007) return false
      throw err
    },
  )

module.exports = { answeredFromMemory, startWorker, validates, warmToken, watchToken }
