'use strict'

// The package as users get it: the published files, the per-platform binary packages, and a
// complete login from an empty project that installed the packed tarballs with no Rust
// toolchain on PATH and no install scripts run.

const assert = require('node:assert/strict')
const { execFile, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { describe, test } = require('node:test')
const { promisify } = require('node:util')

const { parseTriple } = require('@napi-rs/cli')

const { useHarness, APP_ID, APP_SECRET } = require('./support/harness')

const ROOT = path.join(__dirname, '..')
const pkg = require('../package.json')

// The platforms the README promises prebuilt binaries for.
const REQUIRED_TARGETS = [
  'x86_64-unknown-linux-gnu',
  'x86_64-unknown-linux-musl',
  'aarch64-unknown-linux-gnu',
  'aarch64-unknown-linux-musl',
  'x86_64-apple-darwin',
  'aarch64-apple-darwin',
  'x86_64-pc-windows-msvc',
]

const platformPackages = pkg.napi.targets.map((triple) => {
  const { platformArchABI, platform, arch, abi } = parseTriple(triple)
  const dir = path.join(ROOT, 'npm', platformArchABI)
  return { triple, platformArchABI, platform, arch, abi, dir, manifest: readJson(path.join(dir, 'package.json')) }
})

/**
 * The files of the repository under `dir`, as npm packs them: no build output, no `.gitignore`.
 * Files not yet committed count too, unless git ignores them (npm packs them as well).
 */
function filesUnder(dir) {
  return execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', dir], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((file) => file && path.basename(file) !== '.gitignore')
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'))
}

/** Runs npm's own CLI with this Node, so that PATH can leave everything else out. */
function npm(args, options) {
  const cli = process.env.npm_execpath || execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim()
  return execFileSync(process.execPath, [cli, ...args], { encoding: 'utf8', ...options })
}

/** PATH without any directory holding a Rust toolchain, node's own directory first. */
function pathWithoutRust() {
  const dirs = [path.dirname(process.execPath), ...(process.env.PATH ?? '').split(path.delimiter)]
  const rustFree = dirs.filter((dir) => dir && !['cargo', 'rustc', 'rustup'].some((tool) => fs.existsSync(path.join(dir, tool))))
  return [...new Set(rustFree)].join(path.delimiter)
}

function isMusl() {
  return process.platform === 'linux' && !process.report.getReport().header.glibcVersionRuntime
}

/** The per-platform package whose binary this machine loads. */
function thisPlatform() {
  const abi = process.platform === 'linux' ? (isMusl() ? 'musl' : 'gnu') : undefined
  const found = platformPackages.find(
    (p) => p.platform === process.platform && p.arch === process.arch && (abi === undefined || p.abi === abi),
  )
  assert.ok(found, `no napi target for ${process.platform}-${process.arch}`)
  return found
}

describe('package layout', () => {
  test('napi targets cover linux gnu and musl, macOS and Windows', () => {
    assert.equal(pkg.napi.binaryName, 'mpauthx')
    for (const triple of REQUIRED_TARGETS) assert.ok(pkg.napi.targets.includes(triple), triple)
  })

  test('each target has an npm/<platform> package, wired as an optional dependency when published', () => {
    for (const p of platformPackages) {
      const binary = `mpauthx.${p.platformArchABI}.node`
      assert.equal(p.manifest.name, `mpauthx-${p.platformArchABI}`)
      assert.equal(p.manifest.version, pkg.version, `${p.manifest.name} has the root version`)
      assert.equal(p.manifest.main, binary)
      assert.deepEqual(p.manifest.files, [binary])
      assert.deepEqual(p.manifest.os, [p.platform])
      assert.deepEqual(p.manifest.cpu, [p.arch])
      if (p.platform === 'linux') assert.deepEqual(p.manifest.libc, [p.abi === 'musl' ? 'musl' : 'glibc'])
      assert.equal(p.manifest.license, pkg.license)
    }
    // `napi pre-publish` writes them at publish time, as the napi-rs template does: listed in
    // the repository, they would make `npm ci` of a fresh clone fetch versions not yet out.
    assert.equal(pkg.optionalDependencies, undefined)
    assert.match(pkg.scripts.prepublishOnly, /^napi pre-publish /)
    assert.deepEqual(fs.readdirSync(path.join(ROOT, 'npm')).sort(), platformPackages.map((p) => p.platformArchABI).sort())
  })

  test('the main package ships exactly its JavaScript, typings and docs, and no install script', () => {
    const [packed] = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT }))
    assert.deepEqual(
      packed.files.map((file) => file.path).sort(),
      [
        'CHANGELOG.md',
        'LICENSE',
        'README.md',
        'authenticate.js',
        'binding.d.ts',
        'binding.js',
        'constants.js',
        'diagnostics.js',
        'index.d.ts',
        'index.js',
        'load-binding.js',
        'middleware.js',
        'options.js',
        'package.json',
        'replies.js',
        'sql-user-stores.js',
        'telemetry.js',
        'token-checks.js',
        'token.js',
        'user-store-call.js',
        'validation-cache.js',
        // The benchmark's method and figures, which the README links to.
        'bench/README.md',
        // The examples and the guides the README links to.
        ...filesUnder('examples'),
        ...filesUnder('docs'),
      ].sort(),
    )
    for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) {
      assert.equal(pkg.scripts[hook], undefined, `${hook} would run on users' machines`)
    }
    assert.equal(pkg.license, 'Apache-2.0')
    assert.ok(pkg.engines.node)
  })

  test("the README's install line installs the version it describes", () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
    const [, spec] = /^npm install (mpauthx\S*)/m.exec(readme) ?? []
    const prerelease = pkg.version.includes('-')
    // A prerelease is published under its own tag (npm refuses one without), never `latest`.
    assert.equal(spec, prerelease ? `mpauthx@${pkg.publishConfig.tag}` : 'mpauthx')
    if (prerelease) assert.notEqual(pkg.publishConfig.tag, 'latest')
    assert.ok(readme.includes(pkg.version), 'the README names the version')
  })
})

