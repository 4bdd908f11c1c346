'use strict'

// Starts a private redis-server on a free loopback port for one test file, so that tests
// never touch a Redis the user runs, and talks to it through redis-cli.

const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

async function waitUntil(check, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * Starts redis-server; `password` turns on requirepass, `args` are more server arguments.
 * Returns { port, url, cli(...args), stop(), start() }: stop/start keep the same port.
 */
async function startRedis({ password, args: extraArgs = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-redis-'))
  let port = await freePort()
  const auth = password ? ['-a', password, '--no-auth-warning'] : []
  let child = null

  const cli = (...args) =>
    execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...auth, ...args.map(String)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).replace(/\n$/, '')

  const ping = () => {
    try {
      return cli('PING') === 'PONG'
    } catch {
      return false
    }
  }

  async function start() {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]
    if (password) args.push('--requirepass', password, '--masterauth', password)
    args.push(...extraArgs)
    child = spawn('redis-server', args, { stdio: 'ignore' })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.exited = exited
    let gone = false
    exited.then(() => (gone = true))
    // A server that exits at once could not bind: another process took the port (or, in a
    // cluster, the bus port 10000 above it) after freePort saw it free.
    await waitUntil(() => gone || ping(), `redis-server on port ${port}`)
    if (gone) throw Object.assign(new Error(`redis-server could not start on port ${port}`), { portTaken: true })
  }

  async function stop() {
    if (!child) return
    const current = child
    child = null
    current.kill('SIGKILL')
    await current.exited
  }

  // The first start moves to another free port when the one picked was taken meanwhile; later
  // starts (after stop()) keep the port, as tests of a restarted Redis expect.
  for (let attempt = 1; ; attempt++) {
    try {
      await start()
      break
    } catch (err) {
      if (!err.portTaken || attempt === 5) throw err
      port = await freePort()
    }
  }
  return { port, url: `redis://127.0.0.1:${port}`, cli, start, stop, dir }
}

module.exports = { startRedis, freePort, waitUntil }
