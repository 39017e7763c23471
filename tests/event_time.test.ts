/**
 * Event time under TestClock: watermarks, tumbling / sliding / session windows with
 * out-of-order and late records, both output modes, the late side output, and window state
 * dropped once the watermark passes. Batches are 1 s of processing time; event times are
 * independent of them (the windows are not multiples of the batch interval).
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect, Logger, Option } from "effect"
import {
  Checkpoint,
  type DStream,
  EventTime,
  type Listener,
  StreamingContext,
  Testing,
  ValidationError,
} from "../mod.ts"
import { failureOf, run, runExit } from "./_support/run.ts"

interface Ev {
  readonly k: string
  readonly t: number
  readonly v?: number
}
const ev = (k: string, t: number, v = 1): Ev => ({ k, t, v })

type Win<R> = readonly [string, number, number, R]
const flat = <R>(batch: ReadonlyArray<EventTime.WindowResult<string, R>>): Array<Win<R>> =>
  batch.map((r) => [r.key, r.start, r.end, r.value] as const)

/** Runs `build` over `batches` and returns each batch's windows, late records and progress. */
const runWindows = <R>(
  batches: ReadonlyArray<ReadonlyArray<Ev>>,
  build: (w: EventTime.WatermarkedDStream<readonly [string, Ev]>) => EventTime.EventWindowDStream<
    string,
    R,
    readonly [string, Ev]
  >,
  options: { readonly delay?: number; readonly numBatches?: number; readonly idleAdvance?: number } = {},
) =>
  Effect.gen(function* () {
    const late: Array<Array<readonly [number, number, number, number]>> = []
    const progress: Array<EventTime.WindowProgress> = []
    const windows = yield* Testing.run((ssc) => {
      const out = build(
        Testing.input(ssc, batches)
          .withWatermark((e) => e.t, options.delay ?? 5000, {
            idleAdvance: options.idleAdvance,
          })
          .keyBy((e) => e.k),
      )
      out.late().foreachBatch((b) => {
        late.push(b.map((l) => [l.record[1].t, l.window.start, l.window.end, l.watermark] as const))
      })
      out.progress().foreachBatch((b) => {
        progress.push(...b)
      })
      return out
    }, { numBatches: options.numBatches ?? batches.length, checkpoint: "mem" })
    return { windows: windows.map(flat), late, progress }
  })

// Tumbling 10 s windows, watermark delay 5 s. The watermark in effect for each batch is the
// one computed after the previous batch: -, 7000, 16000, 16000, 16000, 35000.
const tumblingInput = [
  [ev("a", 1000), ev("a", 12000), ev("b", 3000)],
  [ev("a", 4000), ev("b", 21000)], // a@4000 is out of order but on time (its window ends at 10000 > 7000)
  [ev("a", 8000), ev("a", 15000)], // a@8000 is late: its window [0, 10000) ended at or below 16000
  [],
  [ev("c", 40000)],
  [],
]

type Equals<X, Y> = (<T>() => T extends X ? 1 : 2) extends (<T>() => T extends Y ? 1 : 2) ? true : false
const expectType = <T>(_value: T) => ({ toBe: <U>(_check: Equals<T, U>) => {} })

