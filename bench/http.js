'use strict'

// The HTTP workload: a Fastify app (bench/http-server.js) in one process, autocannon
// (bench/http-load.js) in another, as users run them. A shared machine's speed drifts by
// tens of percent within seconds, far more than the few percent a check costs, so the
// routes are loaded in short slices, and every slice of a checking route is bracketed by
// slices of the open route: its cost is what it loses against the mean of the open slices
// just before and just after it (which cancels a steady drift), and the cost reported is the
// median over rounds.

const { execFileSync, fork } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

// The routes of bench/http-server.js and what each checks. Every path has the same length,
// as `/open` and `/auth` had when the performance issue measured them: a longer path alone
// costs about 2 % of this server's throughput (parsing and routing, in the server and in the
// load generator), which would be charged to the check.
const ROUTES = [
  { route: '/open', check: 'none (hello world)' },
  { route: '/wait', check: 'none: reads the header, awaits a settled promise' },
  { route: '/auth', check: 'await auth.isTokenValid(token)' },
  { route: '/midw', check: 'auth.middleware()' },
  { route: '/plug', check: 'auth.fastifyPlugin() (onRequest)' },
  { route: '/info', check: 'await auth.verifyToken(token)' },
]

// `subscribed`: a handler on every event of every mpauthx diagnostics channel in the server, as
// a tracer would have; the channels cost nothing measurable without one.
function startServer({ redisUrl, wechatApiBase, dbPath, users, subscribed = false }, launcher = {}) {
  const args = [redisUrl, wechatApiBase, dbPath, String(users), subscribed ? 'subscribed' : 'quiet']
  const child = fork(path.join(__dirname, 'http-server.js'), args, {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    ...launcher,
  })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      if (out.includes('\n')) resolve({ child, ...JSON.parse(out) })
    })
    child.once('exit', (code) => reject(new Error(`the HTTP bench server exited with ${code}`)))
  })
}

/** Asks a child process and resolves with its next message. */
function ask(child, message) {
  return new Promise((resolve, reject) => {
    const exited = (code) => reject(new Error(`a bench process exited with ${code}`))
    child.once('exit', exited)
    child.once('message', (answer) => {
      child.off('exit', exited)
      resolve(answer)
    })
    child.send(message)
  })
}

/** The order statistics bracketing the median with about 95 % confidence (n ≥ 6). */
const medianInterval = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const k = Math.max(0, Math.floor(sorted.length / 2 - 0.98 * Math.sqrt(sorted.length)))
  return [sorted[k], sorted[sorted.length - 1 - k]]
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/**
 * Loads the routes in rounds of slices of `seconds`: open, check A, open, check B, open,
 * check C, open (the checks in a rotated order). Resolves with one row per route: median
 * req/s, p50/p99 of its median slice, the server's CPU µs per request, and `costPercent`,
 * the median of its bracketed losses against `/open`.
 */
async function httpWorkload({ redisUrl, wechatApiBase, dbPath, users = 16, connections = 64, seconds, rounds }) {
  const server = await startServer({ redisUrl, wechatApiBase, dbPath, users })
  const loader = fork(path.join(__dirname, 'http-load.js'), { stdio: 'inherit' })
  const slices = Object.fromEntries(ROUTES.map(({ route }) => [route, []]))
  const losses = Object.fromEntries(ROUTES.map(({ route }) => [route, []]))
  const slice = async (route) => {
    const cpuBefore = await ask(server.child, 'cpu')
    const url = `http://127.0.0.1:${server.port}${route}`
    const result = await ask(loader, { url, tokens: server.tokens, connections, seconds })
    const cpuAfter = await ask(server.child, 'cpu')
    const cpuSeconds = (cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system) / 1e6
    result.serverCpuUsPerRequest = (cpuSeconds * 1e6) / result.calls
    slices[route].push(result)
    return result
  }
  try {
    const checks = ROUTES.slice(1).map(({ route }) => route)
    for (let round = 0; round < rounds; round++) {
      let before = await slice('/open')
      for (let i = 0; i < checks.length; i++) {
        const route = checks[(i + round) % checks.length]
        const checked = await slice(route)
        const after = await slice('/open')
        losses[route].push((1 - (2 * checked.perSecond) / (before.perSecond + after.perSecond)) * 100)
        before = after
      }
      process.stderr.write(`HTTP round ${round + 1}/${rounds}\n`)
    }
  } finally {
    loader.disconnect()
    server.child.disconnect()
    await new Promise((resolve) => server.child.once('exit', resolve))
  }
  return ROUTES.map(({ route, check }) => {
    const perSecond = median(slices[route].map((result) => result.perSecond))
    const typical = slices[route].find((result) => result.perSecond === perSecond) ?? slices[route][0]
    return {
      name: `HTTP ${route}`,
      route,
      check,
      inFlight: connections,
      calls: slices[route].reduce((sum, result) => sum + result.calls, 0),
      perSecond,
      p50Ms: typical.p50Ms,
      p99Ms: typical.p99Ms,
      serverCpuUsPerRequest: median(slices[route].map((result) => result.serverCpuUsPerRequest)),
      costPercent: route === '/open' ? 0 : median(losses[route]),
      costIntervalPercent: route === '/open' ? [0, 0] : medianInterval(losses[route]),
      lossesPercent: losses[route].map((loss) => Math.round(loss * 10) / 10),
    }
  })
}

