/**
 * FileSelector (Spark's FileInputDStream file selection) and the file readers, against real
 * temporary directories with explicit modification times.
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { chmod, mkdir, mkdtemp, rename, rm, utimes, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Logger } from "effect"
import type { FileSystem, Path } from "effect"
import * as NodeServices from "@effect/platform-node/NodeServices"
import {
  decodeTextLines,
  durationToRememberMillis,
  emptyFileWarning,
  FileSelector,
  FileStreamError,
  findMalformedUtf8,
  readEachFile,
  readFileBytes,
  readTextLines,
} from "../receivers/file.ts"
import { MalformedInputError } from "../lib/Errors.ts"

/** A start time aligned to whole seconds; every time in these tests is relative to it. */
const B = 1_700_000_000_000
const BATCH = 1000

let root: string
let counter = 0

before(async () => {
  root = await mkdtemp(join(tmpdir(), "file-selector-"))
})

after(async () => {
  await rm(root, { recursive: true, force: true })
})

/** A fresh directory for one test. */
const freshDir = async (name = "d"): Promise<string> => {
  const dir = join(root, `${counter++}`, name)
  await mkdir(dir, { recursive: true })
  return dir
}

/** Writes a file and sets its modification time to `mtimeMs` (whole or half seconds). */
const put = async (dir: string, name: string, mtimeMs: number, content = `${name}\n`): Promise<string> => {
  const file = join(dir, name)
  await writeFile(file, content)
  await touch(file, mtimeMs)
  return file
}

const touch = (file: string, mtimeMs: number): Promise<void> => utimes(file, new Date(mtimeMs), new Date(mtimeMs))

interface Run<A> {
  readonly result: A
  readonly warnings: ReadonlyArray<string>
}

/** Runs with the Node file system and path services, capturing warning logs. */
const run = async <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path>): Promise<Run<A>> => {
  const warnings: Array<string> = []
  const capture = Logger.make((options) => {
    if (options.logLevel === "Warn") {
      const m = options.message
      warnings.push(Array.isArray(m) ? m.map(String).join(" ") : String(m))
    }
  })
  const result = await Effect.runPromise(
    effect.pipe(Effect.provide(NodeServices.layer), Effect.provide(Logger.layer([capture]))),
  )
  return { result, warnings }
}

const select = async (selector: FileSelector, t: number): Promise<ReadonlyArray<string>> =>
  (await run(selector.select(t))).result

describe("FileSelector: newFilesOnly", () => {
  it("newFilesOnly=true ignores files modified at or before the start time", async () => {
    const dir = await freshDir()
    await put(dir, "old.txt", B - 1000)
    await put(dir, "at-start.txt", B) // modTime == threshold: ignored (<=)
    const fresh = await put(dir, "new.txt", B + 500)
    const selector = new FileSelector(dir, BATCH)
    selector.init(B)
    assert.equal(selector.initialModTimeIgnoreThreshold, B)
    assert.deepEqual(await select(selector, B + 1000), [fresh])
    assert.deepEqual(await select(selector, B + 2000), [])
  })

  it("newFilesOnly=false picks up a pre-existing file in the first batch", async () => {
    const dir = await freshDir()
    const old = await put(dir, "old.txt", B - 1000)
    const fresh = await put(dir, "new.txt", B + 500)
    const selector = new FileSelector(dir, BATCH, { newFilesOnly: false })
    selector.init(B)
    assert.equal(selector.initialModTimeIgnoreThreshold, 0)
    assert.deepEqual(await select(selector, B + 1000), [old, fresh])
    assert.deepEqual(await select(selector, B + 2000), [])
  })
})

