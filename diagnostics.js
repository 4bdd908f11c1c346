'use strict'

// Opt-in diagnostics: `options.logger`, or `DEBUG=mpauthx` (the `debug` package's syntax) for
// lines on stderr. Events name steps, timings and status codes; they never carry a token,
// user id, code, session key, user data or the app secret.

const { statusCode } = require('./constants.js')

/**
 * The logger of an instance, or `null` when diagnostics are off.
 * @param {((event: object) => void) | undefined} logger `options.logger`
 * @param {string | undefined} debug the `DEBUG` environment variable
 */
function createLogger(logger, debug) {
  if (logger !== undefined) return guard(logger)
  if (debugEnabled('mpauthx', debug)) return guard(writeDebugLine)
  return null
}

// A logger that throws must not turn a login into a failure.
function guard(logger) {
  return (event) => {
    try {
      logger(event)
    } catch {
      // The event is lost; the call it describes goes on.
    }
  }
}

// `DEBUG` lists names and `*` wildcards separated by commas or spaces; `-name` excludes.
function debugEnabled(name, debug) {
  if (!debug) return false
  let enabled = false
  for (const pattern of debug.split(/[\s,]+/).filter(Boolean)) {
    const exclude = pattern.startsWith('-')
    const glob = exclude ? pattern.slice(1) : pattern
    const regex = new RegExp('^' + glob.split('*').map(escapeRegExp).join('.*') + '$')
    if (regex.test(name)) {
      if (exclude) return false
      enabled = true
    }
  }
  return enabled
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

function writeDebugLine(event) {
  const status = event.statusCode === undefined ? '' : ` [${event.statusCode}]`
  process.stderr.write(
    `${new Date(event.time).toISOString()} mpauthx ${event.method} ${event.step} +${event.elapsedMs.toFixed(1)}ms ${event.detail}${status}\n`,
  )
}

/**
 * Reports the native steps of a call and its outcome.
 * @param {(event: object) => void} log
 * @param {string} method
 * @param {number} started `performance.now()` when the call began
 * @param {{ statusCode: number, message: string, detail?: string | null, steps?: Array<{ name: string, elapsedMs: number, detail: string }> } | undefined} reply
 */
function reportCall(log, method, started, reply) {
  // Events are reported when the call ends; `time` says when each step happened.
  const elapsedMs = performance.now() - started
  const startedAt = Date.now() - elapsedMs
  for (const step of reply?.steps ?? []) {
    log({ method, step: step.name, time: startedAt + step.elapsedMs, elapsedMs: step.elapsedMs, detail: step.detail })
  }
  const code = reply?.statusCode ?? statusCode.unknownError
  // A failure's detail says what failed and where; its message is what clients see.
  const detail = code === statusCode.success ? 'OK' : reply?.detail || reply?.message || 'internal error in mpauthx'
  log({ method, step: 'done', time: startedAt + elapsedMs, elapsedMs, detail, statusCode: code })
}

module.exports = { createLogger, debugEnabled, reportCall }
