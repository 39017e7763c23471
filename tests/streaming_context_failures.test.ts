/**
 * Failures that neither lose data nor stall the job: failure policies (stop / skip / retry) per
 * context and per output, dead letters for records operators throw on, output timeouts,
 * graceful stops that report what they could not process, honest scheduling delays, and
 * saveAsTextFiles writing whole records.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { mkdtemp, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Clock, Deferred, Effect, Exit, Fiber, Option, Schedule } from "effect"
import { TestClock, TestConsole } from "effect/testing"
import * as NodeServices from "@effect/platform-node/NodeServices"
import {
  BatchJobError,
  Checkpoint,
  IllegalStateError,
  Listener,
  OutputTimeoutError,
  Receiver,
  StreamingContext,
  UnprocessedRecordsError,
} from "../mod.ts"
import { failureOf, run } from "./_support/run.ts"

const withTestClock = <A, E>(effect: Effect.Effect<A, E, any>): Effect.Effect<A, E> =>
  effect.pipe(Effect.provide(TestClock.layer()), Effect.provide(NodeServices.layer)) as Effect.Effect<A, E>

type Event<T extends Listener.StreamingEvent["_tag"]> = Extract<Listener.StreamingEvent, { _tag: T }>

const collect = (ssc: StreamingContext.StreamingContext): Array<Listener.StreamingEvent> => {
  const events: Array<Listener.StreamingEvent> = []
  ssc.addStreamingListener((e) => {
    events.push(e)
  })
  return events
}

const ofTag = <T extends Listener.StreamingEvent["_tag"]>(
  events: ReadonlyArray<Listener.StreamingEvent>,
  tag: T,
): Array<Event<T>> => events.filter((e): e is Event<T> => e._tag === tag)

/** A receiver storing `n` numbers at once, then idling; `stored` completes once they are in. */
const numbers = (n: number, stored: Deferred.Deferred<void>, options?: Partial<Receiver.Receiver<number>>) =>
  Receiver.make<number>({
    name: "numbers",
    ...options,
    run: (store) =>
      Effect.gen(function* () {
        if (n > 0) yield* store.all(Array.from({ length: n }, (_, i) => i))
        yield* Deferred.succeed(stored, undefined)
        yield* Effect.never
      }),
  })