describe("FileSelector: filter", () => {
  it("ignores dot-files by default, and directories", async () => {
    const dir = await freshDir()
    await put(dir, ".hidden", B + 500)
    await put(dir, ".part.tmp", B + 500)
    const visible = await put(dir, "visible.txt", B + 500)
    const sub = join(dir, "subdir")
    await mkdir(sub)
    await touch(sub, B + 500)
    const selector = new FileSelector(dir, BATCH)
    selector.init(B)
    assert.deepEqual(await select(selector, B + 1000), [visible])
  })

  it("uses a custom filter, called with the file's full path, instead of the default", async () => {
    const dir = await freshDir()
    const txt = await put(dir, "a.txt", B + 500)
    await put(dir, "b.log", B + 500)
    const hiddenTxt = await put(dir, ".c.txt", B + 600)
    const seen: Array<string> = []
    const selector = new FileSelector(dir, BATCH, {
      filter: (p) => {
        seen.push(p)
        return p.endsWith(".txt")
      },
    })
    selector.init(B)
    // the custom filter replaces the default one, so the dot-file passes
    assert.deepEqual(await select(selector, B + 1000), [txt, hiddenTxt])
    assert.ok(seen.includes(join(dir, "b.log")), `filter saw ${JSON.stringify(seen)}`)
  })

  it("a throwing filter fails the batch with FileStreamError naming the file", async () => {
    const dir = await freshDir()
    const file = await put(dir, "a.txt", B + 500)
    const selector = new FileSelector(dir, BATCH, {
      filter: () => {
        throw new Error("boom")
      },
    })
    selector.init(B)
    const { result: error } = await run(Effect.flip(selector.select(B + 1000)))
    assert.ok(error instanceof FileStreamError)
    assert.equal(error.path, file)
  })
})

describe("FileSelector: batch attribution by modification time", () => {
  it("a file modified later than T waits for a later batch; modTime == T is included", async () => {
    const dir = await freshDir()
    const later = await put(dir, "later.txt", B + 1500)
    const exact = await put(dir, "exact.txt", B + 1000)
    const selector = new FileSelector(dir, BATCH)
    selector.init(B)
    assert.deepEqual(await select(selector, B + 1000), [exact])
    assert.deepEqual(await select(selector, B + 2000), [later])
    assert.deepEqual(await select(selector, B + 3000), [])
  })

  it("selects each file once across batches and orders by modification time, then path", async () => {
    const dir = await freshDir()
    const c = await put(dir, "c.txt", B + 200)
    const a = await put(dir, "a.txt", B + 500)
    const b = await put(dir, "b.txt", B + 500)
    const selector = new FileSelector(dir, BATCH)
    selector.init(B)
    assert.deepEqual(await select(selector, B + 1000), [c, a, b])
    const d = await put(dir, "d.txt", B + 1500)
    assert.deepEqual(await select(selector, B + 2000), [d])
    assert.deepEqual(await select(selector, B + 3000), [])
    assert.deepEqual(await select(selector, B + 4000), [])
    assert.deepEqual(selector.snapshot(), [
      { time: B + 1000, files: [c, a, b] },
      { time: B + 2000, files: [d] },
      { time: B + 3000, files: [] },
      { time: B + 4000, files: [] },
    ])
  })

  it("a file re-modified after its selection is not selected again", async () => {
    const dir = await freshDir()
    const file = await put(dir, "f.txt", B + 500, "first\n")
    const selector = new FileSelector(dir, BATCH)
    selector.init(B)
    assert.deepEqual(await select(selector, B + 1000), [file])
    await writeFile(file, "first\nappended\n")
    await touch(file, B + 1500)
    assert.deepEqual(await select(selector, B + 2000), [])
    await touch(file, B + 2500)
    assert.deepEqual(await select(selector, B + 3000), [])
  })

  it("an empty file is still selected (it is read as no data)", async () => {
    const dir = await freshDir()
    const empty = await put(dir, "empty.txt", B + 500, "")
    const selector = new FileSelector(dir, BATCH)
    selector.init(B)
    assert.deepEqual(await select(selector, B + 1000), [empty])
  })
})

