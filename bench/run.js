'use strict'

// `npm run bench`: the workloads of the performance issue against a private redis-server and
// a WeChat stand-in in its own process, with `redis-benchmark` as the reference in the same
// run. Prints a table and writes bench/results.json. `--quick` runs a tenth of each workload.
// Nothing here is a test: no number decides a pass or a fail.

const { execFileSync, fork } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const crypto = require('node:crypto')
const path = require('node:path')

const mpauthx = require('..')
const { startRedis } = require('../__test__/support/redis')
const { startPostgres, postgresMissing } = require('../__test__/support/sql-servers')
const { APP_ID, loginData } = require('./login-data')
const { httpWorkload, instructionWorkload } = require('./http')
const { setImmediate: nextMacrotask } = require('node:timers/promises')

const APP_SECRET = 'bench-secret'
const SKU = 'bench'
const QUICK = process.argv.includes('--quick')
const scale = (count) => (QUICK ? Math.ceil(count / 10) : count)
const RESULTS = path.join(__dirname, QUICK ? 'results-quick.json' : 'results.json')

// What mpauthx 1.3.2 did on this machine class (from the performance issue) and the targets.
const reference = {
  isTokenValid: { perSecond: 100_000, target: '≥ 2.0x redis-benchmark' },
  authorizeReturning: { perSecond: 6_200, target: '≥ 12,400/s (2x)' },
  authorizeNew: { perSecond: 850, target: '≥ 4,250/s (5x)' },
  refreshToken: { perSecond: 5_600, target: '≥ 14,000/s (2.5x)' },
  populated: { target: 'p50 ≤ 1.3x empty Redis' },
  rss: { mib: 90, target: '≤ 75–90 MiB' },
}