describe("failure policies", () => {
  it('onFailure: "skip" reports the failed batch and keeps generating batches', async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second", onFailure: "skip" })
      const events = collect(ssc)
      const seen: Array<number> = []
      ssc.queueStream([[1], [2], [3]]).foreachBatch((batch) => {
        if (batch[0] === 2) return Effect.fail("sink down")
        seen.push(batch[0])
      })
      yield* ssc.start
      for (let k = 0; k < 3; k++) yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(3000)
      const state = yield* ssc.state
      yield* ssc.stop()
      return { seen, state, events }
    })))
    assert.deepEqual(out.seen, [1, 3])
    assert.equal(out.state, "ACTIVE")
    const completed = ofTag(out.events, "BatchCompleted").map((e) => e.batchInfo)
    assert.deepEqual(completed.map((b) => b.batchTime), [1000, 2000, 3000])
    assert.equal(completed[0].failureReason, undefined)
    assert.match(completed[1].failureReason ?? "", /Output operation 0 \("foreachBatch"\) failed: sink down/)
    assert.equal(completed[1].outputOperationInfos[0].failureReason, "sink down")
    assert.match(Listener.formatProgress(completed[1]), /; skipped after a failure: Output operation 0 .*sink down$/)
    const outputs = ofTag(out.events, "OutputOperationCompleted").map((e) => e.outputOperationInfo)
    assert.deepEqual(outputs.map((o) => [o.batchTime, o.failureReason]), [
      [1000, undefined],
      [2000, "sink down"],
      [3000, undefined],
    ])
  })

  it("a skipped batch counts as done: it is checkpointed and the inputs are told", async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const store = yield* Checkpoint.makeMemory()
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second", onFailure: "skip" })
      ssc.checkpoint("memory")
      const stored = yield* Deferred.make<void>()
      const counts = ssc.receiverStream(numbers(3, stored)).mapToPair((n) => [n % 2, 1] as const)
        .updateStateByKey((values: ReadonlyArray<number>, state: Option.Option<number>) =>
          Option.some(values.length + Option.getOrElse(state, () => 0))
        )
        .checkpoint("1 second")
      counts.foreachBatch((_batch, time) => time === 2000 ? Effect.fail("sink down") : undefined)
      const events = collect(ssc)
      yield* Effect.provideService(ssc.start, Checkpoint.CheckpointStore, store)
      yield* Deferred.await(stored)
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(2000)
      const latest = yield* Checkpoint.readLatest(store)
      const state = yield* ssc.state
      yield* ssc.stop()
      return { latest, state, events }
    })))
    assert.equal(out.state, "ACTIVE")
    assert.ok(Option.isSome(out.latest))
    assert.equal(out.latest.value.time, 2000)
    const completed = ofTag(out.events, "BatchCompleted").map((e) => e.batchInfo)
    assert.deepEqual(completed.map((b) => b.batchTime), [1000, 2000])
    assert.ok(completed[1].failureReason !== undefined)
  })

  it("an output's own onFailure overrides the context's policy", async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" }) // default: stop
      const nums = ssc.queueStream([[1], [2], [3]])
      const kept: Array<number> = []
      nums.foreachBatch((batch) => batch[0] === 2 ? Effect.fail("flaky sink") : undefined, { onFailure: "skip" })
      nums.foreachBatch((batch) => {
        kept.push(batch[0])
      })
      yield* ssc.start
      for (let k = 0; k < 3; k++) yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(3000)
      const state = yield* ssc.state
      yield* ssc.stop()
      return { kept, state }
    })))
    assert.deepEqual(out.kept, [1, 2, 3])
    assert.equal(out.state, "ACTIVE")
  })

  it("retry runs a failed output again on its Schedule and succeeds", async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({
        batchInterval: "1 second",
        onFailure: { retry: Schedule.min([Schedule.spaced("100 millis"), Schedule.recurs(3)]) },
      })
      let attempts = 0
      const written: Array<number> = []
      ssc.queueStream([[7]]).foreachBatch((batch) =>
        Effect.suspend(() => {
          attempts++
          if (attempts < 3) return Effect.fail(`attempt ${attempts} failed`)
          written.push(...batch)
          return Effect.void
        })
      )
      const events = collect(ssc)
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("100 millis")
      yield* TestClock.adjust("100 millis")
      yield* ssc.awaitBatch(1000)
      yield* ssc.stop()
      return { attempts, written, events }
    })))
    assert.equal(out.attempts, 3)
    assert.deepEqual(out.written, [7])
    const outputs = ofTag(out.events, "OutputOperationCompleted").map((e) => e.outputOperationInfo)
    assert.equal(outputs.length, 1)
    assert.equal(outputs[0].failureReason, undefined)
  })

  it('retry then "skip": when the schedule is exhausted the batch is reported and skipped', async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      let attempts = 0
      ssc.queueStream([[1], [2]]).foreachBatch(
        (batch) =>
          Effect.suspend(() => {
            if (batch[0] !== 1) return Effect.void
            attempts++
            return Effect.fail("still down")
          }),
        { onFailure: { retry: Schedule.recurs(2), then: "skip" } },
      )
      const events = collect(ssc)
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(2000)
      yield* ssc.stop()
      return { attempts, events }
    })))
    assert.equal(out.attempts, 3)
    const completed = ofTag(out.events, "BatchCompleted").map((e) => e.batchInfo)
    assert.deepEqual(completed.map((b) => b.batchTime), [1000, 2000])
    assert.match(completed[0].failureReason ?? "", /still down \(after 3 attempts\)/)
  })

  it('retry then "stop" (the default) stops the context with the last failure', async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second", onFailure: { retry: Schedule.recurs(1) } })
      let attempts = 0
      ssc.queueStream([[1]]).foreachBatch(() => Effect.fail(`down for good (${++attempts})`))
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      return { attempts, error: failureOf(yield* Effect.exit(ssc.awaitTermination)) }
    })))
    assert.equal(out.attempts, 2)
    assert.ok(out.error instanceof BatchJobError)
    assert.equal(out.error.cause, "down for good (2)")
  })

  it("a policy that is not stop, skip or retry is rejected with a ValidationError", async () => {
    const exit = await Effect.runPromiseExit(
      StreamingContext.make({ batchInterval: "1 second", onFailure: "ignore" as unknown as "skip" }),
    )
    assert.ok(Exit.isFailure(exit))
    assert.match(String((failureOf(exit) as Error).message), /onFailure must be "stop", "skip" or/)
  })
})

