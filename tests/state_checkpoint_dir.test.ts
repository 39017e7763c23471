/**
 * The checkpoint directory on the real file system: its lock (a second context, in a child
 * process, fails naming the owner; a dead owner's lock is taken over with a warning), a deleted
 * or emptied directory at getOrCreate (a typed error unless allowFreshStart), a directory that
 * disappears under a running context (a clear error), file modes (0600 / 0700, or
 * Checkpoint.Permissions) and the order of writes, renames and fsyncs.
 */
import { after, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import process from "node:process"
import { Effect, FileSystem, Layer, Logger } from "effect"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as NodePath from "@effect/platform-node/NodePath"
import { BatchJobError, Checkpoint, Receiver, StreamingContext } from "../mod.ts"
import * as Wal from "../lib/_internal/wal.ts"
import { kill, runningSum, startChild, waitForLog } from "./_support/child.ts"
import { live, waitFor } from "./_support/live.ts"
import { failureOf } from "./_support/run.ts"

const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-ckdir-"))
after(() => fs.rmSync(root, { recursive: true, force: true }))
let count = 0
/** A checkpoint directory that does not exist yet (its parent is the test's root). */
const freshDir = () => nodePath.join(root, `c${count++}`)
const markerOf = (dir: string) => nodePath.join(nodePath.dirname(dir), `.${nodePath.basename(dir)}.effect-dstream`)
const modeOf = (file: string) => (fs.statSync(file).mode & 0o777).toString(8)
const checkpointsIn = (dir: string) =>
  fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.startsWith("checkpoint-")) : []

/** A word count over a receiver with the write-ahead log, on `dir`; `words` are stored once. */
const build = (words: ReadonlyArray<string>, out: { state: ReadonlyArray<readonly [string, number]> }) =>
(
  ssc: StreamingContext.StreamingContext,
) => {
  ssc.receiverStream(Receiver.make<string>({
    name: "words",
    writeAheadLog: true,
    run: (store) => Effect.andThen(words.length > 0 ? store.all(words) : Effect.void, Effect.never),
  })).mapToPair((w) => [w, 1]).updateStateByKey(runningSum).checkpoint("100 millis").foreachBatch((batch) => {
    out.state = batch
  })
}

/** Runs the word count on `dir` until a checkpoint holding `words` is written, then stops. */
const runUntilCheckpointed = (
  dir: string,
  words: ReadonlyArray<string>,
  options?: StreamingContext.GetOrCreateOptions,
) =>
  Effect.gen(function* () {
    const out = { state: [] as ReadonlyArray<readonly [string, number]> }
    const ssc = yield* StreamingContext.getOrCreate(dir, build(words, out), { batchInterval: "100 millis", ...options })
    yield* ssc.start
    yield* waitFor(() => out.state.length >= new Set(words).size, "the words")
    const seen = new Set(checkpointsIn(dir))
    yield* waitFor(() => checkpointsIn(dir).some((n) => !seen.has(n)), "a checkpoint after the words")
    yield* waitFor(() => fs.existsSync(markerOf(dir)), "the marker written after the first checkpoint")
    yield* ssc.stop()
    return new Map(out.state)
  })

/** Log lines at warning level or above of `effect`. */
const withWarnings = <A, E>(effect: Effect.Effect<A, E>, lines: Array<string>) =>
  effect.pipe(
    Effect.provide(Logger.layer([
      Logger.make((options) => {
        if (options.logLevel === "Warn" || options.logLevel === "Error") lines.push(String(options.message))
      }),
    ])),
  )

