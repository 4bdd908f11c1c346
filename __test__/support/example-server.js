'use strict'

// Runs an example server as its README says, in a child process: it must print
// `listening on <url>` once it accepts requests.

const { spawn } = require('node:child_process')
const { after, before } = require('node:test')

const { APP_ID, APP_SECRET } = require('./harness')

/**
 * Starts `node <file>` with `env` added to this process's environment. Resolves with
 * { base, child, output(), stop() } once the server prints its address; rejects with what it
 * printed when it exits first or takes longer than `timeoutMs`.
 */
function startExample(file, env, { timeoutMs = 30_000 } = {}) {
  const child = spawn(process.execPath, [file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))

  /** Sends SIGTERM; resolves with how the process ended. */
  function stop() {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    return exited
  }

  const started = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${file} did not say where it listens within ${timeoutMs} ms: ${output}`))
    }, timeoutMs)
    child.stdout.on('data', () => {
      const match = /listening on (\S+)/.exec(output)
      if (!match) return
      clearTimeout(timer)
      resolve({ base: match[1], child, output: () => output, stop })
    })
    exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`${file} exited (${code ?? signal}) before listening: ${output}`))
    })
  })
  return started
}

/** Kills the example at once, when a test failed before stopping it. */
function killExample(server) {
  if (server && server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL')
}

/**
 * An example server started before the enclosing suite's tests and killed after them, pointed
 * at harness `h`'s Redis, WeChat stand-in and SQLite file; `env` adds to (or overrides) that.
 * The returned object gets { base, child, output, stop } once started, and has `post(path,
 * body)` (JSON) and `get(path, headers)`.
 */
function useExample(h, file, env) {
  const server = {
    post: (route, body) =>
      fetch(server.base + route, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }),
    get: (route, headers = {}) => fetch(server.base + route, { headers }),
  }
  before(async () => {
    const started = await startExample(file, {
      APP_ID,
      APP_SECRET,
      DB: h.dbFile,
      PORT: '0',
      MPAUTHX_REDIS_URL: h.redis.url,
      MPAUTHX_WECHAT_API_BASE: h.wechat.base,
      ...env,
    })
    Object.assign(server, started)
  })
  after(() => server.child && killExample(server))
  return server
}

module.exports = { startExample, useExample }
