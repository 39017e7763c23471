/**
 * Receiver blocks, rate limits and storage (Spark's BlockGenerator, RateLimiter and storage
 * levels), on the real clock with event-driven waits and generous bounds.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { mkdtemp, readdir, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { Receiver, StreamingContext } from "../mod.ts"
import type { ReceiverInputNode } from "../lib/_internal/inputs.ts"
import { collectEvents, completed, live, waitFor } from "./_support/live.ts"

/** Stores 0, 1, 2, … in arrays of `chunk`, as fast as `store` lets it, up to `limit`. */
const counter = (name: string, chunk: number, limit = Infinity, pauseMillis = 0) => {
  const state = { produced: 0 }
  const receiver = Receiver.make<number>({
    name,
    run: (store) =>
      Effect.gen(function* () {
        while (state.produced < limit) {
          const n = Math.min(chunk, limit - state.produced)
          const records = Array.from({ length: n }, (_, i) => state.produced + i)
          yield* store.all(records)
          state.produced += n
          if (pauseMillis > 0) yield* Effect.sleep(pauseMillis)
          else yield* Effect.yieldNow
        }
        yield* Effect.never
      }),
  })
  return { receiver, state }
}

const isSequence = (xs: ReadonlyArray<number>): boolean => xs.every((x, i) => x === i)

describe("receiver blocks", () => {
  it("cuts stored records into blocks every block interval and allocates them at batch time, losing nothing", async () => {
    const result = await live(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({
        batchInterval: "1 second",
        receivers: { blockInterval: "100 millis" },
      })
      yield* Effect.addFinalizer(() => ssc.stop())
      const events = collectEvents(ssc)
      // one record every 5 ms, one store call each: ~200 calls per batch
      const { receiver, state } = counter("ticks", 1, Infinity, 5)
      const stream = ssc.receiverStream(receiver)
      const received: Array<number> = []
      stream.foreachBatch((batch) => {
        received.push(...batch)
      })
      yield* ssc.start
      yield* waitFor(() => completed(events).filter((b) => b.numRecords > 0).length >= 3, "three non-empty batches")
      yield* ssc.stop({ graceful: true })
      const node = stream.node as ReceiverInputNode<number>
      return { received, produced: state.produced, batches: completed(events), allocations: node.allocations.size }
    }))
    // graceful stop: every stored record was processed, once, in order
    assert.equal(result.received.length, result.produced)
    assert.ok(isSequence(result.received))
    const full = result.batches.filter((b) => b.numRecords > 20)
    assert.ok(full.length >= 2)
    for (const info of full) {
      const input = info.streamIdToInputInfo[0]
      const blocks = input.metadata?.blocks as number
      // one block per interval (plus the one sealed at the tick), never one per store call
      assert.ok(blocks >= 1 && blocks <= 12, `blocks per 1 s batch: ${blocks}, records ${input.numRecords}`)
      assert.ok(blocks < input.numRecords / 4)
    }
    // allocations of processed batches are forgotten
    assert.ok(result.allocations <= 2)
  })

  it("a receiver's own block interval wins over the context's", async () => {
    const batches = await live(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second", receivers: { blockInterval: "50 millis" } })
      yield* Effect.addFinalizer(() => ssc.stop())
      const events = collectEvents(ssc)
      const { receiver } = counter("slow blocks", 1, Infinity, 5)
      ssc.receiverStream({ ...receiver, blockInterval: "5 seconds" }).foreachBatch(() => {})
      yield* ssc.start
      yield* waitFor(() => completed(events).filter((b) => b.numRecords > 0).length >= 3, "three non-empty batches")
      yield* ssc.stop()
      return completed(events)
    }))
    // the block timer never fires within a batch: the tick seals exactly one block
    for (const info of batches.filter((b) => b.numRecords > 0)) {
      assert.equal(info.streamIdToInputInfo[0].metadata?.blocks, 1)
    }
  })
})