describe("checkpoint directory lock", () => {
  it("a second context in another process fails to start with CheckpointLockedError naming the owner", {
    timeout: 60_000,
  }, async () => {
    const dir = freshDir()
    await live(Effect.gen(function* () {
      const out = { state: [] as ReadonlyArray<readonly [string, number]> }
      const ssc = yield* StreamingContext.getOrCreate(dir, build(["a"], out), { batchInterval: "100 millis" })
      yield* ssc.start
      yield* Effect.addFinalizer(() => ssc.stop())
      const lock = JSON.parse(fs.readFileSync(nodePath.join(dir, ".lock"), "utf8"))
      assert.equal(lock.pid, process.pid)
      const child = startChild("tests/_support/lock_child.ts", ["try", dir])
      yield* Effect.promise(() => child.exited)
      const line = child.log.join("").split("\n").find((l) => l.startsWith("RESULT "))
      assert.ok(line !== undefined, child.log.join(""))
      const result = JSON.parse(line.slice("RESULT ".length))
      assert.equal(result.started, false)
      assert.equal(result.tag, "CheckpointLockedError")
      assert.deepEqual(result.owner, { pid: process.pid, host: os.hostname(), since: lock.since })
      assert.equal(
        result.message,
        `Cannot use checkpoint directory "${dir}": it is locked by process ${process.pid} on host "${os.hostname()}" since ${lock.since}; stop that context first, or delete "${
          nodePath.join(dir, ".lock")
        }" if that process is gone`,
      )
      // the running context was not disturbed
      yield* waitFor(() => out.state.length === 1, "the running context's batch")
      yield* ssc.stop()
    }))
    // released at stop
    assert.equal(fs.existsSync(nodePath.join(dir, ".lock")), false)
  })

  it("the lock of a process that died is taken over with a warning naming it", { timeout: 60_000 }, async () => {
    const dir = freshDir()
    const child = startChild("tests/_support/lock_child.ts", ["hold", dir])
    await waitForLog(child, /STARTED \d+/)
    const pid = Number(/STARTED (\d+)/.exec(child.log.join(""))![1])
    await kill(child)
    const stale = JSON.parse(fs.readFileSync(nodePath.join(dir, ".lock"), "utf8"))
    assert.equal(stale.pid, pid)
    const warnings: Array<string> = []
    await live(withWarnings(
      Effect.gen(function* () {
        const out = { state: [] as ReadonlyArray<readonly [string, number]> }
        const ssc = yield* StreamingContext.getOrCreate(dir, build([], out), { batchInterval: "100 millis" })
        yield* ssc.start
        assert.equal(JSON.parse(fs.readFileSync(nodePath.join(dir, ".lock"), "utf8")).pid, process.pid)
        yield* ssc.stop()
      }),
      warnings,
    ))
    assert.ok(
      warnings.includes(
        `Taking over the lock of checkpoint directory "${dir}" from process ${pid} on host "${os.hostname()}" (since ${stale.since}): that process is gone`,
      ),
      warnings.join("\n"),
    )
  })
})