describe("dead letters", () => {
  it('recordErrors: "deadLetter" routes a throwing record to ssc.deadLetters and keeps the batch', async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second", recordErrors: "deadLetter" })
      const letters: Array<unknown> = []
      // registered first: still runs after the batch's other outputs
      ssc.deadLetters.foreachBatch((batch) => {
        letters.push(...batch.map((d) => [d.record, d.operator, (d.cause as Error).message, d.batchTime]))
      })
      const totals: Array<number> = []
      ssc.queueStream([[1, 2, 3, 4, 5], [6]])
        .map((n) => {
          if (n === 3) throw new Error("bad record 3")
          return n * 10
        })
        .filter((n) => n !== 60)
        .mapToPair((n) => [n % 20, n] as const)
        .reduceByKey((a, b) => {
          if (b === 50) throw new Error("cannot add 50")
          return a + b
        })
        .foreachBatch((batch) => {
          totals.push(...batch.map(([, v]) => v))
        })
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(2000)
      const state = yield* ssc.state
      yield* ssc.stop()
      return { letters, totals, state }
    })))
    assert.equal(out.state, "ACTIVE")
    // 10 and 50 share key 10 (50 failed in reduceByKey); 20 and 40 share key 0
    assert.deepEqual(out.totals, [10, 60])
    assert.deepEqual(out.letters, [
      [3, "map", "bad record 3", 1000],
      [[10, 50], "reduceByKey", "cannot add 50", 1000],
    ])
  })

  it("without dead letters a throwing record fails the batch, and ssc.deadLetters is refused", async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      const refused = yield* Effect.exit(Effect.try({ try: () => ssc.deadLetters, catch: (e) => e }))
      ssc.queueStream([[1, 2]]).map((n) => {
        if (n === 2) throw new Error("bad record 2")
        return n
      }).foreachBatch(() => {})
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      return { refused: failureOf(refused), error: failureOf(yield* Effect.exit(ssc.awaitTermination)) }
    })))
    assert.ok(out.refused instanceof IllegalStateError)
    assert.match(out.refused.message, /recordErrors: "deadLetter"/)
    assert.ok(out.error instanceof BatchJobError)
    assert.match(out.error.message, /bad record 2/)
  })
})

