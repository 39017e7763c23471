/**
 * The public test kit (`effect-dstream/testing`): several collected streams, outputs kept up to
 * a failure, copies rather than aliases, timelines with hooks between ticks and any start
 * clock, recovery from one in-memory store, node inspection and split-invariance checks.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Option, Queue } from "effect"
import { TestClock } from "effect/testing"
import { BatchJobError, Checkpoint, type State, StateSpec, StreamingContext, Testing } from "../mod.ts"
import { failureOf, run, runExit } from "./_support/run.ts"

const sum = (values: ReadonlyArray<number>, state: Option.Option<number>): Option.Option<number> =>
  Option.some(values.reduce((a, b) => a + b, Option.getOrElse(state, () => 0)))

describe("Testing.run with named streams", () => {
  it("collects several streams at once: mapWithState outputs and its state snapshots", async () => {
    const spec = StateSpec.function((_key: string, value: Option.Option<number>, state: State.State<number>) => {
      const next = Option.getOrElse(state.getOption(), () => 0) + Option.getOrElse(value, () => 0)
      state.update(next)
      return next
    })
    const result = await run(Testing.run((ssc) => {
      const counts = Testing.input(ssc, [["a"], ["a", "b"], []]).map((w) => [w, 1] as const).mapWithState(spec)
      return { counts, state: counts.stateSnapshots() }
    }, { numBatches: 3, checkpoint: "ckpt" }))
    assert.equal(result.failure, undefined)
    assert.deepEqual(result.outputs.counts.map((c) => c.batch), [[1], [2, 1], []])
    assert.deepEqual(result.outputs.counts.map((c) => c.time), [1000, 2000, 3000])
    assert.deepEqual(
      result.outputs.state.map((c) => Testing.sameElements(c.batch, c.batch) && [...c.batch].sort()),
      [[["a", 1]], [["a", 2], ["b", 1]], [["a", 2], ["b", 1]]],
    )
  })

  it("a listener that throws is logged and skipped (as Spark's listener bus does): the run goes on", async () => {
    let calls = 0
    const running = run(Testing.run((ssc) => {
      ssc.addStreamingListener(() => {
        calls++
        throw new Error("listener bug")
      })
      return { doubled: Testing.input(ssc, [[1], [2], [3]]).map((n) => n * 2) }
    }, { numBatches: 3 }))
    // before the fix the throw ended the clock and job fibers and the run never finished
    let timer: ReturnType<typeof setTimeout> | undefined
    const result = await Promise.race([
      running,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("Testing.run hung after a listener threw")), 15_000)
      }),
    ]).finally(() => clearTimeout(timer))
    assert.equal(result.failure, undefined)
    assert.deepEqual(result.outputs.doubled.map((c) => c.batch), [[2], [4], [6]])
    assert.ok(calls >= 9, `the listener was called ${calls} times`)
  })

  it("keeps the outputs collected before a failing batch and returns the failure with its batch time", async () => {
    const result = await run(Testing.run((ssc) => ({
      doubled: Testing.input(ssc, [[1], [2], [3], [4]]).map((n) => {
        if (n === 3) throw new Error("bad record 3")
        return n * 2
      }),
    }), { numBatches: 4 }))
    assert.deepEqual(result.outputs.doubled.map((c) => c.batch), [[2], [4]])
    assert.ok(result.failure instanceof BatchJobError)
    assert.equal(result.failure.batchTime, 3000)
    assert.deepEqual(Testing.describeFailure(result.failure), { time: 3000, outputId: -1, message: "bad record 3" })
  })

  it("a single stream still fails the run with the batch's error (Spark's testOperation)", async () => {
    const exit = await runExit(
      Testing.runOperation([[1], [2]], (s) =>
        s.map((n) => {
          if (n === 2) throw new Error("boom")
          return n
        })),
    )
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError)
    assert.equal(error.batchTime, 2000)
  })
})

describe("Collected batches are copies, not aliases", () => {
  it("an updater that mutates its state in place shows each batch as it was", async () => {
    const out = await run(Testing.runOperation(
      [["a"], ["a"], ["a"]],
      (s) =>
        s.map((w) => [w, 1] as const).updateStateByKey((vs: ReadonlyArray<number>, s: Option.Option<Array<number>>) => {
          const list = Option.getOrElse(s, (): Array<number> => [])
          list.push(...vs) // PySpark style: mutate and return the same array
          return Option.some(list)
        }),
      { checkpoint: "ckpt" },
    ))
    assert.deepEqual(out, [[["a", [1]]], [["a", [1, 1]]], [["a", [1, 1, 1]]]])
  })

  it("snapshot keeps prototypes (Option stays an Option) and copies Maps and nested arrays", () => {
    const original = { o: Option.some([1, 2]), m: new Map([["k", [1]]]) }
    const copy = Testing.snapshot(original)
    original.m.get("k")!.push(2)
    assert.ok(Option.isOption(copy.o) && Option.isSome(copy.o))
    assert.deepEqual(copy.m.get("k"), [1])
    assert.notEqual(copy.o, original.o)
  })
})

describe("Testing.harness and Testing.timeline", () => {
  it("starts at any clock (Spark's file-stream tests start at 12 000 ms), observes before the first tick and advances partially", async () => {
    const queue: Array<ReadonlyArray<number>> = []
    const seen = await run(Testing.harness(
      (ssc) => ({ doubled: ssc.queueStream(queue).map((n) => n * 2) }),
      { startTime: 12_000 },
      (h) =>
        Effect.gen(function* () {
          const atStart = { now: yield* h.now, first: h.firstBatchTime, outputs: (yield* h.outputs).doubled.length }
          queue.push([1, 2])
          yield* h.advance("500 millis") // no batch time passed yet
          const half = (yield* h.outputs).doubled.length
          yield* h.advance("500 millis")
          const one = (yield* h.outputs).doubled
          return { atStart, half, one, state: yield* h.ssc.state }
        }),
    ))
    assert.deepEqual(seen.atStart, { now: 12_000, first: 13_000, outputs: 0 })
    assert.equal(seen.half, 0)
    assert.deepEqual(seen.one, [{ time: 13_000, batch: [2, 4] }])
    assert.equal(seen.state, "ACTIVE")
  })

  it("runs hooks between ticks, before the batch of their time, in time order", async () => {
    const result = await run(Effect.gen(function* () {
      const queue = yield* Queue.unbounded<ReadonlyArray<string>>()
      return yield* Testing.timeline((ssc) => ({ words: ssc.queueStream(queue) }), { startTime: 12_000 })
        .at(14_000, Queue.offer(queue, ["c"]))
        .at(12_500, Queue.offer(queue, ["a"]))
        .at(13_000, Queue.offer(queue, ["b"]))
        .run(15_000)
    }))
    assert.deepEqual(result.outputs.words, [
      { time: 13_000, batch: ["a"] },
      { time: 14_000, batch: ["b"] },
      { time: 15_000, batch: ["c"] },
    ])
  })

  it("uses the caller's TestClock when there is one", async () => {
    const out = await run(
      Effect.gen(function* () {
        yield* TestClock.setTime(5_000)
        return yield* Testing.run((ssc) => Testing.input(ssc, [[1]]), { numBatches: 1 })
      }).pipe(Effect.provide(TestClock.layer())),
    )
    assert.deepEqual(out, [[1]])
  })
})

describe("Testing.recover", () => {
  const build = (ssc: StreamingContext.StreamingContext) => ({
    counts: Testing.input(ssc, [["a"], ["a", "b"], ["b"], ["a"], ["a"], ["b"]])
      .map((w) => [w, 1] as const)
      .updateStateByKey(sum)
      .checkpoint("1 second"),
  })

  it("stops, recovers from the same in-memory store with a new program and continues with the state", async () => {
    const { before, after } = await run(Testing.recover(
      build,
      { checkpoint: "ckpt" },
      (h) => h.advanceBatches(2),
      (h) => h.advanceBatches(1),
    ))
    assert.deepEqual(before.outputs.counts.map((c) => [...c.batch].sort()), [[["a", 1]], [["a", 2], ["b", 1]]])
    // The recovered context keeps the zero time, so the test input gives batch 3000 its third
    // batch (["b"]); the state goes on from the checkpoint of batch 2000.
    assert.deepEqual(after.outputs.counts.map((c) => c.time), [3000])
    assert.deepEqual([...after.outputs.counts[0].batch].sort(), [["a", 2], ["b", 2]])
  })

  it("getOrCreate keeps the store it read from for start: no silent fall-back to a file-system directory", async () => {
    const cwd = process.cwd()
    const dir = mkdtempSync(join(tmpdir(), "kit-trap-"))
    process.chdir(dir)
    try {
      const name = "trap-ckpt"
      const out = await run(
        Effect.gen(function* () {
          const store = yield* Checkpoint.makeMemory()
          // The store is provided around getOrCreate only, not around start.
          const ssc = yield* StreamingContext.getOrCreate(name, (ssc) => {
            Testing.input(ssc, [["a"]]).map((w) => [w, 1] as const).updateStateByKey(sum).checkpoint("1 second")
              .foreachBatch(() => {})
          }).pipe(Effect.provideService(Checkpoint.CheckpointStore, store))
          yield* ssc.start
          yield* TestClock.adjust("1 second")
          yield* ssc.awaitBatch(1000)
          yield* ssc.stop()
          return yield* store.list
        }).pipe(Effect.provide(TestClock.layer())),
      )
      assert.ok(out.length > 0, "the checkpoint went to the store getOrCreate read from")
      assert.equal(existsSync(join(dir, name)), false)
    } finally {
      process.chdir(cwd)
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("Testing.testOperation and comparison helpers", () => {
  it("runs as many batches as expected outputs, so windows need no numBatches", async () => {
    await run(Testing.testOperation(
      [[1], [2]],
      (s) => s.window("2 seconds", "1 second").count(),
      [[1], [2], [1], [0]],
    ))
  })

  it("compares as sets with useSet and names the first batch that differs", async () => {
    await run(Testing.testOperation(
      [["a", "b", "a"]],
      (s) => s.mapToPair((w) => [w, 1]).reduceByKey((a, b) => a + b),
      [[["b", 1], ["a", 2]]],
      { useSet: true },
    ))
    const exit = await runExit(Testing.testOperation([[1], [2]], (s) => s, [[1], [3]]))
    const error = failureOf(exit)
    assert.ok(error instanceof Testing.OutputMismatchError)
    assert.equal(error.index, 1)
    assert.match(error.message, /Output batch 1 differs: expected \[3\], got \[2\]/)
  })

  it("sameElements counts duplicates; unwrapOptions turns join sides into plain values", () => {
    assert.equal(Testing.sameElements([1, 1, 2], [1, 2, 2]), false)
    assert.equal(Testing.sameElements([["b", 1], ["a", 2]], [["a", 2], ["b", 1]]), true)
    assert.deepEqual(
      Testing.unwrapOptions([["a", [Option.some(1), Option.none()]], ["b", { x: Option.some("y") }]]),
      [["a", [1, null]], ["b", { x: "y" }]],
    )
  })
})

describe("Testing.inspect", () => {
  it("shows remember durations, checkpoint intervals and held batch times", async () => {
    const info = await run(Testing.harness(
      (ssc) => {
        const nums = Testing.input(ssc, [[1], [2], [3], [4]])
        const state = nums.map((n) => ["k", n] as const).updateStateByKey(sum).checkpoint("2 seconds")
        return { windowed: nums.window("3 seconds", "1 second"), state, nums }
      },
      { checkpoint: "ckpt" },
      (h) =>
        Effect.gen(function* () {
          yield* h.advanceBatches(4)
          return {
            input: Testing.inspect(h.streams.nums),
            windowed: Testing.inspect(h.streams.windowed),
            state: Testing.inspect(h.streams.state),
          }
        }),
    ))
    // A stateful stream keeps only its current batch (recovery restores snapshots, not lineage:
    // Spark would keep 2 × its checkpoint interval); a window asks its parent for its own
    // remember duration + the window (1 s + 3 s), as Spark does.
    assert.equal(info.state.checkpointMillis, 2000)
    assert.equal(info.state.rememberMillis, 1000)
    assert.equal(info.windowed.rememberMillis, 1000)
    assert.equal(info.input.rememberMillis, 4000)
    assert.deepEqual(info.input.heldBatchTimes, [1000, 2000, 3000, 4000])
    assert.equal(info.state.kind, "StateDStream")
  })
})

describe("Split invariance", () => {
  it("randomSplits is deterministic per seed and loses no record", () => {
    const records = Array.from({ length: 50 }, (_, i) => i)
    const a = Testing.randomSplits(records, 7)
    assert.deepEqual(a, Testing.randomSplits(records, 7))
    assert.deepEqual(a.flat(), records)
    assert.notDeepEqual(a, Testing.randomSplits(records, 8))
  })

  it("a running count is batch-independent; a per-batch count is not, and the error names the seed", async () => {
    const words = "a b a c b a d a".split(" ")
    const results = await run(Testing.checkSplitInvariance(
      words,
      (s) => s.map((w) => [w, 1] as const).updateStateByKey(sum),
      (batches) => new Map(batches.at(-1)),
      { seeds: [1, 2, 3], checkpoint: "ckpt" },
    ))
    assert.equal(results.length, 4)
    assert.deepEqual(results[0], new Map([["a", 4], ["b", 2], ["c", 1], ["d", 1]]))
    const exit = await runExit(Testing.checkSplitInvariance(
      words,
      (s) => s.count(),
      (batches) => batches.map((b) => b[0]),
      { seeds: [1, 2, 3] },
    ))
    const error = failureOf(exit)
    assert.ok(error instanceof Testing.SplitDependenceError)
    assert.match(error.message, /seed \d+/)
  })
})