describe("lost checkpoint directory", () => {
  it(
    "getOrCreate fails with CheckpointMissingError when the directory was deleted or emptied; allowFreshStart starts afresh",
    {
      timeout: 60_000,
    },
    async () => {
      const dir = freshDir()
      const first = await live(runUntilCheckpointed(dir, ["a", "b", "a"]))
      assert.deepEqual([...first], [["a", 2], ["b", 1]])
      assert.ok(fs.existsSync(markerOf(dir)))
      const attempt = (options?: StreamingContext.GetOrCreateOptions) =>
        live(Effect.exit(StreamingContext.getOrCreate(dir, build([], { state: [] }), options)))

      // deleted
      fs.rmSync(dir, { recursive: true })
      const deleted = failureOf(await attempt())
      assert.ok(deleted instanceof Checkpoint.CheckpointMissingError, String(deleted))
      assert.equal(deleted.directory, dir)
      assert.equal(
        deleted.message,
        `Cannot recover from checkpoint directory "${dir}": it held checkpoints before (the marker "${
          markerOf(dir)
        }" says so) and now has none; restore it, or pass { allowFreshStart: true } to getOrCreate to start from nothing`,
      )
      // emptied (hidden files too)
      for (const name of fs.readdirSync(dir)) fs.rmSync(nodePath.join(dir, name), { recursive: true })
      assert.ok(failureOf(await attempt()) instanceof Checkpoint.CheckpointMissingError)

      // allowFreshStart: a fresh context (state from nothing), with a warning; checkpoints again
      const warnings: Array<string> = []
      const fresh = await live(withWarnings(runUntilCheckpointed(dir, ["c"], { allowFreshStart: true }), warnings))
      assert.deepEqual([...fresh], [["c", 1]])
      assert.ok(warnings.some((w) => w.includes("starting from nothing as allowFreshStart asks")), warnings.join("\n"))
      assert.ok(fs.existsSync(markerOf(dir)))
      // and the next run recovers from it normally
      const next = await live(runUntilCheckpointed(dir, ["c"]))
      assert.deepEqual([...next], [["c", 2]])

      // checkpoint files and the marker deleted, the write-ahead log kept: its checkpoint markers tell
      for (const name of checkpointsIn(dir)) fs.rmSync(nodePath.join(dir, name))
      fs.rmSync(markerOf(dir))
      const fromLog = failureOf(await attempt())
      assert.ok(fromLog instanceof Checkpoint.CheckpointMissingError, String(fromLog))
      assert.ok(
        fromLog.evidence.startsWith(
          `the write-ahead log "${nodePath.join(dir, "receivedData", "0")}" records a checkpoint of batch `,
        ),
        fromLog.evidence,
      )
    },
  )

  it("a running context whose checkpoint directory disappears stops with an error saying so", {
    timeout: 60_000,
  }, async () => {
    const dir = freshDir()
    const exit = await live(Effect.gen(function* () {
      const ssc = yield* StreamingContext.getOrCreate(dir, build(["a"], { state: [] }), { batchInterval: "100 millis" })
      yield* ssc.start
      yield* waitFor(() => checkpointsIn(dir).length > 0, "a checkpoint")
      fs.rmSync(dir, { recursive: true })
      const exit = yield* Effect.exit(ssc.awaitTermination)
      yield* ssc.stop() // wait for the stop the failure started
      return exit
    }))
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError, String(error))
    assert.ok(error.cause instanceof Checkpoint.CheckpointError, String(error.cause))
    // Whichever write notices first (the checkpoint's lock check, or the store listing old
    // checkpoints) says the same thing, possibly after what it was doing.
    assert.ok(
      error.cause.message.toLowerCase().includes(
        `the checkpoint directory "${dir}" disappeared while the context was running (its checkpoints and write-ahead logs are gone)`
          .toLowerCase(),
      ),
      error.cause.message,
    )
  })
})

