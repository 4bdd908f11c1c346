'use strict'

// Certificates for TLS tests, made with openssl in a temporary folder: a CA, a server
// certificate for localhost and 127.0.0.1 signed by it (also a client certificate: cluster
// nodes present it to each other), a client certificate signed by it
// (for servers that ask for one), and a second CA that signed nothing the servers use.

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

function makeCertificates() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-tls-'))
  const file = (name) => path.join(dir, name)
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  const ca = (name) =>
    openssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      file(`${name}.key`),
      '-out',
      file(`${name}.crt`),
    )
  const signed = (name, extensions) => {
    fs.writeFileSync(file(`${name}.ext`), extensions)
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', file(`${name}.key`), '-out', file(`${name}.csr`))
    openssl(
      'x509',
      '-req',
      '-in',
      file(`${name}.csr`),
      '-CA',
      file('test-ca.crt'),
      '-CAkey',
      file('test-ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      file(`${name}.ext`),
      '-out',
      file(`${name}.crt`),
    )
  }
  ca('test-ca')
  ca('other-ca')
  signed('server', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n')
  signed('client', 'extendedKeyUsage=clientAuth\n')
  const read = (name) => fs.readFileSync(file(name), 'utf8')
  return {
    dir,
    files: { ca: file('test-ca.crt'), cert: file('server.crt'), key: file('server.key') },
    ca: read('test-ca.crt'),
    otherCa: read('other-ca.crt'),
    client: { cert: read('client.crt'), key: read('client.key') },
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  }
}

/** redis-server arguments for a TLS port beside the plain one the test's redis-cli uses. */
function tlsArgs(certificates, tlsPort, { authClients = false } = {}) {
  const { files } = certificates
  return [
    '--tls-port',
    String(tlsPort),
    '--tls-cert-file',
    files.cert,
    '--tls-key-file',
    files.key,
    '--tls-ca-cert-file',
    files.ca,
    '--tls-auth-clients',
    authClients ? 'yes' : 'no',
  ]
}

module.exports = { makeCertificates, tlsArgs }
