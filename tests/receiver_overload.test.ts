/**
 * Overload: a receiver offered about 10× what processing sustains, for a bounded time. With
 * backpressure the PID estimator brings the ingestion rate down to the processing rate, the
 * buffer never holds more than configured, and the scheduling delay stops growing.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import process from "node:process"
import { Effect } from "effect"
import { Receiver, StreamingContext } from "../mod.ts"
import type { ReceiverInputNode } from "../lib/_internal/inputs.ts"
import { collectEvents, completed, live, waitFor } from "./_support/live.ts"

describe("receiver overload", () => {
  it("input at ~10× the processing rate: memory stays bounded and the scheduling delay stops growing", async () => {
    const capacity = 5000
    const result = await live(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
      yield* Effect.addFinalizer(() => ssc.stop())
      const events = collectEvents(ssc)
      let offered = 0
      // tries to store 500 records every 10 ms: ~50,000 records/s
      const flood = Receiver.make<number>({
        name: "flood",
        backpressure: true,
        maxBufferedRecords: capacity,
        run: (store) =>
          Effect.forever(Effect.gen(function* () {
            const batch = new Array<number>(500).fill(1)
            yield* store.all(batch)
            offered += 500
            yield* Effect.sleep("10 millis")
          })),
      })
      const stream = ssc.receiverStream(flood)
      // processing costs 0.2 ms per record: ~5,000 records/s
      stream.foreachBatch((batch) => Effect.sleep(batch.length / 5))
      const heapBefore = process.memoryUsage().heapUsed
      let heapPeak = heapBefore
      ssc.addStreamingListener((e) => {
        if (e._tag === "BatchCompleted") heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
      })
      yield* ssc.start
      yield* waitFor(() => completed(events).length >= 50, "fifty batches", 120_000)
      const node = stream.node as ReceiverInputNode<number>
      const rate = node.rateLimit
      yield* ssc.stop()
      return { batches: completed(events), peakHeld: node.peakHeld, rate, offered, heapGrowth: heapPeak - heapBefore }
    }))
    const delays = result.batches.map((b) => b.schedulingDelay!)
    const last = delays.slice(-10)
    const before = delays.slice(0, -10)
    // memory: bounded by configuration, not by the input rate
    assert.ok(result.peakHeld <= capacity, `peak held ${result.peakHeld}`)
    assert.ok(result.heapGrowth < 256 * 1024 * 1024, `heap grew by ${result.heapGrowth} bytes`)
    for (const b of result.batches) assert.ok(b.numRecords <= capacity)
    // the rate adapted to the processing speed (~5,000/s), far below the offered ~50,000/s
    assert.ok(result.rate >= 100 && result.rate <= 15_000, `final rate ${result.rate}`)
    // the scheduling delay stopped growing: the last batches wait no longer than the worst before
    assert.ok(
      Math.max(...last) <= Math.max(...before, 200),
      `delays: ${delays.join(" ")}`,
    )
    assert.ok(last[last.length - 1] <= Math.max(...delays), `delays: ${delays.join(" ")}`)
    const lastRecords = result.batches.slice(-10).reduce((n, b) => n + b.numRecords, 0)
    assert.ok(lastRecords > 0, "records still flow")
  })
})
