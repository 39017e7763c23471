/**
 * Replay: the same event-time pipeline run live (records arriving over time, batches cut by the
 * TestClock-driven batch clock) and replayed over the same records (cut by record count, or by
 * event-time span, on a virtual clock) gives the same windows and the same late records. Also:
 * replay over a real directory of files ends by itself, and bad setups are typed errors.
 */
import { after, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { Effect, Stream } from "effect"
import {
  BatchJobError,
  Checkpoint,
  type DStream,
  EventTime,
  Replay,
  StreamingContext,
  Testing,
  ValidationError,
} from "../mod.ts"
import { failureOf, run, runExit, withPlatform } from "./_support/run.ts"

const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-replay-"))
after(() => fs.rmSync(root, { recursive: true, force: true }))

interface Ev {
  readonly k: string
  readonly t: number
}

// 600 records over ~60 s of event time, out of order by up to 2 s (the watermark delay is 3 s,
// so none is late whatever the batches), plus two records 20 s behind, 40 records after the
// newest one: late however the records are cut into batches of at most 30.
let seed = 7
const rand = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648
const records: Array<Ev> = []
for (let i = 0; i < 600; i++) {
  records.push({ k: `k${Math.floor(rand() * 5)}`, t: 100_000 + i * 100 + Math.floor(rand() * 2000) })
}
records.splice(300, 0, { k: "k1", t: records[259].t - 20_000 })
records.splice(450, 0, { k: "k2", t: records[409].t - 20_000 })

interface Collected {
  readonly windows: Array<string>
  readonly late: Array<string>
}

/** The pipeline under test: tumbling and session counts per key, with their late records. */
const pipeline = (events: DStream.DStream<Ev>, into: Collected): DStream.DStream<unknown> => {
  const keyed = events.withWatermark((e) => e.t, "3 seconds").keyBy((e) => e.k)
  const tumbling = keyed.countByEventWindow(EventTime.tumbling("4 seconds"))
  const sessions = keyed.aggregateByEventWindow(EventTime.session("700 millis"), 0, (n, e) => n + e.t % 7, {
    merge: (a, b) => a + b,
  })
  for (const [name, out] of [["tumbling", tumbling], ["session", sessions]] as const) {
    out.foreachBatch((b) => {
      for (const r of b) into.windows.push(`${name} ${r.key} ${r.start} ${r.end} ${r.value}`)
    })
    out.late().foreachBatch((b) => {
      for (const l of b) into.late.push(`${name} ${JSON.stringify(l.record)} ${l.window.start}`)
    })
  }
  return tumbling
}

const sortedCopy = (c: Collected) => ({ windows: [...c.windows].sort(), late: [...c.late].sort() })

/** Live: record i arrives at i × 40 ms of processing time; 1-second batches (25 records). */
const live = (): Promise<Collected> => {
  const batches: Array<Array<Ev>> = []
  records.forEach((r, i) => {
    const b = Math.floor((i * 40) / 1000)
    ;(batches[b] ??= []).push(r)
  })
  const into: Collected = { windows: [], late: [] }
  return run(
    Effect.map(
      Testing.run((ssc) => pipeline(Testing.input(ssc, batches), into), {
        numBatches: batches.length + 3,
        checkpoint: "mem",
      }),
      () => into,
    ),
  )
}

const replay = (cut: Replay.BatchCut<Ev>, source = Replay.fromIterable(records)): Promise<Collected> => {
  const into: Collected = { windows: [], late: [] }
  return run(
    Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      ssc.checkpoint("replay")
      pipeline(Replay.input(ssc, source, cut), into)
      yield* Replay.run(ssc)
      return into
    }).pipe(Effect.provide(Checkpoint.layerMemory)),
  )
}