/** Type tests (`deno check` runs them): the event-time operators' types, and misuses that do not compile. */
const typed = (ssc: StreamingContext.StreamingContext) => {
  const events = Testing.input<Ev>(ssc, [])
  const w = events.withWatermark((e) => e.t, "1 second")
  expectType(w).toBe<EventTime.WatermarkedDStream<Ev>>(true)
  const keyed = w.keyBy((e) => e.k)
  expectType(keyed).toBe<EventTime.WatermarkedDStream<readonly [string, Ev]>>(true)
  expectType(keyed.filter((kv) => kv[0] !== "x")).toBe<EventTime.WatermarkedDStream<readonly [string, Ev]>>(true)
  const counts = keyed.countByEventWindow(EventTime.tumbling("1 minute"))
  expectType(counts).toBe<EventTime.EventWindowDStream<string, number, readonly [string, Ev]>>(true)
  expectType(counts.late()).toBe<DStream.DStream<EventTime.LateRecord<readonly [string, Ev]>>>(true)
  const sums = keyed.aggregateByEventWindow(EventTime.session("1 minute"), 0, (n, e) => n + e.t, {
    merge: (a, b) => a + b,
  })
  expectType(sums).toBe<EventTime.EventWindowDStream<string, number, readonly [string, Ev]>>(true)
  const piped = events.pipe(
    EventTime.withWatermark((e: Ev) => e.t, 0),
    EventTime.keyBy((e: Ev) => e.k),
    EventTime.reduceByWindow(EventTime.sliding(10, 5), (a: Ev, b: Ev) => (a.t > b.t ? a : b)),
  )
  expectType(piped).toBe<EventTime.EventWindowDStream<string, Ev, readonly [string, Ev]>>(true)
  // @ts-expect-error event-time windows need [key, value] elements
  w.countByEventWindow(EventTime.tumbling(10))
  // @ts-expect-error the event-time function returns epoch milliseconds
  events.withWatermark((e) => e.k, 0)
  // @ts-expect-error reduce keeps the value type
  keyed.reduceByEventWindow(EventTime.tumbling(10), (a, b) => a.t + b.t)
}

