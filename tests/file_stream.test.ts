/**
 * File streams in a running context, under TestClock, against real directories with explicit
 * modification times: recovery from checkpointed file lists (Spark's
 * FileInputDStreamCheckpointData: the batches of remembered times are rebuilt from their file
 * lists), unreadable files (an event naming the file; the rest of the batch is processed) and
 * invalid UTF-8 (a malformed-input event naming the file and the byte offset).
 */
import { after, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { Deferred, Effect } from "effect"
import { TestClock } from "effect/testing"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { DStream, type Listener, MalformedInputError, StreamingContext } from "../mod.ts"
import { FileStreamError } from "../receivers/file.ts"
import { run } from "./_support/run.ts"

/** Batch times are B + k seconds (B is a whole second, so batches fall on it). */
const B = 1_700_000_000_000
const BATCH = 1000

const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-file-stream-"))
after(() => fs.rmSync(root, { recursive: true, force: true }))
let dirCount = 0
const freshDirs = () => {
  const base = nodePath.join(root, `${dirCount++}`)
  const input = nodePath.join(base, "input")
  fs.mkdirSync(input, { recursive: true })
  return { input, checkpoint: nodePath.join(base, "checkpoint") }
}

/** Writes `content` to `dir/name` with modification time B + `offset` ms. */
const put = (dir: string, name: string, offset: number, content: string | Uint8Array): string => {
  const file = nodePath.join(dir, name)
  fs.writeFileSync(file, content)
  const at = new Date(B + offset)
  fs.utimesSync(file, at, at)
  return file
}

/** Builds the pipeline; a returned stream is the one `runFrom`'s `slice` option reads. */
type Build = (
  ssc: StreamingContext.StreamingContext,
  out: Array<readonly [number, unknown]>,
) => DStream.DStream<unknown> | DStream.Output<unknown> | void

interface Ran {
  /** [time − B, output] for every batch the output saw. */
  readonly out: ReadonlyArray<readonly [number, unknown]>
  readonly events: ReadonlyArray<Listener.StreamingEvent>
  readonly failed: boolean
}

/**
 * Runs a context from getOrCreate(checkpoint) under TestClock: the clock starts at B +
 * `startAt`, then advances `numBatches` batches (stopping early if the context fails); with
 * `slice`, finally slices the stream `build` returned over [B + from, B + to].
 */
const runFrom = (
  checkpoint: string,
  build: Build,
  options: {
    readonly startAt: number
    readonly numBatches: number
    readonly slice?: readonly [number, number]
  },
): Promise<Ran & { readonly sliced?: ReadonlyArray<readonly [number, ReadonlyArray<unknown>]> }> =>
  run(
    Effect.gen(function* () {
      yield* TestClock.setTime(B + options.startAt)
      const out: Array<readonly [number, unknown]> = []
      const events: Array<Listener.StreamingEvent> = []
      let sliceOf: DStream.DStream<unknown> | undefined
      const ssc = yield* StreamingContext.getOrCreate(checkpoint, (ssc) => {
        const built = build(ssc, out)
        sliceOf = DStream.isDStream(built) ? built : undefined
      }, { batchInterval: "1 second" })
      const stopped = yield* Deferred.make<void>()
      ssc.addStreamingListener((e) => {
        events.push(e)
        return e._tag === "StreamingStopped" ? Deferred.succeed(stopped, undefined) : undefined
      })
      return yield* Effect.gen(function* () {
        yield* ssc.start
        yield* Effect.yieldNow
        const first = (Math.floor((B + options.startAt) / BATCH) + 1) * BATCH
        let failed = false
        for (let k = 0; k < options.numBatches && !failed; k++) {
          yield* TestClock.adjust(BATCH)
          failed = yield* awaitBatchOrStop(ssc, stopped, first + k * BATCH)
        }
        let sliced: Array<readonly [number, ReadonlyArray<unknown>]> | undefined
        if (options.slice !== undefined && sliceOf !== undefined && !failed) {
          const pairs = yield* sliceOf.slice(B + options.slice[0], B + options.slice[1])
          sliced = pairs.map(([t, b]) => [t - B, b] as const)
        }
        return { out: out.map(([t, v]) => [t - B, v] as const), events, failed, sliced }
      }).pipe(Effect.ensuring(ssc.stop()))
    }).pipe(Effect.provide(TestClock.layer()), Effect.provide(NodeServices.layer)),
  )

/** Waits for the batch of `time`; `true` if the context stopped (failed) first. */
const awaitBatchOrStop = (
  ssc: StreamingContext.StreamingContext,
  stopped: Deferred.Deferred<void>,
  time: number,
): Effect.Effect<boolean> =>
  Effect.raceFirst(Effect.as(ssc.awaitBatch(time), false), Effect.as(Deferred.await(stopped), true))

/** textFileStream → map(Number) → reduceByWindow(+, 60 s, 1 s), the window sums per batch. */
const windowSums = (dir: string): Build => (ssc, out) => {
  const lines = ssc.textFileStream(dir)
  lines.map(Number).reduceByWindow((a, b) => a + b, "60 seconds", "1 second").foreachBatch((batch, time) => {
    out.push([time, batch[0]])
  })
  return lines
}

const receiverErrors = (events: ReadonlyArray<Listener.StreamingEvent>): Array<Listener.ReceiverInfo> =>
  events.flatMap((e) => e._tag === "ReceiverError" ? [e.receiverInfo] : [])

describe("file stream recovery from checkpointed file lists", () => {
  it("recovered windows see the files selected before the checkpoint (sums 10, 15, 21)", async () => {
    const uninterruptedDirs = freshDirs()
    for (let k = 1; k <= 6; k++) put(uninterruptedDirs.input, `${k}.txt`, k * BATCH - 500, `${k}\n`)
    const uninterrupted = await runFrom(uninterruptedDirs.checkpoint, windowSums(uninterruptedDirs.input), {
      startAt: 0,
      numBatches: 7,
    })
    assert.deepEqual(uninterrupted.out, [[1000, 1], [2000, 3], [3000, 6], [4000, 10], [5000, 15], [6000, 21], [
      7000,
      21,
    ]])

    const { input, checkpoint } = freshDirs()
    for (let k = 1; k <= 3; k++) put(input, `${k}.txt`, k * BATCH - 500, `${k}\n`)
    // First run: batches 1 s, 2 s, 3 s (one file each), a checkpoint after each; then it stops.
    const firstRun = await runFrom(checkpoint, windowSums(input), { startAt: 0, numBatches: 3 })
    assert.deepEqual(firstRun.out, uninterrupted.out.slice(0, 3))
    // Files 4, 5, 6 arrive while the process is down.
    for (let k = 4; k <= 6; k++) put(input, `${k}.txt`, k * BATCH - 500, `${k}\n`)
    // Back at 6.5 s: the missed batches 4, 5, 6 s run first, then 7 s.
    const recovered = await runFrom(checkpoint, windowSums(input), { startAt: 6500, numBatches: 1, slice: [0, 7000] })
    assert.equal(recovered.failed, false)
    assert.deepEqual(recovered.out, uninterrupted.out.slice(3))
    // slice over recovered time sees the same files as an uninterrupted run
    assert.deepEqual(recovered.sliced, [[1000, ["1"]], [2000, ["2"]], [3000, ["3"]], [4000, ["4"]], [5000, ["5"]], [
      6000,
      ["6"],
    ], [7000, []]])
  })

  it("remembers file lists for the whole window when the window is longer than the file remember duration", async () => {
    const { input, checkpoint } = freshDirs()
    // 90 s window over 30 s of remembered selections (minRememberDuration 30 s)
    const build: Build = (ssc, out) =>
      ssc.textFileStream(input, { minRememberDuration: "30 seconds" }).map(Number)
        .reduceByWindow((a, b) => a + b, "90 seconds", "1 second").foreachBatch((batch, time) => {
          out.push([time, batch[0]])
        })
    put(input, "a.txt", 500, "1\n") // batch 1 s
    put(input, "b.txt", 40_500, "10\n") // batch 41 s
    const firstRun = await runFrom(checkpoint, build, { startAt: 0, numBatches: 45 })
    assert.deepEqual(firstRun.out.at(-1), [45_000, 11])
    put(input, "c.txt", 45_500, "100\n") // batch 46 s, while down
    const recovered = await runFrom(checkpoint, build, { startAt: 46_500, numBatches: 1 })
    // 46 s re-run, then 47 s: file a (1 s) is still inside the 90 s window
    assert.deepEqual(recovered.out, [[46_000, 111], [47_000, 111]])
  })
})

describe("file streams and bad files", () => {
  it("a selected file that vanished or became a directory is reported and skipped; the rest is read", async () => {
    const { input, checkpoint } = freshDirs()
    put(input, "a.txt", 500, "1\n")
    const gone = put(input, "b.txt", 600, "2\n")
    const replaced = put(input, "c.txt", 700, "4\n")
    put(input, "d.txt", 800, "8\n")
    const firstRun = await runFrom(checkpoint, windowSums(input), { startAt: 0, numBatches: 2 })
    assert.deepEqual(firstRun.out, [[1000, 15], [2000, 15]])
    // While down: b.txt is deleted, c.txt replaced by a directory; e.txt arrives.
    fs.rmSync(gone)
    fs.rmSync(replaced)
    fs.mkdirSync(replaced)
    put(input, "e.txt", 2500, "16\n")
    const recovered = await runFrom(checkpoint, windowSums(input), { startAt: 3500, numBatches: 1 })
    assert.equal(recovered.failed, false)
    // batch 1 s is rebuilt from its file list without the unreadable files
    assert.deepEqual(recovered.out, [[3000, 25], [4000, 25]])
    const errors = receiverErrors(recovered.events)
    assert.deepEqual(errors.map((e) => (e.lastError as FileStreamError).path).sort(), [gone, replaced])
    for (const e of errors) {
      assert.ok(e.lastError instanceof FileStreamError)
      assert.equal(e.name, `files ${input}`)
      assert.ok(e.lastErrorMessage?.includes((e.lastError as FileStreamError).path), String(e.lastErrorMessage))
    }
    // Recovering again does not crash-loop: the same batches are rebuilt and reported again.
    const again = await runFrom(checkpoint, windowSums(input), { startAt: 5500, numBatches: 1 })
    assert.equal(again.failed, false)
    assert.deepEqual(again.out, [[5000, 25], [6000, 25]])
  })

  it("a file that becomes unreadable between selection and reading is reported; the batch's other files are read", async () => {
    const { input, checkpoint } = freshDirs()
    const release = await run(Deferred.make<void>())
    const out: Array<readonly [number, unknown]> = []
    put(input, "a.txt", 1500, "1\n")
    const bad = put(input, "b.txt", 1600, "2\n")
    put(input, "c.txt", 1700, "4\n")
    const events = await run(
      Effect.gen(function* () {
        yield* TestClock.setTime(B)
        const events: Array<Listener.StreamingEvent> = []
        const ssc = yield* StreamingContext.getOrCreate(checkpoint, (ssc) => {
          ssc.textFileStream(input).map(Number).foreachBatch((batch, time) =>
            Effect.gen(function* () {
              // batch 1 s waits: batch 2 s is cut (its files selected) meanwhile
              if (time === B + 1000) yield* Deferred.await(release)
              out.push([time - B, batch.reduce((a, b) => a + b, 0)])
            })
          )
        }, { batchInterval: "1 second" })
        const stopped = yield* Deferred.make<void>()
        const secondCut = yield* Deferred.make<void>()
        ssc.addStreamingListener((e) => {
          events.push(e)
          if (e._tag === "BatchSubmitted" && e.batchInfo.batchTime === B + 2000) {
            return Deferred.succeed(secondCut, undefined)
          }
          return e._tag === "StreamingStopped" ? Deferred.succeed(stopped, undefined) : undefined
        })
        yield* ssc.start
        yield* Effect.yieldNow
        yield* TestClock.adjust(BATCH) // batch 1 s: cut, its job waits
        yield* TestClock.adjust(BATCH) // batch 2 s: cut, files a, b, c selected
        yield* Deferred.await(secondCut)
        yield* Effect.promise(() => fs.promises.rm(bad))
        yield* Deferred.succeed(release, undefined)
        assert.equal(yield* awaitBatchOrStop(ssc, stopped, B + 2000), false)
        yield* ssc.stop()
        return events
      }).pipe(Effect.provide(TestClock.layer()), Effect.provide(NodeServices.layer)),
    )
    assert.deepEqual(out, [[1000, 0], [2000, 5]])
    const errors = receiverErrors(events)
    assert.equal(errors.length, 1)
    assert.ok(errors[0].lastError instanceof FileStreamError)
    assert.equal((errors[0].lastError as FileStreamError).path, bad)
    assert.ok(errors[0].lastErrorMessage?.includes(bad))
  })

  it("a file with invalid UTF-8 is reported as malformed input naming the file and byte offset; it adds no lines", async () => {
    const { input, checkpoint } = freshDirs()
    put(input, "a.txt", 500, "1\n2\n")
    // "3\n45", an invalid 0xff at byte 4, "\n", a stray continuation byte 0x80, "6\n"
    const binary = put(input, "b.bin", 600, new Uint8Array([0x33, 0x0a, 0x34, 0x35, 0xff, 0x0a, 0x80, 0x36, 0x0a]))
    put(input, "c.txt", 700, "100\n")
    const ran = await runFrom(checkpoint, (ssc, out) =>
      ssc.textFileStream(input).foreachBatch((batch, time) => {
        out.push([time, [...batch]])
      }), { startAt: 0, numBatches: 1 })
    assert.equal(ran.failed, false)
    assert.deepEqual(ran.out, [[1000, ["1", "2", "100"]]])
    const errors = receiverErrors(ran.events)
    assert.equal(errors.length, 1)
    const error = errors[0].lastError
    assert.ok(error instanceof MalformedInputError)
    assert.equal(error.source, binary)
    assert.equal(error.offset, 4)
    assert.equal(error.count, 2)
    assert.ok(errors[0].lastErrorMessage?.includes(binary) && errors[0].lastErrorMessage.includes("byte 4"))
  })

  it("a file the fileStream decoder throws on is reported and contributes nothing; the other files are decoded", async () => {
    const { input, checkpoint } = freshDirs()
    put(input, "a.rec", 500, "1,2")
    const bad = put(input, "b.rec", 600, "3,x")
    put(input, "c.rec", 700, "4")
    const ran = await runFrom(
      checkpoint,
      (ssc, out) =>
        ssc.fileStream(input, (bytes) =>
          new TextDecoder().decode(bytes).split(",").map((field) => {
            const n = Number(field)
            if (Number.isNaN(n)) throw new Error(`not a number: "${field}"`)
            return n
          })).foreachBatch((batch, time) => {
            out.push([time, [...batch]])
          }),
      { startAt: 0, numBatches: 1 },
    )
    assert.equal(ran.failed, false)
    assert.deepEqual(ran.out, [[1000, [1, 2, 4]]])
    const errors = receiverErrors(ran.events)
    assert.equal(errors.length, 1)
    assert.ok(errors[0].lastError instanceof FileStreamError)
    assert.equal(errors[0].lastError.path, bad)
    assert.equal(errors[0].lastErrorMessage, `Could not decode file ${bad}: not a number: "x"`)
  })
})