describe("FileSelector: remember window", () => {
  it("durationToRemember = batch × ceil(minRememberDuration / batch), default 60 s", () => {
    assert.equal(new FileSelector("/x", 1000).durationToRemember, 60_000)
    assert.equal(new FileSelector("/x", 7000).durationToRemember, 63_000)
    assert.equal(new FileSelector("/x", 2000, { minRememberDuration: "5 seconds" }).durationToRemember, 6000)
    assert.equal(durationToRememberMillis(500, 1000), 1000)
  })

  it("ignores files older than the remember window even with newFilesOnly=false", async () => {
    const dir = await freshDir()
    const T = B + 10_000
    // window 5 s: threshold = T - 5000; modTime == threshold is ignored
    await put(dir, "too-old.txt", T - 6000)
    await put(dir, "at-threshold.txt", T - 5000)
    const inside = await put(dir, "inside.txt", T - 4000)
    const selector = new FileSelector(dir, BATCH, { newFilesOnly: false, minRememberDuration: "5 seconds" })
    selector.init(B)
    assert.deepEqual(await select(selector, T), [inside])
  })

  it("with the default 60 s window, a file 61 s old is ignored and a 59 s old one selected", async () => {
    const dir = await freshDir()
    const T = B + 120_000
    await put(dir, "old.txt", T - 61_000)
    const recent = await put(dir, "recent.txt", T - 59_000)
    const selector = new FileSelector(dir, BATCH, { newFilesOnly: false })
    selector.init(B)
    assert.deepEqual(await select(selector, T), [recent])
  })

  it("forgets selections older than the window (Spark's clearMetadata)", async () => {
    const dir = await freshDir()
    const file = await put(dir, "f.txt", B + 500)
    const selector = new FileSelector(dir, BATCH, { minRememberDuration: "3 seconds" })
    selector.init(B)
    assert.deepEqual(await select(selector, B + 1000), [file])
    for (const t of [B + 2000, B + 3000, B + 4000]) assert.deepEqual(await select(selector, t), [])
    assert.deepEqual(selector.snapshot().map((s) => s.time), [B + 1000, B + 2000, B + 3000, B + 4000])
    // at T = B+5000 the batch B+1000 < T - 3000 is forgotten
    assert.deepEqual(await select(selector, B + 5000), [])
    assert.deepEqual(selector.snapshot().map((s) => s.time), [B + 2000, B + 3000, B + 4000, B + 5000])
    // once forgotten, a later modification makes the file new again (Spark's behaviour)
    await touch(file, B + 5500)
    assert.deepEqual(await select(selector, B + 6000), [file])
  })
})

describe("FileSelector: glob of directories", () => {
  it("reads files directly inside matching directories, not nested files nor non-matching dirs", async () => {
    const base = await freshDir("base")
    const a = join(base, "logs-a")
    const b = join(base, "logs-b")
    const other = join(base, "other")
    const nested = join(a, "nested")
    for (const d of [a, b, other, nested]) await mkdir(d, { recursive: true })
    const a1 = await put(a, "a1.txt", B + 300)
    const b1 = await put(b, "b1.txt", B + 400)
    await put(other, "o1.txt", B + 300)
    await put(nested, "deep.txt", B + 300)
    await touch(nested, B + 300)
    await put(base, "logs-file", B + 300) // a file matching the pattern is not a directory
    const selectorStar = new FileSelector(join(base, "logs-*"), BATCH)
    selectorStar.init(B)
    const star = await run(selectorStar.select(B + 1000))
    assert.deepEqual(star.result, [a1, b1])
    assert.deepEqual(star.warnings, [])
    const selectorClass = new FileSelector(join(base, "logs-[b]"), BATCH)
    selectorClass.init(B)
    assert.deepEqual(await select(selectorClass, B + 1000), [b1])
    const selectorAny = new FileSelector(join(base, "logs-?"), BATCH)
    selectorAny.init(B)
    assert.deepEqual(await select(selectorAny, B + 1000), [a1, b1])
    const selectorMid = new FileSelector(join(base, "*", "nested"), BATCH)
    selectorMid.init(B)
    assert.deepEqual(await select(selectorMid, B + 1000), [join(nested, "deep.txt")])
  })

  it("a directory renamed into the pattern is picked up only for files within the remember window", async () => {
    const base = await freshDir("base")
    const staging = join(base, "staging")
    await mkdir(staging)
    const T = B + 30_000
    // window 10 s: at T the threshold is T - 10000 = B + 20000 (> initial threshold B)
    const recent = await put(staging, "recent.txt", B + 25_000)
    await put(staging, "stale.txt", B + 15_000)
    await mkdir(join(base, "data-1"))
    const selector = new FileSelector(join(base, "data-*"), BATCH, { minRememberDuration: "10 seconds" })
    selector.init(B)
    assert.deepEqual(await select(selector, T - 1000), [])
    await rename(staging, join(base, "data-2"))
    assert.deepEqual(await select(selector, T), [join(base, "data-2", "recent.txt")])
    assert.deepEqual(await select(selector, T + 1000), [])
    assert.equal(recent, join(staging, "recent.txt"))
  })
})

