'use strict'

// A private Redis Cluster for one test file: 3 masters and 3 replicas on free loopback
// ports, joined with `redis-cli --cluster create`, node timeout 1 s so that a killed master's
// replica takes over within seconds.

const { execFile } = require('node:child_process')
const fs = require('node:fs')
const { promisify } = require('node:util')

const { freePort, startRedis, waitUntil } = require('./redis')
const { tlsArgs } = require('./tls')

/**
 * Starts the cluster; returns { nodes, urls, cli, masterOf, replicaOf, stop }. With
 * `certificates` (support/tls.js), the nodes speak TLS to clients and to each other, and
 * `urls` are their rediss:// addresses (each node keeps a plain port for the test's redis-cli).
 */
async function startRedisCluster({ masters = 3, password, certificates } = {}) {
  const args = ['--cluster-enabled', 'yes', '--cluster-node-timeout', '1000', '--cluster-config-file', 'nodes.conf']
  const startNode = async () => {
    if (!certificates) return startRedis({ password, args })
    const tlsPort = await freePort()
    const tls = [...tlsArgs(certificates, tlsPort), '--tls-cluster', 'yes', '--tls-replication', 'yes']
    return Object.assign(await startRedis({ password, args: [...args, ...tls] }), {
      tlsPort,
      url: `rediss://127.0.0.1:${tlsPort}`,
    })
  }
  // Every node started is stopped again when another could not start, so that a failed
  // start leaves no server behind to keep the test process alive.
  const started = await Promise.allSettled(Array.from({ length: masters * 2 }, startNode))
  const failed = started.find((outcome) => outcome.status === 'rejected')
  if (failed) {
    await Promise.all(started.filter((outcome) => outcome.status === 'fulfilled').map((outcome) => outcome.value.stop()))
    throw failed.reason
  }
  const nodes = started.map((outcome) => outcome.value)
  const auth = password ? ['-a', password, '--no-auth-warning'] : []
  const overTls = certificates ? ['--tls', '--cacert', certificates.files.ca] : []
  await promisify(execFile)('redis-cli', [
    '--cluster',
    'create',
    ...nodes.map((node) => `127.0.0.1:${node.tlsPort ?? node.port}`),
    '--cluster-replicas',
    '1',
    '--cluster-yes',
    ...auth,
    ...overTls,
  ])
  const alive = () => nodes.filter((node) => !node.killed)
  await waitUntil(() => nodes.every((node) => /cluster_state:ok/.test(node.cli('CLUSTER', 'INFO'))), 'the cluster to be ok', 20000)

  /** The node of `port`, as `CLUSTER NODES` of a live node lists it: { id, port, master, replicaOf, slots }. */
  function topology() {
    return alive()[0]
      .cli('CLUSTER', 'NODES')
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [id, address, flags, replicaOf, , , , , ...slots] = line.split(' ')
        return {
          id,
          port: Number(address.split(':')[1].split('@')[0]),
          master: flags.includes('master') && !flags.includes('fail'),
          replicaOf: replicaOf === '-' ? null : replicaOf,
          slots: slots.filter((range) => !range.startsWith('[')),
        }
      })
  }

  /** The live master node serving `key`. */
  function masterOf(key) {
    const slot = Number(alive()[0].cli('CLUSTER', 'KEYSLOT', key))
    const inRange = (range) => {
      const [from, to = from] = range.split('-').map(Number)
      return slot >= from && slot <= to
    }
    const master = topology().find((node) => node.master && node.slots.some(inRange))
    return master && nodes.find((node) => node.port === master.port)
  }

  /** The replica of a master node. */
  function replicaOf(master) {
    const { id } = topology().find((node) => node.port === master.port)
    const replica = topology().find((node) => node.replicaOf === id)
    return nodes.find((node) => node.port === replica.port)
  }

  /** Whether a live node is a master now. */
  function isMaster(node) {
    return topology().some((entry) => entry.port === node.port && entry.master)
  }

  /**
   * Moves the slot of `key`, with its keys, from master `from` to master `to`, as
   * `redis-cli --cluster reshard` does: IMPORTING/MIGRATING, MIGRATE, then SETSLOT NODE on
   * every master.
   */
  function moveSlotOf(key, from, to) {
    const slot = from.cli('CLUSTER', 'KEYSLOT', key)
    const fromId = from.cli('CLUSTER', 'MYID')
    const toId = to.cli('CLUSTER', 'MYID')
    to.cli('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId)
    from.cli('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId)
    for (;;) {
      const keys = from.cli('CLUSTER', 'GETKEYSINSLOT', slot, '100').split('\n').filter(Boolean)
      if (keys.length === 0) break
      from.cli('MIGRATE', '127.0.0.1', to.port, '', '0', '5000', 'KEYS', ...keys)
    }
    for (const node of [to, from, ...alive().filter((node) => node !== to && node !== from && isMaster(node))]) {
      node.cli('CLUSTER', 'SETSLOT', slot, 'NODE', toId)
    }
  }

  /** For each of the 16384 slots, the live master node serving it. */
  function slotOwners() {
    const owners = Array.from({ length: 16384 })
    for (const entry of topology().filter((node) => node.master)) {
      const node = nodes.find((candidate) => candidate.port === entry.port)
      for (const range of entry.slots) {
        const [from, to = from] = range.split('-').map(Number)
        for (let slot = from; slot <= to; slot++) owners[slot] = node
      }
    }
    return owners
  }

  /** Starts a killed node again, empty (nothing is persisted), in its old place in the cluster. */
  async function revive(node) {
    await node.start()
    node.killed = false
  }

  /** Kills a node for good. */
  async function kill(node) {
    node.killed = true
    await node.stop()
  }

  async function stop() {
    await Promise.all(nodes.map((node) => node.stop()))
    for (const node of nodes) fs.rmSync(node.dir, { recursive: true, force: true })
  }

  return { nodes, urls: nodes.map((node) => node.url), masterOf, replicaOf, isMaster, moveSlotOf, slotOwners, kill, revive, stop }
}

module.exports = { startRedisCluster }