describe("checkpoint and write-ahead log files", () => {
  it("are created 0600 in directories 0700, or with Checkpoint.Permissions", { timeout: 60_000 }, async () => {
    for (
      const [permissions, file, directory] of [[undefined, "600", "700"], [
        { file: 0o640, directory: 0o750 },
        "640",
        "750",
      ]] as const
    ) {
      const dir = freshDir()
      let lockMode = ""
      const program = Effect.gen(function* () {
        const out = { state: [] as ReadonlyArray<readonly [string, number]> }
        const ssc = yield* StreamingContext.getOrCreate(dir, build(["a"], out), { batchInterval: "100 millis" })
        yield* ssc.start
        yield* waitFor(
          () => checkpointsIn(dir).length > 0 && out.state.length > 0 && fs.existsSync(markerOf(dir)),
          "a checkpoint and the marker",
        )
        lockMode = modeOf(nodePath.join(dir, ".lock"))
        yield* ssc.stop()
      })
      await live(
        permissions === undefined ? program : Effect.provideService(program, Checkpoint.Permissions, permissions),
      )
      const logDir = nodePath.join(dir, "receivedData", "0")
      const what = `permissions ${JSON.stringify(permissions)}`
      assert.equal(modeOf(dir), directory, what)
      assert.equal(modeOf(nodePath.join(dir, "receivedData")), directory, what)
      assert.equal(modeOf(logDir), directory, what)
      assert.equal(lockMode, file, what)
      for (const name of checkpointsIn(dir)) assert.equal(modeOf(nodePath.join(dir, name)), file, `${name}, ${what}`)
      for (const name of fs.readdirSync(logDir)) {
        assert.equal(modeOf(nodePath.join(logDir, name)), file, `${name}, ${what}`)
      }
      assert.equal(modeOf(markerOf(dir)), file, what)
    }
  })

  it("a checkpoint is written to a temp file, fsynced, renamed, then its directory fsynced; a log segment's entry is fsynced before its first record is acknowledged", async () => {
    const dir = freshDir()
    const ops: Array<string> = []
    const name = (p: string) => nodePath.relative(root, p) || "."
    const recording = Layer.effect(FileSystem.FileSystem)(Effect.map(
      Effect.provide(
        Effect.gen(function* () {
          return yield* FileSystem.FileSystem
        }),
        NodeServices.layer,
      ),
      (real) =>
        FileSystem.make({
          ...real,
          open: (p, options) =>
            Effect.map(real.open(p, options), (file): FileSystem.File => {
              ops.push(`open ${name(p)} ${options?.flag ?? "r"}${options?.mode ? ` ${options.mode.toString(8)}` : ""}`)
              return {
                [FileSystem.FileTypeId]: FileSystem.FileTypeId,
                stat: file.stat,
                seek: (offset, from) => file.seek(offset, from),
                sync: Effect.andThen(file.sync, Effect.sync(() => ops.push(`fsync ${name(p)}`))),
                read: (buffer, o) => file.read(buffer, o),
                readAlloc: (size, o) => file.readAlloc(size, o),
                truncate: (length) => file.truncate(length),
                write: (buffer) => file.write(buffer),
                writeAll: (buffer) =>
                  Effect.andThen(file.writeAll(buffer), Effect.sync(() => ops.push(`write ${name(p)}`))),
              }
            }),
          rename: (from, to) =>
            Effect.andThen(real.rename(from, to), Effect.sync(() => ops.push(`rename ${name(from)} ${name(to)}`))),
        }),
    ))
    const env = Layer.merge(recording, NodePath.layer)
    await Effect.runPromise(
      Effect.gen(function* () {
        const store = yield* Checkpoint.makeFileSystem(dir)
        ops.length = 0
        yield* Checkpoint.write(store, 1000, { a: 1 })
        const temp = ops[0].split(" ")[1]
        assert.match(temp, /^c\d+\/\.checkpoint-1000\.tmp-\w+$/)
        assert.deepEqual(ops, [
          `open ${temp} wx 600`,
          `write ${temp}`,
          `fsync ${temp}`,
          `rename ${temp} ${name(dir)}/checkpoint-1000`,
          `open ${name(dir)} r`,
          `fsync ${name(dir)}`,
        ])
        assert.deepEqual(fs.readdirSync(dir), ["checkpoint-1000"])

        ops.length = 0
        const logDir = nodePath.join(dir, "receivedData", "0")
        yield* Effect.scoped(Effect.gen(function* () {
          const wal = yield* Wal.open(logDir, { rollMillis: 60_000 })
          ops.length = 0
          yield* wal.appendBlock(0, 1, new TextEncoder().encode(`["a"]`))
          yield* wal.appendBlock(1, 1, new TextEncoder().encode(`["b"]`))
        }))
        const segment = `${name(logDir)}/log-0000000000`
        assert.deepEqual(ops, [
          `open ${segment} ax 600`,
          `write ${segment}`, // the header
          `fsync ${segment}`,
          `open ${name(logDir)} r`,
          `fsync ${name(logDir)}`,
          `write ${segment}`,
          `fsync ${segment}`,
          `write ${segment}`,
          `fsync ${segment}`,
        ])
      }).pipe(Effect.provide(env)),
    )
  })
})