describe('installed from the packed tarballs', () => {
  const h = useHarness()

  test('an empty project without Rust or install scripts logs a user in', async () => {
    const platform = thisPlatform()
    const binary = path.join(ROOT, `mpauthx.${platform.platformArchABI}.node`)
    assert.ok(fs.existsSync(binary), `${binary} is missing: run \`npm run build\` first`)
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-pack-'))
    try {
      // Stage a release as `prepublishOnly` does, for this platform alone: `napi pre-publish`
      // puts the binary in its package and the optional dependency in the main package.json
      // (publishing nothing, offline), then pack both.
      const tarballs = path.join(work, 'tarballs')
      const release = path.join(work, 'release')
      fs.mkdirSync(tarballs)
      for (const file of [...pkg.files, 'package.json', 'README.md', 'LICENSE']) {
        fs.cpSync(path.join(ROOT, file), path.join(release, file), { recursive: true })
      }
      const platformDir = path.join(release, 'npm', platform.platformArchABI)
      fs.cpSync(platform.dir, platformDir, { recursive: true })
      fs.copyFileSync(binary, path.join(platformDir, path.basename(binary)))
      const staged = { ...pkg, napi: { ...pkg.napi, targets: [platform.triple] } }
      fs.writeFileSync(path.join(release, 'package.json'), JSON.stringify(staged, null, 2))
      const git = (...args) =>
        execFileSync('git', ['-c', 'user.name=release', '-c', 'user.email=release@localhost', ...args], { cwd: release })
      git('init', '-q')
      git('commit', '-q', '--allow-empty', '-m', 'release staging')
      execFileSync(path.join(ROOT, 'node_modules', '.bin', 'napi'), ['pre-publish', '-t', 'npm', '--skip-optional-publish'], {
        cwd: release,
        stdio: 'pipe',
      })
      const published = readJson(path.join(release, 'package.json'))
      assert.deepEqual(published.optionalDependencies, { [platform.manifest.name]: pkg.version })
      // The install is offline: the runtime dependencies (package-lock.json's entries that are
      // neither dev nor optional) come packed from this checkout's node_modules, as the
      // registry would give them.
      const dependencies = Object.entries(readJson(path.join(ROOT, 'package-lock.json')).packages)
        .filter(([where, entry]) => where !== '' && !entry.dev && !entry.optional && !entry.devOptional && !entry.peer)
        .map(([where]) => path.join(ROOT, where))
      assert.ok(dependencies.length >= Object.keys(pkg.dependencies ?? {}).length, 'the runtime dependencies are in the lock')
      const packed = [release, platformDir, ...dependencies].map((cwd) => {
        const [{ filename }] = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', tarballs], { cwd }))
        return path.join(tarballs, filename)
      })

      // A fresh project, a fresh npm cache and HOME, offline, and no Rust reachable.
      const project = path.join(work, 'project')
      fs.mkdirSync(project)
      fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'backend', private: true }))
      const env = {
        PATH: pathWithoutRust(),
        HOME: path.join(work, 'home'),
        npm_config_cache: path.join(work, 'cache'),
        npm_config_update_notifier: 'false',
      }
      assert.throws(
        () => execFileSync('sh', ['-c', 'command -v cargo || command -v rustc'], { env }),
        'no Rust toolchain is reachable from the install',
      )
      npm(['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', ...packed], { cwd: project, env })

      const installed = path.join(project, 'node_modules')
      assert.deepEqual(readJson(path.join(installed, 'mpauthx', 'package.json')).optionalDependencies, published.optionalDependencies)
      assert.ok(!fs.readdirSync(path.join(installed, 'mpauthx')).some((file) => file.endsWith('.node')))
      assert.ok(fs.existsSync(path.join(installed, platform.manifest.name, path.basename(binary))))

      // A backend in that project logs a user in against this suite's Redis and WeChat stand-in.
      fs.copyFileSync(path.join(__dirname, 'support', 'installed-login.js'), path.join(project, 'login.js'))
      const user = h.wechat.login({ openId: 'oFromTarball' })
      // Asynchronously: the WeChat stand-in answers from this process's event loop.
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ['login.js', h.redis.url, h.wechat.base, path.join(work, 'users.db'), APP_ID, APP_SECRET, user.code, user.encryptedData, user.iv],
        { cwd: project, env, encoding: 'utf8', timeout: 30000 },
      )
      const report = JSON.parse(stdout)
      assert.equal(report.resolvedFrom, path.join(fs.realpathSync(installed), 'mpauthx', 'index.js'))
      assert.equal(report.login.status_code, 1)
      assert.match(report.login.response, /^oFromTarball\|packsku\|[0-9a-f]{64}$/)
      assert.equal(report.refreshed.status_code, 1)
      assert.notEqual(report.refreshed.response, report.login.response)
      assert.equal(report.oldToken, 6007)
      assert.equal(report.openId, 'oFromTarball')
      assert.equal(report.sku, 'packsku')
      assert.equal(report.invalidAccessToken, 6007)
      // The token lives in this suite's Redis, with its TTL.
      assert.equal(h.redis.cli('EXISTS', report.refreshed.response), '1')
      assert.ok(Number(h.redis.cli('TTL', report.refreshed.response)) > 0)
    } finally {
      fs.rmSync(work, { recursive: true, force: true })
    }
  })
})