describe("FileSelector: checkpoint snapshot/restore", () => {
  it("restored selections are not selected again", async () => {
    const dir = await freshDir()
    const f = await put(dir, "f.txt", B + 500)
    const first = new FileSelector(dir, BATCH)
    first.init(B)
    assert.deepEqual(await select(first, B + 1000), [f])
    const saved = JSON.parse(JSON.stringify(first.snapshot()))
    assert.deepEqual(saved, [{ time: B + 1000, files: [f] }])

    const g = await put(dir, "g.txt", B + 1500)
    const restored = new FileSelector(dir, BATCH)
    restored.init(B)
    restored.restore(saved)
    assert.deepEqual(restored.snapshot(), saved)
    assert.deepEqual(await select(restored, B + 2000), [g])

    // selecting again for a remembered time adds to that batch's memory
    const h = await put(dir, "h.txt", B + 900)
    assert.deepEqual(await select(restored, B + 1000), [h])
    assert.deepEqual(restored.snapshot(), [{ time: B + 1000, files: [f, h] }, { time: B + 2000, files: [g] }])

    // control: without restore the same selector state would select f again
    const fresh = new FileSelector(dir, BATCH)
    fresh.init(B)
    assert.deepEqual(await select(fresh, B + 2000), [f, h, g])
  })

  it("snapshot and select results are copies: mutating them does not change the selector", async () => {
    const dir = await freshDir()
    const f = await put(dir, "f.txt", B + 500)
    const selector = new FileSelector(dir, BATCH)
    selector.init(B)
    const selected = await select(selector, B + 1000)
    ;(selected as Array<string>).length = 0
    const snap = selector.snapshot()
    ;(snap[0].files as Array<string>).length = 0
    assert.deepEqual(selector.snapshot(), [{ time: B + 1000, files: [f] }])
    assert.deepEqual(await select(selector, B + 2000), [])
  })
})