describe("event-time windows", () => {
  it("the operators build pipelines of the expected types", async () => {
    const ssc = await run(StreamingContext.make({ batchInterval: "1 second" }))
    assert.doesNotThrow(() => typed(ssc))
    await run(ssc.stop())
  })

  it("tumbling windows in append mode emit each window once, when the watermark passes its end", async () => {
    const { windows, late, progress } = await run(
      runWindows(tumblingInput, (w) => w.countByEventWindow(EventTime.tumbling("10 seconds"))),
    )
    assert.deepEqual(windows, [
      [],
      [],
      [["a", 0, 10000, 2], ["b", 0, 10000, 1]],
      [],
      [],
      [["a", 10000, 20000, 2], ["b", 20000, 30000, 1]],
    ])
    assert.deepEqual(late, [[], [], [[8000, 0, 10000, 16000]], [], [], []])
    assert.deepEqual(progress.map((p) => p.watermark), [undefined, 7000, 16000, 16000, 16000, 35000])
    assert.deepEqual(progress.map((p) => p.lateRecords), [0, 0, 1, 0, 0, 0])
    // a[0,10) b[0,10) a[10,20) | + b[20,30) | − [0,10) | | + c[40,50) | − a[10,20) b[20,30)
    assert.deepEqual(progress.map((p) => p.openWindows), [3, 4, 2, 2, 3, 1])
  })

  it("tumbling windows in update mode emit the windows each batch changed, and drop finished ones", async () => {
    const { windows, progress } = await run(
      runWindows(tumblingInput, (w) => w.countByEventWindow(EventTime.tumbling("10 seconds"), { mode: "update" })),
    )
    assert.deepEqual(windows, [
      [["a", 0, 10000, 1], ["a", 10000, 20000, 1], ["b", 0, 10000, 1]], // in the order first touched
      [["a", 0, 10000, 2], ["b", 20000, 30000, 1]],
      [["a", 10000, 20000, 2]],
      [],
      [["c", 40000, 50000, 1]],
      [],
    ])
    assert.deepEqual(progress.map((p) => p.openWindows), [3, 4, 2, 2, 3, 1])
  })

  it("sliding windows put a record in every window it falls in; a record can be late for some of them", async () => {
    // size 10 s, slide 5 s, delay 2 s: watermarks -, 10000, 10000, 28000
    const { windows, late } = await run(
      runWindows(
        [
          [ev("a", 7000), ev("a", 12000)],
          [ev("a", 3000), ev("a", 9000)],
          [ev("b", 30000)],
          [],
        ],
        (w) =>
          w.reduceByEventWindow(EventTime.sliding("10 seconds", "5 seconds"), (x, y) => ({ ...x, v: x.v! + y.v! })),
        { delay: 2000 },
      ),
    )
    assert.deepEqual(windows.map((b) => b.map(([k, s, e, r]) => [k, s, e, r.v])), [
      [],
      [["a", 0, 10000, 1]],
      [],
      [["a", 5000, 15000, 3], ["a", 10000, 20000, 1]],
    ])
    assert.deepEqual(late, [
      [],
      [[3000, 0, 10000, 10000], [3000, -5000, 5000, 10000], [9000, 0, 10000, 10000]],
      [],
      [],
    ])
  })

  it("session windows merge out-of-order records whose gaps overlap and close at last event + gap", async () => {
    // gap 5 s, delay 10 s: watermarks -, 10000, 10000, 30000
    const input = [
      [ev("a", 1000, 1), ev("a", 20000, 2), ev("b", 2000, 4)],
      [ev("a", 13000, 8), ev("a", 16000, 16)], // 16000 bridges [13000,18000) and [20000,25000)
      [ev("a", 4000, 32), ev("c", 40000, 64)], // a@4000 is late: its session would end at 9000 <= 10000
      [],
    ]
    const sum = (w: EventTime.WatermarkedDStream<readonly [string, Ev]>, mode: EventTime.OutputMode) =>
      w.aggregateByEventWindow(EventTime.session("5 seconds"), 0, (n, e) => n + e.v!, {
        merge: (x, y) => x + y,
        mode,
      })
    const append = await run(runWindows(input, (w) => sum(w, "append"), { delay: 10000 }))
    assert.deepEqual(append.windows, [
      [],
      [["a", 1000, 6000, 1], ["b", 2000, 7000, 4]],
      [],
      [["a", 13000, 25000, 26]],
    ])
    assert.deepEqual(append.late, [[], [], [[4000, 4000, 9000, 10000]], []])
    assert.deepEqual(append.progress.map((p) => p.openWindows), [3, 1, 2, 1])

    const update = await run(runWindows(input, (w) => sum(w, "update"), { delay: 10000 }))
    assert.deepEqual(update.windows, [
      [["a", 1000, 6000, 1], ["a", 20000, 25000, 2], ["b", 2000, 7000, 4]],
      [["a", 13000, 25000, 26]],
      [["c", 40000, 45000, 64]],
      [],
    ])
  })

  it("the watermark never decreases, even when later batches hold only older records", async () => {
    const { progress } = await run(
      runWindows(
        [[ev("a", 50000)], [ev("a", 20000)], [ev("a", 30000)], [ev("a", 60000)], [ev("a", 1000)], []],
        (w) => w.countByEventWindow(EventTime.tumbling("7 seconds")),
      ),
    )
    const marks = progress.map((p) => p.watermark)
    assert.deepEqual(marks, [undefined, 45000, 45000, 45000, 55000, 55000])
  })

  it("window state is dropped once the watermark passes: idle advance brings it back to zero in quiet periods", async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `k${i}`)
    const burst = keys.map((k, i) => ev(k, 1000 + i * 10))
    const input = [burst, [], [], [], [], [], [], [], [], keys.map((k) => ev(k, 100_000)), [], [], [], [], [], []]
    const quiet = await run(
      runWindows(input, (w) => w.countByEventWindow(EventTime.tumbling("2 seconds")), {
        delay: 1000,
        idleAdvance: 2000,
      }),
    )
    const open = quiet.progress.map((p) => p.openWindows)
    assert.equal(open[0], 50)
    assert.equal(open[8], 0, `state not dropped in the quiet period: ${open}`)
    assert.equal(open[9], 50)
    assert.equal(open[open.length - 1], 0, `state not dropped after the second burst: ${open}`)
    assert.equal(quiet.windows.flat().length, 100)
    // Without idle advance the watermark only moves with data (Structured Streaming): the first
    // burst's windows close when the second burst arrives, the second's stay open.
    const still = await run(
      runWindows(input, (w) => w.countByEventWindow(EventTime.tumbling("2 seconds")), { delay: 1000 }),
    )
    const open2 = still.progress.map((p) => p.openWindows)
    assert.equal(open2[8], 50)
    assert.equal(open2[open2.length - 1], 50)
    assert.equal(still.windows.flat().length, 50)
  })

  it("late records are logged as a warning when no late() stream reads them, never dropped silently", async () => {
    const warnings: Array<string> = []
    const capture = Logger.make((options) => {
      if (options.logLevel !== "Warn") return
      const m = options.message
      warnings.push(Array.isArray(m) ? m.map(String).join(" ") : String(m))
    })
    const build = (withLate: boolean) =>
      Testing.run((ssc) => {
        const out = Testing.input(ssc, tumblingInput)
          .withWatermark((e) => e.t, 5000)
          .keyBy((e) => e.k)
          .countByEventWindow(EventTime.tumbling("10 seconds"), { name: "counts" })
        if (withLate) out.late().foreachBatch(() => {})
        return out
      }, { numBatches: tumblingInput.length, checkpoint: "mem" }).pipe(Effect.provide(Logger.layer([capture])))
    await run(build(false))
    assert.deepEqual(warnings, [
      "1 late record(s) dropped by counts in batch 3000 ms (watermark 16000 ms); read them with late()",
    ])
    warnings.length = 0
    await run(build(true))
    assert.deepEqual(warnings, [])
  })

  it("the pipeable functions build the same operators", async () => {
    const out = await run(
      Testing.run((ssc) =>
        Testing.input(ssc, tumblingInput).pipe(
          EventTime.withWatermark((e: Ev) => e.t, "5 seconds"),
          EventTime.keyBy((e: Ev) => e.k),
          EventTime.countByWindow(EventTime.tumbling("10 seconds")),
        ), { numBatches: tumblingInput.length, checkpoint: "mem" }),
    )
    assert.deepEqual(out.map(flat)[2], [["a", 0, 10000, 2], ["b", 0, 10000, 1]])
  })

  it("a bad event time fails the batch with an EventTimeError naming the record", async () => {
    const exit = await runExit(
      Testing.run((ssc) =>
        Testing.input(ssc, [[{ t: 1 }, { t: Number.NaN }]])
          .withWatermark((e) => e.t, 0)
          .keyBy(() => "k")
          .countByEventWindow(EventTime.tumbling(10)), { numBatches: 1, checkpoint: "mem" }),
    )
    const cause = (failureOf(exit) as { cause?: unknown }).cause
    assert.ok(cause instanceof EventTime.EventTimeError, String(cause))
    assert.match(cause.message, /returned NaN for \{"t":null\}/)
  })

  it("bad settings are typed errors: session without merge, slide longer than size, negative delay", async () => {
    const ssc = await run(StreamingContext.make({ batchInterval: "1 second" }))
    const w = Testing.input(ssc, [[ev("a", 1)]]).withWatermark((e) => e.t, 0).keyBy((e) => e.k)
    assert.throws(
      () => w.aggregateByEventWindow(EventTime.session(10), 0, (n) => n + 1),
      (e) => e instanceof ValidationError && /needs a merge function/.test(e.message),
    )
    assert.throws(() => EventTime.sliding(10, 20), ValidationError)
    assert.throws(
      () => Testing.input(ssc, [[1]]).withWatermark((n) => n, -5),
      (e) => e instanceof ValidationError && /Watermark delay must be zero or a positive/.test(e.message),
    )
    const plain: DStream.DStream<readonly [string, number]> = Testing.input(ssc, [[["a", 1] as const]])
    // @ts-expect-error event-time windows need a watermarked stream
    assert.throws(() => EventTime.countByWindow(plain, EventTime.tumbling(10)), ValidationError)
    await run(ssc.stop())
  })

  it("the watermark and the open windows go into the graph checkpoint", async () => {
    const build = (ssc: StreamingContext.StreamingContext, batches: ReadonlyArray<ReadonlyArray<Ev>>) => {
      const out = Testing.input(ssc, batches)
        .withWatermark((e) => e.t, 5000)
        .keyBy((e) => e.k)
        .countByEventWindow(EventTime.tumbling("10 seconds"), { name: "counts" })
      return out
    }
    const program = Effect.gen(function* () {
      const first = yield* Testing.run((ssc) => build(ssc, tumblingInput.slice(0, 2)).checkpoint("1 second"), {
        numBatches: 2,
        checkpoint: "dir",
      })
      const store = yield* Checkpoint.CheckpointStore
      const latest = Option.getOrUndefined(yield* Checkpoint.readLatest(store))
      return { first, latest }
    }).pipe(Effect.provide(Checkpoint.layerMemory))
    const { first, latest } = await run(program)
    assert.deepEqual(first.map(flat), [[], []])
    assert.ok(latest !== undefined)
    const nodes = (latest.payload as { nodes: Record<string, unknown> }).nodes
    assert.deepEqual(nodes["EventTimeWatermark#0"], { maxEventTime: 21000, watermark: 16000, lastDataTime: 2000 })
    assert.ok(JSON.stringify(nodes["counts"]).includes("[0,10000,"))
  })

  it("each event-time operator reports its watermark and late records in an EventTimeProgress listener event per batch", async () => {
    const seen: Array<string> = []
    const progress: Array<Listener.StreamingEvent> = []
    const windows = await run(Testing.run((ssc) => {
      ssc.addStreamingListener((e) => {
        if (e._tag === "EventTimeProgress") progress.push(e)
        if (e._tag === "EventTimeProgress" || e._tag === "BatchCompleted") seen.push(e._tag)
      })
      const keyed = Testing.input(ssc, tumblingInput).withWatermark((e) => e.t, 5000).keyBy((e) => e.k)
      const counts = keyed.countByEventWindow(EventTime.tumbling("10 seconds"), { name: "counts" })
      keyed.countByEventWindow(EventTime.session("30 seconds")).print()
      return counts
    }, { numBatches: tumblingInput.length, checkpoint: "mem" }))
    assert.equal(windows.length, tumblingInput.length)
    const of = (op: string) =>
      progress.flatMap((e) => e._tag === "EventTimeProgress" && e.progress.operator === op ? [e.progress] : [])
    const counts = of("counts")
    assert.deepEqual(counts.map((p) => p.batchTime), [1000, 2000, 3000, 4000, 5000, 6000])
    assert.deepEqual(counts.map((p) => p.watermark), [undefined, 7000, 16000, 16000, 16000, 35000])
    assert.deepEqual(counts.map((p) => p.lateRecords), [0, 0, 1, 0, 0, 0])
    assert.deepEqual(counts.map((p) => p.emitted), [0, 0, 2, 0, 0, 2])
    assert.deepEqual(counts.map((p) => p.openWindows), [3, 4, 2, 2, 3, 1])
    // the unnamed session operator reports too; its sessions (gap 30 s) are not late at 8000
    const sessions = progress.flatMap((e) =>
      e._tag === "EventTimeProgress" && e.progress.operator !== "counts" ? [e.progress] : []
    )
    assert.equal(sessions.length, 6)
    assert.match(sessions[0].operator, /^EventTimeWindowDStream \[\d+\]$/)
    assert.deepEqual(sessions.map((p) => p.lateRecords), [0, 0, 0, 0, 0, 0])
    // both operators' events come before their batch's BatchCompleted
    assert.deepEqual(seen.slice(0, 6), [
      "EventTimeProgress",
      "EventTimeProgress",
      "BatchCompleted",
      "EventTimeProgress",
      "EventTimeProgress",
      "BatchCompleted",
    ])
  })
})
