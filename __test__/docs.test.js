'use strict'

// The documentation holds together: every relative link of README.md, docs/*.md and
// bench/README.md reaches a file and, with `#anchor`, a heading of it (GitHub's anchors); the
// links of what ships in the package stay inside the package; the README stays a README.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { describe, test } = require('node:test')

const ROOT = path.join(__dirname, '..')
const pkg = require('../package.json')

const README_MAX_LINES = 400

/** The checked markdown files, relative to the repository. */
function markdownFiles() {
  const docs = fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`)
  return ['README.md', ...docs.sort(), 'bench/README.md']
}

/** The text outside fenced code blocks and inline code, line by line (line numbers kept). */
function proseLines(text) {
  let fence = null
  return text.split('\n').map((line) => {
    const opening = /^\s*(`{3,}|~{3,})/.exec(line)
    if (fence !== null) {
      if (opening && opening[1][0] === fence[0] && opening[1].length >= fence.length) fence = null
      return ''
    }
    if (opening) {
      fence = opening[1]
      return ''
    }
    // A code span becomes a word, so that a link whose text is code (`[`x`](x)`) still counts.
    return line.replace(/(`+)(?:(?!\1)[\s\S])+?\1/g, 'code')
  })
}

/** The anchor GitHub gives a heading's text, before duplicates are numbered. */
function slug(heading) {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // links and images: their text
    .replace(/<[^>]+>/g, '') // inline HTML
    .replace(/`/g, '') // code spans keep their content
    .replace(/\*+/g, '') // emphasis
    .trim()
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-')
}

/** The ATX headings of a markdown file, outside code blocks: `{ level, title }`. */
function headingsOf(text) {
  const headings = []
  let fence = null
  for (const line of text.split('\n')) {
    const opening = /^\s*(`{3,}|~{3,})/.exec(line)
    if (fence !== null) {
      if (opening && opening[1][0] === fence[0] && opening[1].length >= fence.length) fence = null
      continue
    }
    if (opening) {
      fence = opening[1]
      continue
    }
    const heading = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/.exec(line)
    if (heading) headings.push({ level: heading[1].length, title: heading[2] })
  }
  return headings
}

/** Every anchor a markdown file's headings produce, duplicates numbered as GitHub does. */
function anchorsOf(text) {
  const occurrences = new Map()
  const anchors = new Set()
  for (const { title } of headingsOf(text)) {
    const base = slug(title)
    let anchor = base
    while (occurrences.has(anchor)) {
      occurrences.set(base, occurrences.get(base) + 1)
      anchor = `${base}-${occurrences.get(base)}`
    }
    occurrences.set(anchor, 0)
    anchors.add(anchor)
  }
  return anchors
}

/** The inline links `[text](target)` of a markdown file's prose, with their line numbers. */
function linksOf(text) {
  const links = []
  proseLines(text).forEach((line, index) => {
    for (const [, target] of line.matchAll(/\[(?:[^[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g)) {
      links.push({ target, line: index + 1 })
    }
  })
  return links
}

function isExternal(target) {
  return /^(?:https?:|mailto:)/i.test(target)
}

/** Where a relative link points: the file (relative to the repository) and its anchor, if any. */
function resolve(from, target) {
  const hash = target.indexOf('#')
  const file = hash === -1 ? target : target.slice(0, hash)
  const anchor = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1))
  const resolved = file === '' ? from : path.posix.normalize(path.posix.join(path.posix.dirname(from), decodeURIComponent(file)))
  return { file: resolved, anchor }
}

function read(file) {
  return fs.readFileSync(path.join(ROOT, file), 'utf8')
}

describe('the documentation', () => {
  test('GitHub anchors: lowercase, punctuation dropped, non-ASCII letters kept, duplicates numbered', () => {
    assert.equal(slug('Migrating from mpauthx 1.3.2'), 'migrating-from-mpauthx-132')
    assert.equal(slug("Eviction: `noeviction` for the sessions' Redis"), 'eviction-noeviction-for-the-sessions-redis')
    assert.equal(slug('With `slidingTtl`'), 'with-slidingttl')
    assert.equal(slug('微信用户 and user_id'), '微信用户-and-user_id')
    assert.equal(slug('A [link](x.md) – **bold**'), 'a-link--bold')
    assert.deepEqual([...anchorsOf('# A\n## A\n```\n# not a heading\n```\n### A\n## A-1\n')], ['a', 'a-1', 'a-2', 'a-1-1'])
    assert.deepEqual(
      linksOf('[a](x.md#y) `[b](not-a-link)` [`c`](c/) [d](https://e.org)\n```\n[f](g)\n```').map((l) => l.target),
      ['x.md#y', 'c/', 'https://e.org'],
    )
  })

  test('every relative link reaches a file, and every anchor a heading of it', () => {
    const dead = []
    const anchorCache = new Map()
    for (const from of markdownFiles()) {
      for (const { target, line } of linksOf(read(from))) {
        if (isExternal(target)) continue
        const { file, anchor } = resolve(from, target)
        const where = `${from}:${line}: (${target})`
        if (file.startsWith('..') || !fs.existsSync(path.join(ROOT, file))) {
          dead.push(`${where}: no file ${file}`)
          continue
        }
        if (anchor === null) continue
        if (!file.endsWith('.md')) {
          dead.push(`${where}: an anchor into ${file}, which has no headings`)
          continue
        }
        if (!anchorCache.has(file)) anchorCache.set(file, anchorsOf(read(file)))
        if (!anchorCache.get(file).has(anchor)) dead.push(`${where}: no heading of ${file} gives #${anchor}`)
      }
    }
    assert.deepEqual(dead, [])
  })

  test('the links of the shipped docs stay inside the package, so they resolve where it is installed', () => {
    const shipped = [...pkg.files, 'README.md', 'LICENSE', 'package.json']
    const ships = (file) =>
      shipped.some((entry) => (entry.endsWith('/') ? file === entry.slice(0, -1) || file.startsWith(entry) : file === entry))
    const outside = []
    for (const from of markdownFiles().filter(ships)) {
      for (const { target, line } of linksOf(read(from))) {
        if (isExternal(target)) continue
        const { file } = resolve(from, target)
        if (!ships(file)) outside.push(`${from}:${line}: (${target}) points at ${file}, which the package does not ship`)
      }
    }
    assert.ok(ships('docs/migrating.md'), 'docs/ ships')
    assert.deepEqual(outside, [])
  })

  test(`README.md has at most ${README_MAX_LINES} lines and a contents list naming its sections`, () => {
    const readme = read('README.md')
    const lines = readme.endsWith('\n') ? readme.split('\n').length - 1 : readme.split('\n').length
    assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines; deeper material belongs in docs/`)

    const sections = headingsOf(readme)
      .filter(({ level, title }) => level === 2 && title !== 'Contents')
      .map(({ title }) => title)
    assert.ok(sections.length >= 8, 'the README has its sections')
    const contents = /^## Contents\n([\s\S]*?)(?=^## )/m.exec(readme)
    assert.ok(contents, 'a `## Contents` section comes before the next section')
    const listed = [...contents[1].matchAll(/^\s*[-*] \[[^\]]+\]\(#([^)]+)\)/gm)].map((match) => match[1])
    assert.deepEqual(listed, sections.map(slug), 'the contents list names every `##` section, in order')
  })
})