/** Whether `valgrind` can be run here. */
function haveValgrind() {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/**
 * The same routes with the server under callgrind, which counts the instructions the server
 * process executes (all its threads) rather than timing them: the count for the same work is
 * nearly the same from one run to the next and from a busy machine to a quiet one, where
 * req/s on a shared machine drifts by tens of percent. Every route is first warmed up (so that
 * V8 has compiled it: two passes), then loaded with `requests` requests per round, the counters zeroed
 * before and dumped after; a round's count includes whatever V8 did meanwhile (a GC, a late
 * recompilation: a round of 120–170k instructions per request against 64k), so the median
 * over rounds is reported. (Forcing a full collection before each round instead made V8 drop
 * compiled code, and every route cost four times as much.) For a server that spends its core on
 * requests, throughput is inversely proportional to instructions per request, so a route's
 * cost is `1 - open / route`. Resolves with `null` where valgrind is not installed.
 */
async function instructionWorkload({
  redisUrl,
  wechatApiBase,
  dbPath,
  users = 16,
  connections = 16,
  requests,
  rounds,
  subscribed = false,
}) {
  if (!haveValgrind()) return null
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-callgrind-'))
  const server = await startServer(
    { redisUrl, wechatApiBase, dbPath, users, subscribed },
    {
      execPath: 'valgrind',
      // `all-non-file`: V8 writes the code it runs at run time, which valgrind must retranslate.
      // `--single-threaded`: V8 compiles and collects garbage on the JS thread instead of on
      // helper threads, whose share of a round varies by several times from one to the next.
      execArgv: [
        '-q',
        '--tool=callgrind',
        '--smc-check=all-non-file',
        `--callgrind-out-file=${dir}/count`,
        process.execPath,
        '--single-threaded',
      ],
    },
  )
  const loader = fork(path.join(__dirname, 'http-load.js'), { stdio: 'inherit' })
  const control = (...args) => execFileSync('callgrind_control', [...args, String(server.child.pid)], { stdio: 'ignore' })
  const load = (route, amount) =>
    ask(loader, { url: `http://127.0.0.1:${server.port}${route}`, tokens: server.tokens, connections, amount })
  const counts = Object.fromEntries(ROUTES.map(({ route }) => [route, []]))
  try {
    // Two passes over every route first, so that V8 has compiled what the routes run.
    for (let pass = 0; pass < 2; pass++) for (const { route } of ROUTES) await load(route, requests)
    for (let round = 0; round < rounds; round++) {
      for (const { route } of ROUTES) {
        control('--zero')
        const { calls } = await load(route, requests)
        control('--dump')
        const [dump] = fs.readdirSync(dir).filter((name) => name.startsWith('count.'))
        const text = fs.readFileSync(path.join(dir, dump), 'utf8')
        fs.rmSync(path.join(dir, dump))
        counts[route].push(Number(text.match(/^(?:summary|totals): (\d+)/m)[1]) / calls)
      }
      process.stderr.write(`instruction round ${round + 1}/${rounds}\n`)
    }
  } finally {
    loader.disconnect()
    server.child.disconnect()
    await new Promise((resolve) => server.child.once('exit', resolve))
    fs.rmSync(dir, { recursive: true, force: true })
  }
  const open = median(counts['/open'])
  return ROUTES.map(({ route, check }) => ({
    route,
    check,
    instructionsPerRequest: median(counts[route]),
    rounds: counts[route].map(Math.round),
    costPercent: route === '/open' ? 0 : (1 - open / median(counts[route])) * 100,
  }))
}

module.exports = { httpWorkload, instructionWorkload, ROUTES }
