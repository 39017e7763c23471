/**
 * Metrics and tracing: the engine's figures as Effect metrics read back as Prometheus text from
 * the UI server's `/metrics`, and the batch / output-operation spans seen by an in-memory tracer.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Cause, Effect, Exit, Metric, Option, Schedule, Tracer } from "effect"
import { Receiver, StreamingContext, Testing } from "../mod.ts"
import * as StreamingUI from "../lib/StreamingUI.ts"
import { batchSpan, outputSpan } from "../lib/_internal/spans.ts"
import { collectEvents, completed, live, waitFor } from "./_support/live.ts"

/** `name{labels} value` lines of a Prometheus text body, by series. */
const parseProm = (text: string): Map<string, number> => {
  const out = new Map<string, number>()
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    const at = line.lastIndexOf(" ")
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

describe("Metrics", () => {
  it("/metrics serves batch counters, delay histograms and records per input matching the events", async () => {
    const batches = Array.from({ length: 6 }, (_, i) => Array.from({ length: 10 * (i + 1) }, (_, j) => `w${j % 7}`))
    const result = await live(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "100 millis" })
        const ui = yield* StreamingUI.serve(ssc, { port: 0 })
        const events = collectEvents(ssc)
        ssc.queueStream(batches).mapToPair((w) => [w, 1]).reduceByKey((a, b) => a + b).foreachBatch(() => {})
        yield* ssc.start
        yield* waitFor(() => completed(events).length >= 8, "8 completed batches")
        yield* ssc.stop()
        const text = yield* Effect.promise(() => fetch(`${ui.url}metrics`).then((r) => r.text()))
        const contentType = yield* Effect.promise(() =>
          fetch(`${ui.url}metrics`).then((r) => r.headers.get("content-type"))
        )
        return { text, contentType, done: completed(events) }
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
    )
    const m = parseProm(result.text)
    const n = result.done.length
    const records = result.done.reduce((s, b) => s + b.numRecords, 0)
    assert.match(result.contentType ?? "", /^text\/plain; version=0\.0\.4/)
    assert.equal(m.get("dstream_batches_completed_total"), n)
    assert.equal(m.get('dstream_input_records_total{input="queueStream"}'), records)
    assert.equal(records, 10 + 20 + 30 + 40 + 50 + 60)
    assert.equal(m.get("dstream_processing_time_ms_count"), n)
    assert.equal(m.get("dstream_scheduling_delay_ms_count"), n)
    assert.equal(m.get("dstream_total_delay_ms_count"), n)
    const totalSum = result.done.reduce((s, b) => s + (b.totalDelay ?? 0), 0)
    assert.equal(m.get("dstream_total_delay_ms_sum"), totalSum)
    assert.equal(m.get('dstream_total_delay_ms_bucket{le="+Inf"}'), n)
    assert.ok(totalSum >= 0 && totalSum < n * 1000, `plausible total delay sum: ${totalSum} ms over ${n} batches`)
    assert.equal(m.get("dstream_last_completed_batch_time_ms"), result.done[n - 1].batchTime)
    // The last batch of the queue was empty: its rate gauge reads 0.
    assert.equal(m.get('dstream_input_rate{input="queueStream"}'), 0)
    assert.equal(m.get("dstream_batches_failed_total") ?? 0, 0)
  })

  it("counts receiver restarts and errors, and the keys of a named stateful stream", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dstream-metrics-"))
    try {
      const { text, records, receivers } = await live(
        Effect.gen(function* () {
          const ssc = yield* StreamingContext.make({ batchInterval: "100 millis" })
          ssc.checkpoint(join(dir, "checkpoint"))
          const ui = yield* StreamingUI.serve(ssc, { port: 0 })
          const events = collectEvents(ssc)
          let starts = 0
          ssc.receiverStream(Receiver.make<string>({
            name: "flaky",
            restartSchedule: Schedule.spaced("20 millis"),
            run: (store) =>
              Effect.gen(function* () {
                starts++
                yield* store.all(["a b", "c"])
                if (starts <= 2) return yield* Effect.fail(new Error(`failure ${starts}`))
                yield* Effect.never
              }),
          }))
            .flatMap((line) => line.split(" "))
            .mapToPair((w) => [w, 1])
            .updateStateByKey(
              (values: ReadonlyArray<number>, state: Option.Option<number>) =>
                Option.some(values.reduce((a, b) => a + b, Option.getOrElse(state, () => 0))),
              { name: "counts" },
            )
            .foreachBatch(() => {})
          yield* ssc.start
          yield* waitFor(
            () => starts >= 3 && completed(events).some((b) => b.numRecords > 0),
            "three receiver starts and stored records in a completed batch",
          )
          // One more batch, so the gauges are read after all three stores were processed.
          const seen = completed(events).length
          yield* waitFor(() => completed(events).length > seen + 1, "two more batches")
          const receivers = yield* Effect.promise(() => fetch(`${ui.url}api/receivers`).then((r) => r.json()))
          yield* ssc.stop()
          const records = completed(events).reduce((n, b) => n + b.numRecords, 0)
          return {
            records,
            receivers,
            text: yield* Effect.promise(() => fetch(`${ui.url}metrics`).then((r) => r.text())),
          }
        }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
      )
      const m = parseProm(text)
      assert.equal(m.get('dstream_receiver_restarts_total{receiver="flaky"}'), 2)
      assert.equal(m.get('dstream_receiver_errors_total{receiver="flaky"}'), 2)
      assert.equal(m.get('dstream_state_keys{stream="counts"}'), 3)
      assert.ok(records > 0)
      assert.equal(m.get('dstream_input_records_total{input="flaky"}'), records)
      // The page's input row: the receiver, its restarts and its last error (before the stop: ACTIVE).
      assert.equal(receivers.length, 1)
      assert.equal(receivers[0].name, "flaky")
      assert.equal(receivers[0].status, "ACTIVE")
      assert.equal(receivers[0].restarts, 2)
      assert.equal(receivers[0].errors, 2)
      assert.equal(receivers[0].lastErrorMessage, "Receiver failed: failure 2")
      assert.equal(typeof receivers[0].lastErrorTime, "number")
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe("Tracing", () => {
  /** A tracer keeping every span it makes. */
  const memoryTracer = () => {
    const spans: Array<Tracer.NativeSpan> = []
    const tracer = Tracer.make({
      span: (options) => {
        const span = new Tracer.NativeSpan(options)
        spans.push(span)
        return span
      },
    })
    return { spans, tracer }
  }

  /** What the scheduler's runBatch does, through the span functions: the batch, then each output in order. */
  const runBatch = (
    time: number,
    records: number | (() => number),
    outputs: ReadonlyArray<Effect.Effect<void, unknown>>,
  ) =>
    batchSpan(
      Effect.gen(function* () {
        for (let id = 0; id < outputs.length; id++) {
          const exit = yield* Effect.exit(outputSpan(outputs[id], { batchTime: time, outputId: id, name: `out${id}` }))
          if (Exit.isFailure(exit)) return yield* Effect.failCause(exit.cause)
        }
      }),
      { batchTime: time, records },
    )

  it("makes one span per batch with one child per output operation, with their attributes", async () => {
    const { spans, tracer } = memoryTracer()
    const exit = await Effect.runPromise(
      Effect.gen(function* () {
        yield* runBatch(1000, 5, [Effect.void, Effect.void])
        yield* runBatch(2000, 7, [Effect.void, Effect.void])
        // Records read when the span ends (a queue stream counts them while the batch computes).
        return yield* Effect.exit(runBatch(3000, () => 1, [Effect.void, Effect.fail(new Error("output broke"))]))
      }).pipe(Effect.withTracer(tracer)),
    )
    assert.ok(Exit.isFailure(exit))
    const batches = spans.filter((s) => s.name === "dstream.batch")
    assert.deepEqual(batches.map((s) => s.attributes.get("dstream.batch.time")), [1000, 2000, 3000])
    assert.deepEqual(batches.map((s) => s.attributes.get("dstream.batch.records")), [5, 7, 1])
    for (const batch of batches) {
      const children = spans.filter((s) => Option.isSome(s.parent) && s.parent.value.spanId === batch.spanId)
      assert.deepEqual(children.map((c) => c.name), ["dstream.output out0", "dstream.output out1"])
      assert.deepEqual(children.map((c) => c.attributes.get("dstream.output.id")), [0, 1])
      for (const c of children) {
        assert.equal(c.attributes.get("dstream.batch.time"), batch.attributes.get("dstream.batch.time"))
        assert.equal(c.traceId, batch.traceId)
        assert.equal(c.status._tag, "Ended")
      }
    }
    const failedOutput = spans.find((s) =>
      s.name === "dstream.output out1" && s.attributes.get("dstream.batch.time") === 3000
    )!
    assert.ok(failedOutput.status._tag === "Ended" && Exit.isFailure(failedOutput.status.exit))
    const lastBatch = batches[2]
    assert.ok(lastBatch.status._tag === "Ended" && Exit.isFailure(lastBatch.status.exit))
    assert.ok(batches[0].status._tag === "Ended" && Exit.isSuccess(batches[0].status.exit))
    assert.ok(Cause.hasFails(Exit.isFailure(exit) ? exit.cause : Cause.empty))
  })
  it("a running pipeline makes one batch span per batch with one child per output, under the user's tracer", async () => {
    const { spans, tracer } = memoryTracer()
    await Effect.runPromise(
      Testing.run((ssc) => {
        const nums = Testing.input(ssc, [[1, 2], [3], []])
        nums.foreachBatch(() => {})
        return nums.map((n) => n * 2)
      }, { numBatches: 3 }).pipe(Effect.withTracer(tracer)),
    )
    const batches = spans.filter((s) => s.name === "dstream.batch")
    assert.deepEqual(batches.map((s) => s.attributes.get("dstream.batch.time")), [1000, 2000, 3000])
    assert.deepEqual(batches.map((s) => s.attributes.get("dstream.batch.records")), [2, 1, 0])
    for (const batch of batches) {
      const children = spans.filter((s) => Option.isSome(s.parent) && s.parent.value.spanId === batch.spanId)
      assert.deepEqual(children.map((c) => c.attributes.get("dstream.output.id")), [0, 1])
      assert.deepEqual(children.map((c) => c.name), ["dstream.output foreachBatch", "dstream.output foreachBatch"])
    }
  })
})