describe("FileSelector: missing directory and errors", () => {
  it("a missing directory yields no files and warns once; files are found once it appears", async () => {
    const parent = await freshDir()
    const dir = join(parent, "not-yet")
    const selector = new FileSelector(dir, BATCH)
    selector.init(B)
    const r1 = await run(selector.select(B + 1000))
    const r2 = await run(selector.select(B + 2000))
    assert.deepEqual(r1.result, [])
    assert.deepEqual(r2.result, [])
    assert.deepEqual(r1.warnings, [`No directory to scan: ${dir}`])
    assert.deepEqual(r2.warnings, [])
    await mkdir(dir)
    const f = await put(dir, "f.txt", B + 2500)
    const r3 = await run(selector.select(B + 3000))
    assert.deepEqual(r3.result, [f])
    assert.deepEqual(r3.warnings, [])
  })

  it("a glob matching no directory (or a missing parent) yields no files", async () => {
    const parent = await freshDir()
    const selector = new FileSelector(join(parent, "missing", "logs-*"), BATCH)
    selector.init(B)
    const r = await run(selector.select(B + 1000))
    assert.deepEqual(r.result, [])
    assert.equal(r.warnings.length, 1)
  })

  it("other file-system errors fail with FileStreamError naming the path", async () => {
    const parent = await freshDir()
    const dir = join(parent, "x".repeat(300)) // ENAMETOOLONG: neither missing nor a directory
    const selector = new FileSelector(dir, BATCH)
    selector.init(B)
    const { result: error } = await run(Effect.flip(selector.select(B + 1000)))
    assert.ok(error instanceof FileStreamError)
    assert.equal(error._tag, "FileStreamError")
    assert.equal(error.path, dir)
    assert.ok(error.message.includes(dir))
  })

  it("a directory that cannot be listed fails with FileStreamError (when permissions apply)", async () => {
    const dir = await freshDir()
    await put(dir, "f.txt", B + 500)
    await chmod(dir, 0o000)
    try {
      const selector = new FileSelector(dir, BATCH)
      selector.init(B)
      const exit = await run(Effect.result(selector.select(B + 1000)))
      const isRoot = typeof process.getuid === "function" && process.getuid() === 0
      if (isRoot) {
        // root bypasses permission bits: the listing succeeds
        assert.equal(exit.result._tag, "Success")
      } else {
        assert.equal(exit.result._tag, "Failure")
        if (exit.result._tag === "Failure") assert.equal(exit.result.failure.path, dir)
      }
    } finally {
      await chmod(dir, 0o755)
    }
  })

  it("select without init uses the clock time as the initial threshold", async () => {
    const dir = await freshDir()
    const before = Date.now()
    // inside the 60 s window of t, but before the stream's (clock) start time
    await put(dir, "f.txt", Math.floor(before / 1000) * 1000 - 10_000)
    const selector = new FileSelector(dir, BATCH)
    const t = Math.ceil(before / 1000) * 1000 + 1000
    assert.deepEqual(await select(selector, t), [])
    const threshold = selector.initialModTimeIgnoreThreshold
    assert.ok(threshold !== undefined && threshold >= before && threshold <= Date.now(), `threshold ${threshold}`)
  })
})

describe("readTextLines / readFileBytes", () => {
  it("splits on CRLF, CR and LF and keeps a final unterminated line", async () => {
    const dir = await freshDir()
    const f1 = await put(dir, "1.txt", B, "a\r\nb\rc\nd")
    const f2 = await put(dir, "2.txt", B, "x\n\ny\r\n\r\nz\r")
    const f3 = await put(dir, "3.txt", B, "\uFEFFcafé ☕\n")
    const { result, warnings } = await run(readTextLines([f1, f2, f3]))
    assert.deepEqual(result, ["a", "b", "c", "d", "x", "", "y", "", "z", "café ☕"])
    assert.deepEqual(warnings, [])
  })

  it("an empty file contributes nothing and logs Spark's warning", async () => {
    const dir = await freshDir()
    const empty = await put(dir, "empty.txt", B, "")
    const newline = await put(dir, "newline.txt", B, "\n")
    const one = await put(dir, "one.txt", B, "only")
    const { result, warnings } = await run(readTextLines([empty, newline, one]))
    assert.deepEqual(result, ["", "only"])
    assert.deepEqual(warnings, [emptyFileWarning(empty)])
    assert.ok(warnings[0].includes(`File ${empty} has no data in it.`))
  })

  it("a missing file fails with FileStreamError naming it", async () => {
    const dir = await freshDir()
    const gone = join(dir, "gone.txt")
    const { result: error } = await run(Effect.flip(readTextLines([gone])))
    assert.ok(error instanceof FileStreamError)
    assert.equal(error.path, gone)
  })

  it("readFileBytes returns each file's bytes in order", async () => {
    const dir = await freshDir()
    const f1 = await put(dir, "1.bin", B, "ab")
    const f2 = await put(dir, "2.bin", B, "")
    const { result, warnings } = await run(readFileBytes([f1, f2]))
    assert.deepEqual(result.map((r) => r.path), [f1, f2])
    assert.deepEqual(Array.from(result[0].bytes), [97, 98])
    assert.equal(result[1].bytes.length, 0)
    assert.deepEqual(warnings, [emptyFileWarning(f2)])
  })
})