describe("output timeouts", () => {
  it("a hung output times out: OutputOperationCompleted says so and, with skip, the next batch runs", async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({
        batchInterval: "1 second",
        outputTimeout: "5 seconds",
        onFailure: "skip",
      })
      const events = collect(ssc)
      const done: Array<number> = []
      ssc.queueStream([[1], [2]]).foreachBatch((batch) =>
        batch[0] === 1 ? Effect.never : Effect.sync(() => done.push(...batch))
      )
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      for (let k = 0; k < 5; k++) yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(2000)
      yield* ssc.stop()
      return { events, done }
    })))
    assert.deepEqual(out.done, [2])
    const outputs = ofTag(out.events, "OutputOperationCompleted").map((e) => e.outputOperationInfo)
    assert.equal(outputs[0].batchTime, 1000)
    assert.equal(outputs[0].endTime! - outputs[0].startTime!, 5000)
    assert.match(
      outputs[0].failureReason ?? "",
      /Output operation 0 \("foreachBatch"\) of batch 1000 ms timed out after 5000 ms/,
    )
  })

  it("with the default stop policy a timed-out output stops the context with an OutputTimeoutError cause", async () => {
    const error = await run(withTestClock(Effect.gen(function* () {
      // default timeout: 10 × batch, at least 30 s
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      ssc.queueStream([[1]]).foreachBatch(() => Effect.never)
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("29 seconds")
      assert.equal(yield* ssc.state, "ACTIVE")
      yield* TestClock.adjust("1 second")
      return failureOf(yield* Effect.exit(ssc.awaitTermination))
    })))
    assert.ok(error instanceof BatchJobError)
    assert.ok(error.cause instanceof OutputTimeoutError)
    assert.equal(error.cause.timeoutMillis, 30_000)
  })

  it("an output's own timeout overrides the context's", async () => {
    const error = await run(withTestClock(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        ssc.queueStream([[1]]).print(10, { timeout: "2 seconds" })
        ssc.queueStream([[1]]).foreachBatch(() => Effect.never, { timeout: "3 seconds" })
        yield* ssc.start
        yield* TestClock.adjust("1 second")
        yield* TestClock.adjust("3 seconds")
        return failureOf(yield* Effect.exit(ssc.awaitTermination))
      }).pipe(Effect.provide(TestConsole.layer)),
    ))
    assert.ok(error instanceof BatchJobError)
    assert.equal(error.outputId, 1)
    assert.ok(error.cause instanceof OutputTimeoutError)
    assert.equal(error.cause.timeoutMillis, 3000)
  })
})

describe("graceful stop guarantees", () => {
  it("a graceful stop that times out with records unprocessed fails, naming how many", async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      const stored = yield* Deferred.make<void>()
      ssc.receiverStream(numbers(100, stored)).foreachBatch(() => Effect.never, { timeout: Infinity })
      yield* ssc.start
      yield* Deferred.await(stored)
      yield* TestClock.adjust("1 second") // batch 1000 (100 records) hangs in its output
      const stopping = yield* Effect.forkChild(ssc.stop({ graceful: true, timeout: "3 seconds" }))
      yield* TestClock.adjust("3 seconds")
      const stop = yield* Fiber.await(stopping)
      const awaited = yield* Effect.exit(ssc.awaitTermination)
      return { stop: failureOf(stop), awaited: failureOf(awaited), state: yield* ssc.state }
    })))
    assert.ok(out.stop instanceof UnprocessedRecordsError, String(out.stop))
    assert.equal(out.stop.records, 100)
    assert.equal(out.stop.reason, "timeout")
    assert.equal(out.stop.message, "Graceful stop timed out after 3000 ms: 100 received records were not processed")
    assert.equal(out.awaited, out.stop)
    assert.equal(out.state, "STOPPED")
  })

  it("with the write-ahead log the unprocessed records are kept: the stop succeeds and the next run has them", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dstream-stop-wal-"))
    try {
      const second = await run(withTestClock(Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        ssc.checkpoint(dir)
        const stored = yield* Deferred.make<void>()
        ssc.receiverStream(numbers(100, stored, { writeAheadLog: true }))
          .foreachBatch(() => Effect.never, { timeout: Infinity })
        yield* ssc.start
        yield* Deferred.await(stored)
        yield* TestClock.adjust("1 second")
        const stopping = yield* Effect.forkChild(ssc.stop({ graceful: true, timeout: "3 seconds" }))
        yield* TestClock.adjust("3 seconds")
        const stop = yield* Fiber.await(stopping)
        assert.ok(Exit.isSuccess(stop), String(failureOf(stop)))
        // the next run over the same checkpoint directory processes them
        const next = yield* StreamingContext.make({ batchInterval: "1 second" })
        next.checkpoint(dir)
        const none = yield* Deferred.make<void>()
        let count = 0
        next.receiverStream(numbers(0, none, { writeAheadLog: true })).foreachBatch((batch) => {
          count += batch.length
        })
        yield* next.start
        yield* Deferred.await(none)
        yield* TestClock.adjust("1 second")
        yield* next.awaitBatch(yield* Clock.currentTimeMillis)
        yield* next.stop()
        return count
      })))
      assert.equal(second, 100)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("a batch of many CPU-bound nodes is interrupted at the graceful stop's bound", async () => {
    // Real time, not TestClock: the point is CPU time that keeps timers from firing.
    const spin = (ms: number) => {
      const until = Date.now() + ms
      while (Date.now() < until) { /* CPU-bound */ }
    }
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "100 millis" })
        const stored = yield* Deferred.make<void>()
        let stream = ssc.receiverStream(numbers(10, stored))
        // 40 nodes of 50 ms each: a 2-second batch
        for (let i = 0; i < 40; i++) {
          stream = stream.transform((batch) => {
            spin(50)
            return batch
          })
        }
        const started = yield* Deferred.make<void>()
        ssc.addStreamingListener((e) => e._tag === "BatchStarted" ? Deferred.succeed(started, undefined) : undefined)
        stream.foreachBatch(() => {})
        yield* ssc.start
        yield* Deferred.await(stored)
        yield* Deferred.await(started)
        const t0 = Date.now()
        const stop = yield* Effect.exit(ssc.stop({ graceful: true, timeout: "300 millis" }))
        return { elapsed: Date.now() - t0, error: failureOf(stop) }
      }).pipe(Effect.provide(NodeServices.layer)),
    )
    assert.ok(out.elapsed < 1200, `stop took ${out.elapsed} ms`)
    assert.ok(out.error instanceof UnprocessedRecordsError, String(out.error))
    assert.equal(out.error.records, 10)
  })
})

