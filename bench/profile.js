'use strict'

// One workload of the benchmark, long enough to profile the Node process:
//   perf record -F 999 -g -o perf.data -- node --perf-basic-prof bench/profile.js returning
//   perf report -i perf.data --no-children --sort dso,symbol
// Workloads: returning (authorize of a returning user), new, refresh, check (isTokenValid).
// Build with symbols first: CARGO_PROFILE_RELEASE_STRIP=false npm run build

const { startBench, loginData, measure } = require('./run')

const workload = process.argv[2] ?? 'returning'
const count = Number(process.argv[3] ?? 100_000)

async function main() {
  const { auth, stop } = await startBench()
  const users = 2000
  const logins = Array.from({ length: users }, (_, i) => loginData(`oProfile${i}`))
  const authorize = (i) => auth.authorize(...logins[i % users])
  try {
    const tokens = []
    if (workload !== 'new') for (let i = 0; i < users; i++) tokens.push((await authorize(i)).response)
    const op = {
      returning: authorize,
      new: (i) => auth.authorize(...loginData(`oProfileNew${i}`)),
      refresh: (i) => auth.refreshToken(`oProfile${i % users}`),
      check: (i) => auth.isTokenValid(tokens[i % users]),
    }[workload]
    const concurrency = workload === 'check' ? 64 : 16
    const result = await measure({ concurrency, count, op })
    console.log(workload, Math.round(result.perSecond), 'calls/s')
  } finally {
    await stop()
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
