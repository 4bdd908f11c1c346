'use strict'

// `npm run bench` keeps working: a quick run reports every workload and every check. No
// number it prints decides anything here; timing is the benchmark's business, not a test's.

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { test } = require('node:test')
const { promisify } = require('node:util')

const { postgresMissing } = require('./support/sql-servers')

test('a quick benchmark run prints the table and writes every workload to JSON', async () => {
  const script = path.join(__dirname, '..', 'bench', 'run.js')
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--quick'], { timeout: 360_000 })
  assert.match(stdout, /\| workload \| in flight \| calls\/s \| p50 ms \| p99 ms \| peak RSS MiB \|/)
  assert.match(stdout, /napi boundary: one no-op async call every [\d.]+ µs/)
  const results = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'bench', 'results-quick.json'), 'utf8'))
  assert.deepEqual(
    results.rows.map((row) => row.name),
    [
      'napi no-op async call',
      'redis-benchmark -c 64 EXISTS',
      'isTokenValid, 64 calls in one tick',
      'isTokenValid, one at a time',
      'authorize, new user',
      'authorize, returning user',
      'refreshToken',
      'authorize, returning user, one at a time, empty Redis',
      'authorize, returning user, one at a time, 500k other keys',
      'isTokenValid, each call in its own callback',
      'isTokenValid, each call in its own callback, validationCacheSize 0',
      'isTokenValid, first check of each live token, own callback',
      'isTokenValid, first check of each live token, own callback, validationCacheSize 0',
      'isTokenValid, made-up tokens, own callback',
      // Where PostgreSQL is installed (CI installs it).
      ...(postgresMissing() === null ? ['authorize, new user, users in PostgreSQL'] : []),
    ],
  )
  for (const row of results.rows) {
    for (const field of ['perSecond', 'p50Ms', 'p99Ms']) assert.ok(row[field] > 0, `${row.name} ${field}`)
  }
  assert.deepEqual(
    results.http.map((row) => row.route),
    ['/open', '/wait', '/auth', '/midw', '/plug', '/info'],
  )
  for (const row of results.http) assert.ok(row.perSecond > 0 && Number.isFinite(row.costPercent), row.route)
  assert.match(stdout, /\| HTTP route \(Fastify, autocannon -c 64\): check \|/)
  // Under callgrind where valgrind is installed (CI installs it), else reported as missing.
  if (results.instructions === null) {
    assert.match(stdout, /valgrind not found/)
  } else {
    assert.deepEqual(
      results.instructions.map((row) => row.route),
      ['/open', '/wait', '/auth', '/midw', '/plug', '/info'],
    )
    for (const row of results.instructions) assert.ok(row.instructionsPerRequest > 0, row.route)
    assert.match(stdout, /\| HTTP route, server under callgrind \(autocannon -c 16\) \|/)
    // And with a subscriber on every diagnostics channel, against the run without.
    assert.deepEqual(
      results.subscribed.map((row) => row.route),
      results.instructions.map((row) => row.route),
    )
    for (const row of results.subscribed) assert.ok(row.instructionsPerRequest > 0, row.route)
    assert.match(stdout, /\| HTTP route, server under callgrind, a subscriber on every diagnostics channel \|/)
  }
  assert.equal(results.checks.length, results.instructions === null ? 10 : 14)
  assert.ok(results.checks.every((check) => typeof check.met === 'boolean' && Number.isFinite(check.value)))
})