describe("honest scheduling delay", () => {
  it("a batch the clock cuts late is submitted at its batch time, so the scheduling delay shows the lag", async () => {
    const infos = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      // the listener holds the clock fiber in the cut of batch 1000 for 2.5 s (as a CPU-bound
      // job fiber would): batches 2000 and 3000 are cut late, at 3500
      ssc.addStreamingListener((e) =>
        e._tag === "BatchSubmitted" && e.batchInfo.batchTime === 1000 ? Effect.sleep("2500 millis") : undefined
      )
      const events = collect(ssc)
      ssc.queueStream([[1], [2], [3]]).foreachBatch(() => {})
      yield* ssc.start
      for (let k = 0; k < 3; k++) yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("500 millis")
      yield* ssc.awaitBatch(3000)
      yield* ssc.stop()
      return ofTag(events, "BatchCompleted").map((e) => e.batchInfo)
    })))
    assert.deepEqual(infos.map((b) => b.batchTime), [1000, 2000, 3000])
    assert.equal(infos[1].submissionTime, 2000)
    assert.equal(infos[1].processingStartTime, 3500)
    assert.equal(infos[1].schedulingDelay, 1500)
    assert.equal(infos[2].schedulingDelay, 500)
  })

  it("SchedulingDelayGrowing is published when the delay has grown for N consecutive batches", async () => {
    const events = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second", schedulingDelayWarning: 3 })
      const events = collect(ssc)
      // every batch takes 1.5 intervals: the delay grows by 500 ms per batch
      ssc.queueStream<number>([]).foreachBatch(() => Effect.sleep("1500 millis"))
      yield* ssc.start
      for (let k = 0; k < 7; k++) yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(4000)
      yield* ssc.stop()
      return events
    })))
    const growing = ofTag(events, "SchedulingDelayGrowing")
    assert.equal(growing.length, 1, JSON.stringify(growing))
    assert.deepEqual(
      { time: growing[0].batchTime, delay: growing[0].schedulingDelay, batches: growing[0].batches },
      { time: 4000, delay: 1500, batches: 3 },
    )
  })
})

describe("saveAsTextFiles and line breaks", () => {
  it("writes every record whole: embedded line breaks are kept, as Spark writes toString", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dstream-newline-"))
    try {
      await run(withTestClock(Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        ssc.queueStream([["line one\nline two", "plain", "a\r\nb"]]).saveAsTextFiles(join(dir, "out"))
        yield* ssc.start
        yield* TestClock.adjust("1 second")
        yield* ssc.awaitBatch(1000)
        yield* ssc.stop()
      })))
      const text = await readFile(join(dir, "out-1000", "part-00000"), "utf8")
      assert.equal(text, "line one\nline two\nplain\na\r\nb\n")
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
