'use strict'

// Private database servers for the user-store tests: a PostgreSQL cluster (initdb, pg_ctl)
// and a MariaDB server (mariadb-install-db, mariadbd), each in a temporary folder on a free
// loopback port, stopped and removed afterwards. The machine's own servers are never used.

const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const { freePort, waitUntil } = require('./redis')

const isRoot = process.getuid?.() === 0

/** The first of `names` found on PATH or in `dirs`, else `null`. */
function findProgram(names, dirs = []) {
  const pathDirs = (process.env.PATH ?? '').split(path.delimiter)
  for (const name of names) {
    for (const dir of [...pathDirs, ...dirs]) {
      const candidate = path.join(dir, name)
      if (fs.existsSync(candidate)) return candidate
    }
  }
  return null
}

// Debian keeps PostgreSQL's server programs out of PATH, in a folder per major version.
const postgresDirs = () => {
  const base = '/usr/lib/postgresql'
  if (!fs.existsSync(base)) return []
  return fs
    .readdirSync(base)
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => path.join(base, version, 'bin'))
}

/** Why PostgreSQL cannot be started here, or `null` when it can. */
function postgresMissing() {
  if (!findProgram(['initdb'], postgresDirs()) || !findProgram(['pg_ctl'], postgresDirs())) {
    return 'PostgreSQL server programs (initdb, pg_ctl) not installed: apt-get install postgresql'
  }
  return null
}

/** Why MariaDB cannot be started here, or `null` when it can. */
function mariadbMissing() {
  if (!findProgram(['mariadb-install-db', 'mysql_install_db']) || !findProgram(['mariadbd', 'mysqld'], ['/usr/sbin'])) {
    return 'MariaDB server programs (mariadb-install-db, mariadbd) not installed: apt-get install mariadb-server'
  }
  return null
}

/**
 * A private PostgreSQL on a free port, trusting local connections; resolves with
 * `{ port, connection: { host, port, user, database }, stop() }`. PostgreSQL refuses to run
 * as root, so as root it runs as the `postgres` user its package creates.
 */
async function startPostgres() {
  const initdb = findProgram(['initdb'], postgresDirs())
  const pgCtl = findProgram(['pg_ctl'], postgresDirs())
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-pg-'))
  const data = path.join(dir, 'data')
  const run = (program, args) => {
    const [command, fullArgs] = isRoot ? ['runuser', ['-u', 'postgres', '--', program, ...args]] : [program, args]
    return execFileSync(command, fullArgs, { stdio: 'pipe', encoding: 'utf8' })
  }
  if (isRoot) execFileSync('chown', ['postgres', dir])
  fs.chmodSync(dir, 0o700)
  run(initdb, ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions'])
  let port
  for (let attempt = 0; ; attempt++) {
    port = await freePort()
    const settings = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`
    try {
      run(pgCtl, ['-D', data, '-o', settings, '-l', path.join(dir, 'log'), '-w', '-t', '60', 'start'])
      break
    } catch (err) {
      // The port may have been taken between finding it free and binding it.
      if (attempt === 2) throw new Error(`PostgreSQL did not start: ${err.stderr ?? err.message}\n${readLog(dir)}`)
    }
  }
  return {
    port,
    connection: { host: '127.0.0.1', port, user: 'postgres', database: 'postgres' },
    stop() {
      try {
        run(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop'])
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    },
  }
}

const readLog = (dir) => {
  try {
    return fs.readFileSync(path.join(dir, 'log'), 'utf8').slice(-2000)
  } catch {
    return ''
  }
}

/**
 * A private MariaDB on a free port without grant tables (anyone may connect, as root, over
 * loopback); resolves with `{ port, connection: { host, port, user, database }, stop() }`.
 */
async function startMariadb() {
  const installDb = findProgram(['mariadb-install-db', 'mysql_install_db'])
  const server = findProgram(['mariadbd', 'mysqld'], ['/usr/sbin'])
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-mariadb-'))
  const data = path.join(dir, 'data')
  const user = os.userInfo().username
  execFileSync(
    installDb,
    ['--no-defaults', `--datadir=${data}`, `--user=${user}`, '--skip-test-db', '--auth-root-authentication-method=normal'],
    {
      stdio: 'pipe',
    },
  )
  const port = await freePort()
  const child = spawn(
    server,
    [
      '--no-defaults',
      `--datadir=${data}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--socket=${path.join(dir, 'mysqld.sock')}`,
      `--pid-file=${path.join(dir, 'mysqld.pid')}`,
      `--user=${user}`,
      '--skip-grant-tables',
      '--skip-name-resolve',
      '--innodb-flush-log-at-trx-commit=0',
      '--innodb-buffer-pool-size=32M',
      `--log-error=${path.join(dir, 'log')}`,
    ],
    { stdio: 'ignore' },
  )
  let exited = null
  child.once('exit', (code, signal) => (exited = signal ?? code))
  const accepts = () =>
    new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('data', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
  await waitUntil(
    async () => {
      if (exited !== null) throw new Error(`mariadbd exited (${exited}):\n${readLog(dir)}`)
      return accepts()
    },
    'mariadbd to accept connections',
    60_000,
  )
  execFileSync(
    findProgram(['mariadb', 'mysql']),
    ['--protocol=TCP', '-h', '127.0.0.1', '-P', String(port), '-e', 'CREATE DATABASE mpauthx_test'],
    {
      stdio: 'pipe',
    },
  )
  return {
    port,
    connection: { host: '127.0.0.1', port, user: 'root', database: 'mpauthx_test' },
    async stop() {
      if (exited === null) {
        const gone = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        await gone
      }
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

module.exports = { startPostgres, startMariadb, postgresMissing, mariadbMissing }
