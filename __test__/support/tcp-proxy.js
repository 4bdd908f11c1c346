'use strict'

// A loopback TCP proxy that can be frozen: while frozen it delivers nothing in either
// direction but closes nothing, as a network cut that neither side notices; thawed, it
// delivers what waited, in order, as a network that came back.

const net = require('node:net')

/**
 * Proxies a free loopback port to `targetPort`; resolves with { port, freeze(), thaw(),
 * resetMidReply(), requests, resetAll(), stop() }. `beforeRequest(text)`, when given, runs
 * (synchronously) before each chunk a client sent is passed on: a change another client
 * makes exactly between two commands of this one.
 */
function startTcpProxy(targetPort, { beforeRequest } = {}) {
  const sockets = new Set()
  const held = [] // [socket, chunk] written while frozen
  const requests = [] // { frozen, text } of every chunk a client sent
  let frozen = false
  let resetOnReply = false
  let midReplyResets = 0
  const forward = (from, to, isReply) =>
    from.on('data', (chunk) => {
      if (!isReply) {
        requests.push({ frozen, text: chunk.toString('latin1') })
        beforeRequest?.(chunk.toString('latin1'))
      }
      if (isReply && resetOnReply) {
        // Half the reply, then a reset: a connection lost mid-reply.
        resetOnReply = false
        midReplyResets++
        to.write(chunk.subarray(0, chunk.length >> 1), () => {
          to.resetAndDestroy()
          from.resetAndDestroy()
        })
      } else if (frozen) held.push([to, chunk])
      else to.write(chunk)
    })
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1')
    for (const socket of [client, upstream]) sockets.add(socket)
    forward(client, upstream, false)
    forward(upstream, client, true)
    const close = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    for (const socket of [client, upstream]) socket.on('error', close).on('close', close)
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: server.address().port,
        freeze() {
          frozen = true
        },
        thaw() {
          frozen = false
          for (const [to, chunk] of held.splice(0)) if (!to.destroyed) to.write(chunk)
        },
        /** Resets the connection that carries the next reply, after half of it. */
        resetMidReply() {
          resetOnReply = true
        },
        /** How many replies were cut by `resetMidReply()`. */
        get midReplyResets() {
          return midReplyResets
        },
        /** Every chunk the clients sent, in order: `{ frozen, text }`, `frozen` when it arrived while frozen. */
        get requests() {
          return requests
        },
        /** Resets every connection (TCP RST), as a proxy or load balancer dropping idle ones. */
        resetAll() {
          for (const socket of sockets) socket.resetAndDestroy()
        },
        stop() {
          for (const socket of sockets) socket.destroy()
          return new Promise((done) => server.close(done))
        },
      }),
    )
  })
}

module.exports = { startTcpProxy }
