/**
 * StreamingContext lifecycle (Spark's StreamingContextSuite rules), the batch clock's time
 * model under TestClock, and the output operations.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Deferred, Effect, Exit, Fiber, Stream } from "effect"
import { TestClock, TestConsole } from "effect/testing"
import * as NodeServices from "@effect/platform-node/NodeServices"
import {
  BatchClock,
  BatchJobError,
  IllegalStateError,
  type Listener,
  StreamingContext,
  Testing,
  ValidationError,
} from "../mod.ts"
import { failureOf, run, runExit } from "./_support/run.ts"

const withTestClock = <A, E>(effect: Effect.Effect<A, E, any>): Effect.Effect<A, E> =>
  effect.pipe(Effect.provide(TestClock.layer()), Effect.provide(NodeServices.layer)) as Effect.Effect<A, E>

const make = StreamingContext.make({ batchInterval: "1 second" })

describe("StreamingContext lifecycle", () => {
  it("start() with no output operation fails with a clear error and leaves the context STOPPED", async () => {
    const result = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* make
      ssc.queueStream([[1]]).map((x) => x)
      const exit = yield* Effect.exit(ssc.start)
      return { error: failureOf(exit), state: yield* ssc.state }
    })))
    assert.ok(result.error instanceof ValidationError)
    assert.match(result.error.message, /no output operations registered, so nothing to execute/)
    assert.equal(result.state, "STOPPED")
  })

  it("moves INITIALIZED → ACTIVE → STOPPED; start twice only warns; stop is idempotent", async () => {
    const states = await run(withTestClock(
      Effect.gen(function* () {
        const ssc = yield* make
        ssc.queueStream([[1]]).print()
        const states = [yield* ssc.state]
        yield* ssc.start
        states.push(yield* ssc.state)
        yield* ssc.start
        states.push(yield* ssc.state)
        yield* ssc.stop()
        states.push(yield* ssc.state)
        yield* ssc.stop()
        states.push(yield* ssc.state)
        return states
      }).pipe(Effect.provide(TestConsole.layer)),
    ))
    assert.deepEqual(states, ["INITIALIZED", "ACTIVE", "ACTIVE", "STOPPED", "STOPPED"])
  })

  it("start() after stop() fails: a context can never be restarted", async () => {
    const error = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* make
      ssc.queueStream([[1]]).foreachBatch(() => {})
      yield* ssc.start
      yield* ssc.stop()
      return failureOf(yield* Effect.exit(ssc.start))
    })))
    assert.ok(error instanceof IllegalStateError)
    assert.match(error.message, /already been stopped/)
  })

  it("stop() before start() marks the context STOPPED; start() then fails", async () => {
    const result = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* make
      ssc.queueStream([[1]]).foreachBatch(() => {})
      yield* ssc.stop()
      return { state: yield* ssc.state, error: failureOf(yield* Effect.exit(ssc.start)) }
    })))
    assert.equal(result.state, "STOPPED")
    assert.ok(result.error instanceof IllegalStateError)
  })

  it("only one context may be active in a process", async () => {
    const result = await run(withTestClock(Effect.gen(function* () {
      const first = yield* make
      first.queueStream([[1]]).foreachBatch(() => {})
      const second = yield* make
      second.queueStream([[1]]).foreachBatch(() => {})
      yield* first.start
      const error = failureOf(yield* Effect.exit(second.start))
      const activeIsFirst = (yield* StreamingContext.getActive) === first
      yield* first.stop()
      // Once the first has stopped, another context may start.
      const third = yield* make
      third.queueStream([[1]]).foreachBatch(() => {})
      yield* third.start
      const thirdState = yield* third.state
      yield* third.stop()
      return { error, activeIsFirst, thirdState }
    })))
    assert.ok(result.error instanceof IllegalStateError)
    assert.match(result.error.message, /only one may be active in a process/)
    assert.ok(result.activeIsFirst)
    assert.equal(result.thirdState, "ACTIVE")
  })

  it("adding inputs, transformations or outputs after start (or after stop) fails", async () => {
    const errors = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* make
      const nums = ssc.queueStream([[1]])
      nums.foreachBatch(() => {})
      yield* ssc.start
      const caught: Array<unknown> = []
      const attempt = (f: () => void) => {
        try {
          f()
        } catch (e) {
          caught.push(e)
        }
      }
      attempt(() => nums.map((x) => x + 1))
      attempt(() => nums.print())
      attempt(() => ssc.queueStream([[2]]))
      yield* ssc.stop()
      attempt(() => nums.filter(() => true))
      return caught
    })))
    assert.equal(errors.length, 4)
    for (const e of errors) assert.ok(e instanceof IllegalStateError)
    assert.match((errors[0] as Error).message, /after starting a context/)
    assert.match((errors[3] as Error).message, /after stopping a context/)
  })

  it("a failing output surfaces in awaitTermination as a BatchJobError and stops the context", async () => {
    const result = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* make
      ssc.queueStream([[1], [2], [3]]).foreachBatch((batch) => batch[0] === 2 ? Effect.fail("sink down") : undefined)
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      const exit = yield* Effect.exit(ssc.awaitTermination)
      // awaitTermination fails once the stop is complete: another context may start at once
      return { error: failureOf(exit), state: yield* ssc.state, active: yield* StreamingContext.getActive }
    })))
    assert.equal(result.active, undefined)
    assert.ok(result.error instanceof BatchJobError)
    assert.equal(result.error.batchTime, 2000)
    assert.equal(result.error.outputId, 0)
    assert.equal(result.error.cause, "sink down")
    assert.match(result.error.message, /Batch 2000 ms failed in output operation 0: sink down/)
    assert.equal(result.state, "STOPPED")
  })

  it("awaitTerminationOrTimeout() is false on time-out and true after stop", async () => {
    const result = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* make
      ssc.queueStream<number>([]).foreachBatch(() => {})
      yield* ssc.start
      const waiting = yield* Effect.forkChild(ssc.awaitTerminationOrTimeout("5 seconds"))
      yield* TestClock.adjust("5 seconds")
      const timedOut = yield* Fiber.await(waiting)
      yield* ssc.stop()
      const afterStop = yield* ssc.awaitTerminationOrTimeout("5 seconds")
      yield* ssc.awaitTermination
      return { timedOut, afterStop }
    })))
    assert.ok(Exit.isSuccess(result.timedOut))
    assert.equal(result.timedOut.value, false)
    assert.equal(result.afterStop, true)
  })

  it("graceful stop processes everything the receivers stored before stopping", async () => {
    const counted = await run(withTestClock(Effect.gen(function* () {
      const { Receiver } = yield* Effect.promise(() => import("../mod.ts"))
      const ssc = yield* make
      let total = 0
      const stored = yield* Deferred.make<void>()
      ssc.receiverStream(Receiver.make<number>({
        name: "numbers",
        run: (store) =>
          Effect.gen(function* () {
            for (let i = 0; i < 100; i++) yield* store(i)
            yield* Deferred.succeed(stored, undefined)
            yield* Effect.never
          }),
      })).count().foreachBatch((batch) => {
        total += batch[0]
      })
      yield* ssc.start
      yield* Deferred.await(stored)
      // Stop before any batch was cut: the stored records must still be processed.
      const stopping = yield* Effect.forkChild(ssc.stop({ graceful: true }))
      yield* TestClock.adjust("1 second")
      yield* Fiber.await(stopping)
      return total
    })))
    assert.equal(counted, 100)
  })
})

describe("batch clock (Spark's time model)", () => {
  it("the first batch is at the next multiple of the interval; zero time is one interval before", () => {
    assert.equal(BatchClock.firstBatchTime(0, 1000), 1000)
    assert.equal(BatchClock.firstBatchTime(12_000, 2000), 14_000)
    assert.equal(BatchClock.firstBatchTime(12_500, 2000), 14_000)
    assert.equal(BatchClock.firstBatchTime(13_999, 2000), 14_000)
  })

  it("TestClock.adjust(interval) advances exactly one batch, at zero + k·interval", async () => {
    const times = await run(withTestClock(Effect.gen(function* () {
      yield* TestClock.setTime(12_500)
      const ssc = yield* StreamingContext.make({ batchInterval: "2 seconds" })
      const times: Array<number> = []
      ssc.queueStream<number>([]).foreachBatch((_b, t) => {
        times.push(t)
      })
      yield* ssc.start
      const seen: Array<number> = []
      yield* TestClock.adjust("1500 millis") // now 14000: batch 1
      yield* ssc.awaitBatch(14_000)
      seen.push(times.length)
      for (let k = 0; k < 3; k++) {
        yield* TestClock.adjust("2 seconds")
        yield* ssc.awaitBatch(16_000 + k * 2000)
        seen.push(times.length)
      }
      yield* ssc.stop()
      return { times, seen }
    })))
    assert.deepEqual(times.times, [14_000, 16_000, 18_000, 20_000])
    assert.deepEqual(times.seen, [1, 2, 3, 4])
  })

  it("a late batch still runs with its own time: never skipped, never merged, in time order", async () => {
    const out = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* make
      const times: Array<number> = []
      ssc.queueStream([[1], [2], [3], [4]]).foreachBatch((batch, t) =>
        Effect.gen(function* () {
          times.push(t)
          // The first batch takes 2.5 intervals: batches 2 and 3 become due while it runs.
          if (batch[0] === 1) yield* Effect.sleep("2500 millis")
        })
      )
      const completed: Array<Listener.BatchInfo> = []
      ssc.addStreamingListener((e) => {
        if (e._tag === "BatchCompleted") completed.push(e.batchInfo)
      })
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(4000)
      yield* ssc.stop()
      return { times, completed }
    })))
    assert.deepEqual(out.times, [1000, 2000, 3000, 4000])
    assert.deepEqual(out.completed.map((b) => b.batchTime), [1000, 2000, 3000, 4000])
    // Batch 2 waited for batch 1: its scheduling delay shows it.
    assert.ok((out.completed[1].schedulingDelay ?? 0) >= 1000, JSON.stringify(out.completed[1]))
    assert.ok((out.completed[0].processingDelay ?? 0) >= 2500)
  })

  it("outputs run in registration order within each batch", async () => {
    const order = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* make
      const order: Array<string> = []
      const nums = ssc.queueStream([[1], [2]])
      nums.foreachBatch((_b, t) => {
        order.push(`a${t}`)
      })
      nums.map((x) => x * 2).foreachBatch((_b, t) => {
        order.push(`b${t}`)
      })
      nums.foreachBatch((_b, t) => {
        order.push(`c${t}`)
      })
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(2000)
      yield* ssc.stop()
      return order
    })))
    assert.deepEqual(order, ["a1000", "b1000", "c1000", "a2000", "b2000", "c2000"])
  })

  it("BatchClock.ticks emits each batch time once the clock reaches it", async () => {
    const ticks = await run(withTestClock(Effect.gen(function* () {
      const fiber = yield* Effect.forkChild(Stream.runCollect(Stream.take(BatchClock.ticks(1000, 1000), 3)))
      yield* TestClock.adjust("3 seconds")
      return yield* Fiber.await(fiber)
    })))
    assert.ok(Exit.isSuccess(ticks))
    assert.deepEqual(Array.from(ticks.value), [1000, 2000, 3000])
  })
})

describe("queueStream (InputStreamsSuite)", () => {
  it("oneAtATime takes one queued batch per batch time", async () => {
    const out = await run(Testing.run((ssc) => ssc.queueStream([["1", "2"], ["3", "4"], ["5"]]), { numBatches: 4 }))
    assert.deepEqual(out, [["1", "2"], ["3", "4"], ["5"], []])
  })

  it("oneAtATime = false merges everything queued into one batch; an empty queue gives an empty batch", async () => {
    const queue: Array<ReadonlyArray<string>> = [["1"], ["2"], ["3"]]
    const out = await run(Testing.run((ssc) => {
      const s = ssc.queueStream(queue, { oneAtATime: false })
      s.foreachBatch((_b, t) => {
        if (t === 1000) queue.push(["4"], ["5"])
      })
      return s
    }, { numBatches: 3 }))
    assert.deepEqual(out, [["1", "2", "3"], ["4", "5"], []])
  })

  it("an empty queue gives the default batch when one is set", async () => {
    const out = await run(Testing.run((ssc) => ssc.queueStream<string>([], { defaultBatch: ["d"] }), { numBatches: 2 }))
    assert.deepEqual(out, [["d"], ["d"]])
  })
})

describe("output operations", () => {
  it("print() uses Spark's format: 43 dashes, Time: <ms> ms, up to num elements, ..., blank line", async () => {
    const lines = await run(
      Effect.gen(function* () {
        yield* Testing.run((ssc) => {
          const s = ssc.queueStream<readonly [string, number]>([[["hello", 1], ["world", 1]], [], [["a", 1]]])
          s.print(1)
          return s
        }, { numBatches: 3 })
        return yield* TestConsole.logLines
      }).pipe(Effect.provide(TestConsole.layer)),
    )
    const dashes = "-".repeat(43)
    assert.equal(
      lines.join("\n"),
      [
        dashes,
        "Time: 1000 ms",
        dashes,
        "(hello,1)",
        "...",
        "",
        dashes,
        "Time: 2000 ms",
        dashes,
        "",
        dashes,
        "Time: 3000 ms",
        dashes,
        "(a,1)",
        "",
      ].join("\n"),
    )
  })

  it("print() defaults to 10 elements", async () => {
    const lines = await run(
      Effect.gen(function* () {
        yield* Testing.run((ssc) => {
          const s = ssc.queueStream([Array.from({ length: 11 }, (_, i) => i)])
          s.print()
          return s
        }, { numBatches: 1 })
        return yield* TestConsole.logLines
      }).pipe(Effect.provide(TestConsole.layer)),
    )
    const text = lines.join("\n").split("\n")
    assert.deepEqual(text.slice(3), ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "...", ""])
  })

  it("saveAsTextFiles() writes prefix-<ms>[.suffix] per batch, empty batches too, with no temporary leftovers", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dstream-save-"))
    try {
      await run(
        Testing.run((ssc) => {
          const s = ssc.queueStream<readonly [string, number]>([[["a", 1], ["b", 2]], []])
          s.saveAsTextFiles(join(dir, "out"), "txt")
          s.saveAsTextFiles(join(dir, "plain"))
          return s
        }, { numBatches: 2 }).pipe(Effect.provide(NodeServices.layer)),
      )
      assert.deepEqual((await readdir(dir)).sort(), ["out-1000.txt", "out-2000.txt", "plain-1000", "plain-2000"])
      assert.equal(await readFile(join(dir, "out-1000.txt", "part-00000"), "utf8"), "(a,1)\n(b,2)\n")
      assert.equal(await readFile(join(dir, "out-2000.txt", "part-00000"), "utf8"), "")
      assert.deepEqual((await readdir(join(dir, "plain-1000"))).sort(), ["_SUCCESS", "part-00000"])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("batchFileName() follows Spark's rddToFileName", async () => {
    const { DStream } = await import("../mod.ts")
    assert.equal(DStream.batchFileName("out", "txt", 1000), "out-1000.txt")
    assert.equal(DStream.batchFileName("out", "", 1000), "out-1000")
    assert.equal(DStream.batchFileName("", "txt", 1000), "1000.txt")
  })

  it("toStream() gives the batches as an Effect Stream of [time, batch] that ends when the context stops", async () => {
    const got = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* make
      const results = ssc.queueStream([[1, 2], [3]]).map((x) => x * 10).toStream()
      yield* ssc.start
      const collector = yield* Effect.forkChild(Stream.runCollect(results))
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(2000)
      yield* ssc.stop()
      return Array.from(yield* Fiber.join(collector))
    })))
    assert.deepEqual(got, [[1000, [10, 20]], [2000, [30]]])
  })

  it("foreachRDD is foreachBatch under Spark's name and receives the batch time", async () => {
    const seen: Array<string> = []
    await run(Testing.run((ssc) => {
      const s = ssc.queueStream([["x"], ["y"]])
      s.foreachRDD((batch, time) => {
        seen.push(`${time}:${batch.join()}`)
      })
      return s
    }, { numBatches: 2 }))
    assert.deepEqual(seen, ["1000:x", "2000:y"])
  })
})

describe("listener events", () => {
  it("publishes started, batch submitted/started/completed and output events with BatchInfo figures", async () => {
    const events = await run(withTestClock(Effect.gen(function* () {
      const ssc = yield* make
      const events: Array<string> = []
      let completed: Listener.BatchInfo | undefined
      ssc.addStreamingListener((e) => {
        events.push(e._tag)
        if (e._tag === "BatchCompleted" && completed === undefined) completed = e.batchInfo
      })
      ssc.queueStream([[1, 2, 3]]).foreachBatch(() => {})
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(1000)
      yield* ssc.stop()
      return { events, completed }
    })))
    assert.deepEqual(events.events, [
      "StreamingStarted",
      "BatchSubmitted",
      "BatchStarted",
      "OutputOperationStarted",
      "OutputOperationCompleted",
      "BatchCompleted",
      "StreamingStopped",
    ])
    const info = events.completed!
    assert.equal(info.batchTime, 1000)
    assert.equal(info.numRecords, 3)
    assert.equal(info.streamIdToInputInfo[0].numRecords, 3)
    assert.equal(info.schedulingDelay, 0)
    assert.equal(info.totalDelay, (info.schedulingDelay ?? 0) + (info.processingDelay ?? 0))
    assert.equal(info.outputOperationInfos.length, 1)
  })

  it("events is an Effect Stream of the same events", async () => {
    const tags = await run(withTestClock(Effect.scoped(Effect.gen(function* () {
      const ssc = yield* make
      ssc.queueStream([[1]]).foreachBatch(() => {})
      const events = yield* ssc.events
      const collector = yield* Effect.forkChild(
        Stream.runCollect(Stream.takeUntil(events, (e) => e._tag === "BatchCompleted")),
      )
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      const collected = yield* Fiber.join(collector)
      yield* ssc.stop()
      return Array.from(collected, (e: Listener.StreamingEvent) => e._tag)
    }))))
    assert.deepEqual(tags, [
      "StreamingStarted",
      "BatchSubmitted",
      "BatchStarted",
      "OutputOperationStarted",
      "OutputOperationCompleted",
      "BatchCompleted",
    ])
  })
})

describe("validation", () => {
  it("a batch interval that is not a positive duration is rejected with a ValidationError", async () => {
    const exit = await runExit(StreamingContext.make({ batchInterval: 0 }))
    const error = failureOf(exit)
    assert.ok(error instanceof ValidationError)
    assert.match(error.message, /Batch interval must be a positive/)
  })
})