describe("receiver rate limits", () => {
  it("maxRate bounds the records stored per second, however fast the receiver stores", async () => {
    const result = await live(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "500 millis" })
      yield* Effect.addFinalizer(() => ssc.stop())
      const events = collectEvents(ssc)
      const { receiver, state } = counter("flood", 100)
      ssc.receiverStream({ ...receiver, maxRate: 1000 }).foreachBatch(() => {})
      const started = Date.now()
      yield* ssc.start
      yield* waitFor(() => completed(events).length >= 6, "six batches")
      const elapsed = (Date.now() - started) / 1000
      yield* ssc.stop()
      return { produced: state.produced, elapsed, batches: completed(events) }
    }))
    // 1000 records/s, plus at most a burst of two 100 ms chunks
    assert.ok(result.produced > 0)
    assert.ok(
      result.produced <= 1000 * result.elapsed + 200,
      `${result.produced} records in ${result.elapsed.toFixed(2)} s`,
    )
    for (const info of result.batches) {
      const input = info.streamIdToInputInfo[0]
      if (input !== undefined) assert.equal(input.metadata?.rateLimit, 1000)
    }
  })
})

describe("receiver storage", () => {
  it("memory storage: store waits while maxBufferedRecords are held, so a flood cannot grow the buffer", async () => {
    const result = await live(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
      yield* Effect.addFinalizer(() => ssc.stop())
      const events = collectEvents(ssc)
      const { receiver, state } = counter("flood", 100)
      let processed = 0
      let worstBacklog = 0
      const stream = ssc.receiverStream({ ...receiver, maxBufferedRecords: 500 })
      stream.foreachBatch((batch) =>
        Effect.gen(function* () {
          worstBacklog = Math.max(worstBacklog, state.produced - processed)
          yield* Effect.sleep("300 millis") // slower than the batch interval
          processed += batch.length
        })
      )
      yield* ssc.start
      yield* waitFor(() => completed(events).length >= 5, "five batches")
      yield* ssc.stop()
      const node = stream.node as ReceiverInputNode<number>
      return { worstBacklog, peakHeld: node.peakHeld, batches: completed(events), produced: state.produced }
    }))
    assert.ok(result.produced > 0)
    assert.ok(result.peakHeld <= 500, `peak held ${result.peakHeld}`)
    for (const info of result.batches) assert.ok(info.numRecords <= 500, `batch of ${info.numRecords}`)
    // held in the buffer plus the batch being processed
    assert.ok(result.worstBacklog <= 1100, `backlog ${result.worstBacklog}`)
  })

  it("memory-and-disk storage: blocks beyond the budget spill to files and come back in order", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dstream-spill-test-"))
    try {
      const total = 20_000
      const result = await live(Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
        yield* Effect.addFinalizer(() => ssc.stop())
        const events = collectEvents(ssc)
        const { receiver, state } = counter("spilling", 250, total, 1)
        const received: Array<number> = []
        const stream = ssc.receiverStream({
          ...receiver,
          storage: "memoryAndDisk",
          maxBufferedRecords: 1000,
          spillDirectory: dir,
        })
        stream.foreachBatch((batch) =>
          Effect.gen(function* () {
            received.push(...batch)
            yield* Effect.sleep("400 millis")
          })
        )
        yield* ssc.start
        yield* waitFor(() => state.produced === total, "all records stored")
        yield* ssc.stop({ graceful: true, timeout: "60 seconds" })
        const node = stream.node as ReceiverInputNode<number>
        return { received, peakHeld: node.peakHeld, batches: completed(events) }
      }))
      assert.equal(result.received.length, total)
      assert.ok(isSequence(result.received), "records come back once each, in order")
      assert.ok(result.peakHeld <= 1000, `peak held in memory ${result.peakHeld}`)
      const spilled = result.batches.reduce(
        (n, b) => n + ((b.streamIdToInputInfo[0]?.metadata?.spilledBlocks as number) ?? 0),
        0,
      )
      assert.ok(spilled > 0, "some blocks were spilled")
      assert.ok(result.batches.some((b) => b.numRecords > 1000), "batches larger than the memory budget")
      assert.deepEqual(await readdir(dir), [], "spill files are removed once read")
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
