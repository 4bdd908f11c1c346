'use strict'

// The addon for this platform, or an error that says first which package is missing and how
// to install it, with napi-rs's own account of every place it looked as its cause.

function loadBinding() {
  try {
    return require('./binding.js')
  } catch (cause) {
    if (!/Cannot find native binding/.test(String(cause?.message))) throw cause
    const name = `mpauthx-${platformTarget()}`
    const error = new Error(
      `mpauthx has no native binary for this platform: the package ${name} is not installed. ` +
        'It is an optional dependency of mpauthx: install with `npm install --include=optional` ' +
        '(optional dependencies were skipped: --omit=optional, or a lockfile made on another ' +
        `platform), or add it by name: \`npm install ${name}\`. Binaries are published for ` +
        'linux x64/arm64 (glibc and musl), macOS x64/arm64 and Windows x64.',
    )
    error.cause = cause
    throw error
  }
}

// The suffix of this platform's package, as napi-rs names them.
function platformTarget() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const glibc = process.report?.getReport?.().header?.glibcVersionRuntime
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

module.exports = { loadBinding }