/** The stand-in in a child process; resolves with its base URL. */
function startStandIn() {
  const child = fork(path.join(__dirname, 'wechat-standin.js'), { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
  return new Promise((resolve, reject) => {
    child.stdout.once('data', (port) => resolve({ base: `http://127.0.0.1:${String(port).trim()}`, child }))
    child.once('exit', (code) => reject(new Error(`the WeChat stand-in exited with ${code}`)))
  })
}

/** Latencies in buckets 1% wide, from 1 µs up: percentiles within 1%, in a few KiB. */
class Histogram {
  static GROWTH = Math.log(1.01)
  counts = new Uint32Array(2048)
  total = 0
  record(ms) {
    const bucket = Math.max(0, Math.floor(Math.log(ms * 1000) / Histogram.GROWTH))
    this.counts[Math.min(bucket, this.counts.length - 1)]++
    this.total++
  }
  percentile(q) {
    let seen = 0
    for (let bucket = 0; bucket < this.counts.length; bucket++) {
      seen += this.counts[bucket]
      if (seen > q * this.total) return Math.exp((bucket + 0.5) * Histogram.GROWTH) / 1000
    }
    return NaN
  }
}

/**
 * Runs `count` calls of `op(i)` with `concurrency` in flight; resolves with calls/s, p50, p99.
 * With `ownCallback`, each call starts from a callback of its own, as the requests of a
 * server arrive (each in its own I/O callback), instead of many calls in one tick.
 */
async function measure({ concurrency, count, op, ownCallback = false }) {
  const latencies = new Histogram()
  let next = 0
  const started = performance.now()
  async function worker() {
    while (next < count) {
      if (ownCallback) await nextMacrotask()
      // Another worker may have taken the last call while this one waited.
      if (next >= count) break
      const t0 = performance.now()
      await op(next++)
      latencies.record(performance.now() - t0)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const seconds = (performance.now() - started) / 1000
  return {
    calls: count,
    perSecond: count / seconds,
    p50Ms: latencies.percentile(0.5),
    p99Ms: latencies.percentile(0.99),
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  }
}

/** `redis-benchmark -c 64 EXISTS` against the same server. */
function redisBenchmark(port, count) {
  const csv = execFileSync(
    'redis-benchmark',
    ['-h', '127.0.0.1', '-p', String(port), '-c', '64', '-n', String(count), '--csv', 'EXISTS', 'somekey'],
    { encoding: 'utf8' },
  )
  const [, row] = csv.trim().split('\n')
  const cells = row.split(',').map((cell) => cell.replace(/"/g, ''))
  return { calls: count, perSecond: Number(cells[1]), p50Ms: Number(cells[4]), p99Ms: Number(cells[6]) }
}

/** CPU seconds used so far by this process (all threads), the stand-in and redis-server. */
async function cpuSeconds(standIn, redis) {
  const own = process.cpuUsage()
  const child = await new Promise((resolve) => {
    standIn.child.once('message', resolve)
    standIn.child.send('cpu')
  })
  const info = redis.cli('INFO', 'cpu')
  const field = (name) => Number(info.match(new RegExp(`${name}:([\\d.]+)`))[1])
  return {
    node: (own.user + own.system) / 1e6,
    wechat: (child.user + child.system) / 1e6,
    redis: field('used_cpu_user') + field('used_cpu_sys'),
  }
}

function machine(redis) {
  const cpus = os.cpus()
  return {
    date: new Date().toISOString(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    redis: redis.cli('INFO', 'server').match(/redis_version:(\S+)/)?.[1],
    mode: QUICK ? 'quick (a tenth of each workload)' : 'full',
  }
}

/** Runs `work(pool)` on a private PostgreSQL with 1.3.2's `user` table, then stops it. */
async function withPostgres(work) {
  const { Pool } = require('pg')
  const server = await startPostgres()
  const pool = new Pool({ ...server.connection, max: 16 })
  try {
    await pool.query(
      'CREATE TABLE "user"("openId" text primary key not null, city text, country text, gender integer, ' +
        'language text, "nickName" text, province text)',
    )
    await work(pool)
  } finally {
    await pool.end()
    server.stop()
  }
}

/**
 * A private redis-server, the stand-in, a temporary SQLite file and an instance on them;
 * `create(options)` makes more instances on the same.
 */
async function startBench() {
  const redis = await startRedis()
  const standIn = await startStandIn()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-bench-'))
  const instances = []
  const create = (options = {}) => {
    const instance = mpauthx(APP_ID, APP_SECRET, SKU, path.join(dir, 'users.db'), null, 3600, {
      redisUrl: redis.url,
      wechatApiBase: standIn.base,
      ...options,
    })
    instances.push(instance)
    return instance
  }
  const auth = create()
  async function stop() {
    await Promise.all(instances.map((instance) => instance.close()))
    standIn.child.kill()
    await redis.stop()
    for (const tmp of [dir, redis.dir]) fs.rmSync(tmp, { recursive: true, force: true })
  }
  return { redis, standIn, auth, create, dir, stop }
}

async function main() {
  const { redis, standIn, auth, create, dir, stop } = await startBench()
  const rows = []
  const run = async (name, inFlight, workload) => {
    process.stderr.write(`${name} ...`)
    const before = await cpuSeconds(standIn, redis)
    const row = { name, inFlight, ...(await workload()) }
    const after = await cpuSeconds(standIn, redis)
    // CPU µs per call in each process: where the time of a call goes.
    row.cpuUsPerCall = {}
    for (const part of Object.keys(after)) row.cpuUsPerCall[part] = ((after[part] - before[part]) * 1e6) / row.calls
    process.stderr.write(` ${Math.round(row.perSecond)}/s\n`)
    rows.push(row)
    return row
  }
  const authorize = (openId) => auth.authorize(...loginData(openId))
  const flush = () => redis.cli('FLUSHALL')

  try {
    // First, while nothing else has run: a web server under load, as users run one.
    process.stderr.write('HTTP workload ...\n')
    const http = await httpWorkload({
      redisUrl: redis.url,
      wechatApiBase: standIn.base,
      dbPath: path.join(dir, 'http-users.db'),
      seconds: 1,
      rounds: QUICK ? 2 : 60,
    })
    const httpCost = (route) => http.find((row) => row.route === route).costPercent
    // The same routes counted in instructions, which a busy machine does not blur.
    process.stderr.write('HTTP workload under callgrind ...\n')
    const callgrind = {
      redisUrl: redis.url,
      wechatApiBase: standIn.base,
      dbPath: path.join(dir, 'http-users.db'),
      requests: QUICK ? 500 : 4000,
      rounds: QUICK ? 1 : 7,
    }
    const instructions = await instructionWorkload(callgrind)
    const instructionCost = (route) => instructions?.find((row) => row.route === route).costPercent
    // The same again with a subscriber on every diagnostics channel (as a tracer would have):
    // what tracing costs, where the run above is what it costs while nobody subscribes.
    process.stderr.write('HTTP workload under callgrind, every diagnostics channel subscribed ...\n')
    const subscribed = await instructionWorkload({ ...callgrind, subscribed: true })

    const noop = auth[Symbol.for('mpauthx.testing')].noop
    await run('napi no-op async call', 64, () => measure({ concurrency: 64, count: scale(300_000), op: noop }))
    const reference64 = await run('redis-benchmark -c 64 EXISTS', 64, async () => redisBenchmark(redis.port, scale(400_000)))

    flush()
    const tokens = []
    for (let i = 0; i < 1000; i++) tokens.push((await authorize(`oToken${i}`)).response)
    const checkWith = (instance) => (i) => instance.isTokenValid(tokens[i % tokens.length])
    const isTokenValid = await run('isTokenValid, 64 calls in one tick', 64, () =>
      measure({ concurrency: 64, count: scale(1_000_000), op: checkWith(auth) }),
    )
    await run('isTokenValid, one at a time', 1, () =>
      measure({ concurrency: 1, count: scale(10_000), op: (i) => auth.isTokenValid(tokens[i % tokens.length]) }),
    )

    flush()
    const newUsers = scale(20_000)
    const authorizeNew = await run('authorize, new user', 16, () =>
      measure({ concurrency: 16, count: newUsers, op: (i) => authorize(`oNew${i}`) }),
    )
    // Returning users come back with login data made beforehand, so that the benchmark's
    // own encryption does not count as the library's time.
    const returning = Array.from({ length: 2000 }, (_, i) => loginData(`oNew${i}`))
    const authorizeReturning = await run('authorize, returning user', 16, () =>
      measure({ concurrency: 16, count: scale(40_000), op: (i) => auth.authorize(...returning[i % returning.length]) }),
    )
    const refresh = await run('refreshToken', 16, () =>
      measure({ concurrency: 16, count: scale(40_000), op: (i) => auth.refreshToken(`oNew${i % returning.length}`) }),
    )

    flush()
    const seq = Array.from({ length: 200 }, (_, i) => loginData(`oSeq${i}`))
    for (const login of seq) await auth.authorize(...login)
    const sequential = { concurrency: 1, count: scale(3_000), op: (i) => auth.authorize(...seq[i % seq.length]) }
    const empty = await run('authorize, returning user, one at a time, empty Redis', 1, () => measure(sequential))
    redis.cli('DEBUG', 'POPULATE', '500000')
    const populated = await run('authorize, returning user, one at a time, 500k other keys', 1, () => measure(sequential))

    // The peak over the workloads 1.3.2 was measured on; the rows below come after it.
    const peakRssMiB = process.resourceUsage().maxRSS / 1024

    // Checks as a server makes them: each from its own callback, with and without the cache.
    flush()
    tokens.length = 0
    for (let i = 0; i < 1000; i++) tokens.push((await authorize(`oToken${i}`)).response)
    await run('isTokenValid, each call in its own callback', 64, () =>
      measure({ concurrency: 64, count: scale(1_000_000), op: checkWith(auth), ownCallback: true }),
    )
    const uncached = create({ validationCacheSize: 0 })
    await run('isTokenValid, each call in its own callback, validationCacheSize 0', 64, () =>
      measure({ concurrency: 64, count: scale(200_000), op: checkWith(uncached), ownCallback: true }),
    )
    // The first check of each live token: read without tracking, then again tracked so that it
    // is remembered (one round trip more than without the cache). Made-up tokens stop after
    // the first read, so they cost Redis no tracking entry.
    flush()
    const fresh = []
    for (let i = 0; i < scale(5_000); i++) fresh.push((await authorize(`oFresh${i}`)).response)
    const firstCheck = (instance) => (i) => instance.isTokenValid(fresh[i])
    await run('isTokenValid, first check of each live token, own callback', 64, () =>
      measure({ concurrency: 64, count: fresh.length, op: firstCheck(create()), ownCallback: true }),
    )
    await run('isTokenValid, first check of each live token, own callback, validationCacheSize 0', 64, () =>
      measure({ concurrency: 64, count: fresh.length, op: firstCheck(create({ validationCacheSize: 0 })), ownCallback: true }),
    )
    const hex = (bytes) => crypto.randomBytes(bytes).toString('hex')
    const forged = Array.from({ length: scale(50_000) }, () => `o${hex(14)}|${SKU}|${hex(32)}`)
    await run('isTokenValid, made-up tokens, own callback', 64, () =>
      measure({ concurrency: 64, count: forged.length, op: (i) => auth.isTokenValid(forged[i]).catch(() => {}), ownCallback: true }),
    )
    // New users with users in PostgreSQL (a private server, through the shipped adapter on a
    // `pg` Pool of 16) instead of the SQLite file; skipped where PostgreSQL is not installed.
    // Last, after the peak RSS is read: the pool and its driver are the application's memory.
    if (postgresMissing() === null) {
      await withPostgres(async (pool) => {
        const inPostgres = create({ userStore: mpauthx.userStores.postgres(pool) })
        await run('authorize, new user, users in PostgreSQL', 16, () =>
          measure({ concurrency: 16, count: newUsers, op: (i) => inPostgres.authorize(...loginData(`oPg${i}`)) }),
        )
      })
    } else {
      process.stderr.write(`skipped: authorize with users in PostgreSQL (${postgresMissing()})\n`)
    }
    const checks = [
      check('HTTP isTokenValid: cost against the open route', httpCost('/auth'), 5, ' %', '≤ 5 %', true),
      check('HTTP middleware(): cost against the open route', httpCost('/midw'), 5, ' %', '≤ 5 %', true),
      check('HTTP fastifyPlugin(): cost against the open route', httpCost('/plug'), 5, ' %', '≤ 5 %', true),
      check('HTTP verifyToken: cost against the open route', httpCost('/info'), 10, ' %', '≤ 10 %', true),
      ...(instructions
        ? [
            check('HTTP isTokenValid: cost in instructions per request', instructionCost('/auth'), 5, ' %', '≤ 5 %', true),
            check('HTTP middleware(): cost in instructions per request', instructionCost('/midw'), 5, ' %', '≤ 5 %', true),
            check('HTTP fastifyPlugin(): cost in instructions per request', instructionCost('/plug'), 5, ' %', '≤ 5 %', true),
            check('HTTP verifyToken: cost in instructions per request', instructionCost('/info'), 10, ' %', '≤ 10 %', true),
          ]
        : []),
      check(
        'isTokenValid, 64 calls in one tick / redis-benchmark',
        isTokenValid.perSecond / reference64.perSecond,
        2.0,
        'x',
        reference.isTokenValid.target,
      ),
      check('authorize, returning user', authorizeReturning.perSecond, 12_400, '/s', reference.authorizeReturning.target),
      check('authorize, new user', authorizeNew.perSecond, 4_250, '/s', reference.authorizeNew.target),
      check('refreshToken', refresh.perSecond, 14_000, '/s', reference.refreshToken.target),
      check('one-at-a-time login p50, 500k keys / empty', populated.p50Ms / empty.p50Ms, 1.3, 'x', reference.populated.target, true),
      check('peak RSS', peakRssMiB, reference.rss.mib, ' MiB', reference.rss.target, true),
    ]
    const results = { machine: machine(redis), http, instructions, subscribed, rows, checks, reference }
    fs.writeFileSync(RESULTS, JSON.stringify(results, null, 2) + '\n')
    print(results)
    console.log(`\nwritten to ${path.relative(process.cwd(), RESULTS)}`)
  } finally {
    await stop()
  }
}

function check(name, value, bound, unit, target, atMost = false) {
  return { name, value, target, met: atMost ? value <= bound : value >= bound, unit }
}

function print({ machine, http, instructions, subscribed, rows, checks }) {
  const fmt = (n, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
  console.log(
    `\n${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}, Redis ${machine.redis}, ${machine.mode}\n`,
  )
  console.log(
    '| HTTP route (Fastify, autocannon -c 64): check | req/s (median of slices) | p50 ms | p99 ms | server CPU µs/request | cost against /open (median of bracketed slices) |',
  )
  console.log('|---|---:|---:|---:|---:|---:|')
  for (const row of http) {
    const [low, high] = row.costIntervalPercent
    const cost = row.route === '/open' ? '—' : `${fmt(row.costPercent, 1)} % (95 % CI ${fmt(low, 1)} to ${fmt(high, 1)} %)`
    console.log(
      `| \`${row.route}\`: ${row.check} | ${fmt(row.perSecond)} | ${fmt(row.p50Ms)} | ${fmt(row.p99Ms)} | ${fmt(row.serverCpuUsPerRequest, 1)} | ${cost} |`,
    )
  }
  if (instructions) {
    console.log(
      '\n| HTTP route, server under callgrind (autocannon -c 16) | instructions per request (median of rounds) | rounds | cost against /open |',
    )
    console.log('|---|---:|---|---:|')
    for (const row of instructions) {
      const cost = row.route === '/open' ? '—' : `${fmt(row.costPercent, 1)} %`
      console.log(
        `| \`${row.route}\`: ${row.check} | ${fmt(row.instructionsPerRequest)} | ${row.rounds.map((n) => fmt(n)).join(', ')} | ${cost} |`,
      )
    }
    if (subscribed) {
      console.log(
        '\n| HTTP route, server under callgrind, a subscriber on every diagnostics channel | instructions per request | rounds | cost against /open | against the run above |',
      )
      console.log('|---|---:|---|---:|---:|')
      for (const row of subscribed) {
        const quiet = instructions.find((other) => other.route === row.route).instructionsPerRequest
        const cost = row.route === '/open' ? '—' : `${fmt(row.costPercent, 1)} %`
        const more = `${row.instructionsPerRequest >= quiet ? '+' : ''}${fmt(row.instructionsPerRequest - quiet)}`
        console.log(
          `| \`${row.route}\`: ${row.check} | ${fmt(row.instructionsPerRequest)} | ${row.rounds.map((n) => fmt(n)).join(', ')} | ${cost} | ${more} |`,
        )
      }
    }
  } else {
    console.log('\n(valgrind not found: no instruction counts)')
  }
  console.log()
  console.log('| workload | in flight | calls/s | p50 ms | p99 ms | peak RSS MiB | CPU µs/call: Node process, WeChat stand-in, Redis |')
  console.log('|---|---:|---:|---:|---:|---:|---|')
  for (const row of rows) {
    const rss = row.peakRssMiB === undefined ? '—' : fmt(row.peakRssMiB)
    const cpu = row.cpuUsPerCall
    const split = `${fmt(cpu.node, 1)}, ${fmt(cpu.wechat, 1)}, ${fmt(cpu.redis, 1)}`
    console.log(
      `| ${row.name} | ${row.inFlight} | ${fmt(row.perSecond)} | ${fmt(row.p50Ms, 3)} | ${fmt(row.p99Ms, 3)} | ${rss} | ${split} |`,
    )
  }
  const noop = rows[0]
  console.log(
    `\nnapi boundary: one no-op async call every ${fmt(1e6 / noop.perSecond, 2)} µs at 64 in flight ` +
      `(${fmt(noop.cpuUsPerCall.node, 1)} µs of CPU across the process's threads)`,
  )
  console.log('\n| check | value | target | met |')
  console.log('|---|---:|---|---|')
  for (const c of checks) {
    const digits = c.unit === 'x' || c.unit === ' %' ? (c.unit === 'x' ? 2 : 1) : 0
    console.log(`| ${c.name} | ${fmt(c.value, digits)}${c.unit} | ${c.target} | ${c.met ? 'yes' : 'no'} |`)
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
}

module.exports = { startBench, loginData, measure }