describe("readEachFile / decodeTextLines / findMalformedUtf8", () => {
  it("readEachFile puts a FileStreamError naming an unreadable file in its place and reads the others", async () => {
    const dir = await freshDir()
    const f1 = await put(dir, "1.txt", B, "a")
    const gone = join(dir, "gone.txt")
    const sub = join(dir, "sub")
    await mkdir(sub)
    const f3 = await put(dir, "3.txt", B, "")
    const { result, warnings } = await run(readEachFile([f1, gone, sub, f3]))
    assert.equal(result.length, 4)
    assert.ok(!(result[0] instanceof FileStreamError) && result[0].path === f1)
    for (const [i, path] of [[1, gone], [2, sub]] as const) {
      const r = result[i]
      assert.ok(r instanceof FileStreamError)
      assert.equal(r.path, path)
      assert.ok(r.message.startsWith(`Could not read file ${path}: `), r.message)
    }
    assert.ok(!(result[3] instanceof FileStreamError) && result[3].bytes.length === 0)
    assert.deepEqual(warnings, [emptyFileWarning(f3)])
  })

  it("decodeTextLines appends a valid file's lines and nothing of an invalid one", () => {
    const lines: Array<string> = ["before"]
    assert.equal(decodeTextLines("a", new TextEncoder().encode("\uFEFFx\r\ny\rz\n"), lines), undefined)
    assert.deepEqual(lines, ["before", "x", "y", "z"])
    const error = decodeTextLines("b", new Uint8Array([0x6f, 0x6b, 0x0a, 0xc3, 0x28, 0x0a]), lines)
    assert.ok(error instanceof MalformedInputError)
    assert.deepEqual([error.source, error.offset, error.count], ["b", 3, 1])
    assert.equal(error.message, "Invalid UTF-8 in b at byte 3: 1 malformed sequence(s)")
    assert.deepEqual(lines, ["before", "x", "y", "z"])
  })

  it("findMalformedUtf8 finds the first invalid sequence and counts them as a decoder replaces them", () => {
    const cases: ReadonlyArray<readonly [ReadonlyArray<number>, { offset: number; count: number } | undefined]> = [
      [[0x61, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80], undefined], // a € 😀
      [[0xef, 0xbf, 0xbd], undefined], // an encoded U+FFFD is valid
      [[0x61, 0xc0, 0xaf], { offset: 1, count: 2 }], // overlong "/"
      [[0xed, 0xa0, 0x80], { offset: 0, count: 3 }], // a surrogate
      [[0x61, 0xe2, 0x82], { offset: 1, count: 1 }], // truncated at the end
      [[0xf4, 0x90, 0x80, 0x80], { offset: 0, count: 4 }], // above U+10FFFF
      [[0x80, 0x62, 0xff], { offset: 0, count: 2 }],
    ]
    for (const [bytes, expected] of cases) {
      assert.deepEqual(findMalformedUtf8(new Uint8Array(bytes)), expected, JSON.stringify(bytes))
    }
    // Random bytes: the count equals the U+FFFD a WHATWG decoder produces.
    let seed = 42
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
    const pool = [0x00, 0x41, 0x7f, 0x80, 0xbf, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0xa0, 0x90]
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from({ length: 1 + Math.floor(random() * 8) }, () => pool[Math.floor(random() * 16)])
      const text = new TextDecoder().decode(bytes)
      const replaced = text.split("\uFFFD").length - 1
      const found = findMalformedUtf8(bytes)
      assert.equal(found?.count ?? 0, replaced, Array.from(bytes).join(","))
    }
  })
})
