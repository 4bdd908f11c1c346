'use strict'

// A private Redis Sentinel deployment for one test file: a master, a replica and three
// sentinels (`redis-server <conf> --sentinel`) on free loopback ports, with a 1 s
// down-after so that a killed master is replaced within seconds.

const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { freePort, startRedis, waitUntil } = require('./redis')

const MASTER_NAME = 'mymaster'

async function startSentinel(masterPort) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-sentinel-'))
  const port = await freePort()
  const conf = path.join(dir, 'sentinel.conf')
  fs.writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
      `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
      `sentinel failover-timeout ${MASTER_NAME} 5000`,
      '',
    ].join('\n'),
  )
  const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const cli = (...args) =>
    execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args.map(String)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim()
  await waitUntil(() => {
    try {
      return cli('PING') === 'PONG'
    } catch {
      return false
    }
  }, `sentinel on port ${port}`)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    cli,
    async stop() {
      child.kill('SIGKILL')
      await exited
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Starts the deployment; returns { master, replica, sentinels, urls, masterPort(), stop() }. */
async function startRedisSentinel() {
  const master = await startRedis()
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] })
  await waitUntil(() => /master_link_status:up/.test(replica.cli('INFO', 'replication')), 'the replica to sync')
  const sentinels = []
  for (let i = 0; i < 3; i++) sentinels.push(await startSentinel(master.port))
  // Sentinels find the replica and each other through the master within a few seconds.
  await waitUntil(
    () =>
      sentinels.every(
        (sentinel) =>
          /num-slaves\n1\b/.test(sentinel.cli('SENTINEL', 'MASTER', MASTER_NAME)) &&
          /num-other-sentinels\n2\b/.test(sentinel.cli('SENTINEL', 'MASTER', MASTER_NAME)),
      ),
    'the sentinels to know the replica and each other',
    20000,
  )
  /** The port the sentinels name as the master now. */
  const masterPort = () => Number(sentinels[0].cli('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME).split('\n')[1])
  async function stop() {
    await Promise.all(sentinels.map((sentinel) => sentinel.stop()))
    for (const node of [master, replica]) {
      await node.stop()
      fs.rmSync(node.dir, { recursive: true, force: true })
    }
  }
  return { master, replica, sentinels, urls: sentinels.map((sentinel) => sentinel.url), masterName: MASTER_NAME, masterPort, stop }
}

module.exports = { startRedisSentinel }