describe("replay", () => {
  it("gives the same windows and late records as the live run, cut by count or by event-time span", async () => {
    const expected = sortedCopy(await live())
    assert.ok(expected.windows.length > 100, `only ${expected.windows.length} windows`)
    assert.equal(expected.late.length, 4) // both records 20 s behind, each for its tumbling window and its session
    for (
      const cut of [
        { recordsPerBatch: 7 },
        { recordsPerBatch: 30 },
        { eventTime: (e: Ev) => e.t, span: "1 second" },
      ] satisfies Array<Replay.BatchCut<Ev>>
    ) {
      assert.deepEqual(sortedCopy(await replay(cut)), expected, JSON.stringify(cut))
    }
    // From an Effect Stream in small chunks, too.
    const chunked = Replay.fromStream(Stream.fromIterable(records).pipe(Stream.rechunk(11)))
    assert.deepEqual(sortedCopy(await replay({ recordsPerBatch: 13 }, chunked)), expected)
  })

  it("over a directory reads every line of every file once, in arrival order, and ends by itself", async () => {
    const dir = nodePath.join(root, "history")
    fs.mkdirSync(dir)
    const lines: Array<string> = []
    for (let f = 0; f < 5; f++) {
      const content = Array.from({ length: 40 + f }, (_, i) => `file${f} line${i}`)
      lines.push(...content)
      const file = nodePath.join(dir, `part-${4 - f}.txt`) // names in reverse of arrival order
      fs.writeFileSync(file, content.join("\n") + "\n")
      const at = new Date(Date.now() - 10_000 + f * 1000)
      fs.utimesSync(file, at, at)
    }
    fs.writeFileSync(nodePath.join(dir, ".hidden"), "not me\n")
    const seen: Array<string> = []
    const batches: Array<number> = []
    await run(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 minute" })
        Replay.input(ssc, Replay.fromDirectory(dir), { recordsPerBatch: 50 }).foreachBatch((b) => {
          seen.push(...b)
          batches.push(b.length)
        })
        // The live program's shape: start, then await termination (which the end of the history brings).
        yield* Replay.start(ssc)
        yield* ssc.awaitTermination
        assert.equal(yield* ssc.state, "STOPPED")
      }).pipe(withPlatform),
    )
    assert.deepEqual(seen, lines)
    assert.deepEqual(batches, [50, 50, 50, 50, 10, 0])
  })

  it("bad setups are typed errors: no replay input, bad cut, missing directory", async () => {
    const noInput = await runExit(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      Testing.input(ssc, [[1]]).print()
      yield* Replay.run(ssc)
    }))
    const e1 = failureOf(noInput)
    assert.ok(e1 instanceof ValidationError && /no replay input/.test(e1.message), String(e1))

    const ssc = await run(StreamingContext.make({ batchInterval: "1 second" }))
    assert.throws(
      () => Replay.input(ssc, Replay.fromIterable([1]), { recordsPerBatch: 0 }),
      (e) => e instanceof ValidationError && /Records per batch must be a positive whole number: 0/.test(e.message),
    )
    await run(ssc.stop())

    const missing = await runExit(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        Replay.input(ssc, Replay.fromDirectory(nodePath.join(root, "nope")), { recordsPerBatch: 5 }).print()
        yield* Replay.run(ssc)
      }).pipe(withPlatform),
    )
    const e2 = failureOf(missing)
    assert.ok(e2 instanceof BatchJobError, String(e2))
    assert.ok(e2.cause instanceof Replay.ReplayError, String(e2.cause))
    assert.match(e2.cause.message, /Cannot replay directory ".*nope"/)
  })

  it("resumes from its checkpoint after a failure: the windows are those of an uninterrupted replay", async () => {
    const expected = sortedCopy(await replay({ recordsPerBatch: 7 }))
    const dir = nodePath.join(root, "replay-checkpoint")
    const attempt = (source: Replay.ReplaySource<Ev>, into: Collected) =>
      runExit(
        Effect.gen(function* () {
          const ssc = yield* StreamingContext.getOrCreate(dir, (ssc) => {
            pipeline(Replay.input(ssc, source, { recordsPerBatch: 7 }), into)
          })
          yield* Replay.run(ssc)
        }).pipe(withPlatform),
      )
    // The first run's source fails after 400 records (a disk gone, a broker down).
    const first: Collected = { windows: [], late: [] }
    const failing = Replay.fromStream(
      Stream.fromIterable(records).pipe(Stream.take(400), Stream.concat(Stream.fail("disk gone"))),
    )
    const exit1 = await attempt(failing, first)
    const e1 = failureOf(exit1)
    assert.ok(e1 instanceof BatchJobError && e1.cause instanceof Replay.ReplayError, String(e1))
    assert.ok(fs.readdirSync(dir).some((n) => n.startsWith("checkpoint-")))
    // The second run resumes after the records the newest checkpoint covers.
    const second: Collected = { windows: [], late: [] }
    const exit2 = await attempt(Replay.fromIterable(records), second)
    assert.equal(exit2._tag, "Success", String(failureOf(exit2)))
    assert.ok(first.windows.length > 0 && second.windows.length < expected.windows.length)
    const union = (a: Array<string>, b: Array<string>) => [...new Set([...a, ...b])].sort()
    assert.deepEqual(union(first.windows, second.windows), expected.windows)
    assert.deepEqual(union(first.late, second.late), expected.late)
    // A checkpoint of more records than the source has is a clear error.
    const third: Collected = { windows: [], late: [] }
    const exit3 = await attempt(Replay.fromIterable(records.slice(0, 10)), third)
    const e3 = failureOf(exit3)
    assert.ok(e3 instanceof BatchJobError && e3.cause instanceof Replay.ReplayError, String(e3))
    assert.match(
      e3.cause.message,
      /Cannot resume the replay of .*the checkpoint says \d+ records were replayed, but the source has only 10/,
    )
  })

  it("an interrupted replay (endless source) stops its context", async () => {
    const { ssc, timedOut, seen } = await run(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      let seen = 0
      Replay.input(ssc, Replay.fromStream(Stream.iterate(0, (n) => n + 1)), { recordsPerBatch: 1000 })
        .foreachBatch((b) => {
          seen += b.length
        })
      const result = yield* Effect.timeoutOption(Replay.run(ssc), "300 millis")
      return { ssc, timedOut: result._tag === "None", seen }
    }))
    assert.ok(timedOut)
    assert.ok(seen > 0)
    assert.equal(await run(ssc.state), "STOPPED")
  })
})
