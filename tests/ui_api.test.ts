/**
 * The streaming UI's JSON API and server: the figures of a real run (a failing last batch
 * included), the batch page data, option errors, and memory bounded by `retainedBatches` over
 * thousands of batches under TestClock.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import * as Net from "node:net"
import { Effect, Metric, Option } from "effect"
import { TestClock } from "effect/testing"
import { BatchClock, BatchJobError, Checkpoint, type Listener, StreamingContext, Testing } from "../mod.ts"
import * as StreamingUI from "../lib/StreamingUI.ts"
import { Collector } from "../lib/_internal/ui/collector.ts"
import { graphOf } from "../lib/_internal/ui/inspect.ts"
import { failureOf, withPlatform } from "./_support/run.ts"
import { collectEvents, completed, live, waitFor } from "./_support/live.ts"

const getJson = (url: string): Effect.Effect<{ status: number; body: any }> =>
  Effect.promise(() => fetch(url).then(async (r) => ({ status: r.status, body: await r.json() })))
const getText = (url: string): Effect.Effect<{ status: number; type: string | null; body: string }> =>
  Effect.promise(() =>
    fetch(url).then(async (r) => ({ status: r.status, type: r.headers.get("content-type"), body: await r.text() }))
  )

const failedTimeOf = (events: ReadonlyArray<Listener.StreamingEvent>): number | undefined => {
  for (const e of events) {
    if (e._tag === "OutputOperationCompleted" && e.outputOperationInfo.failureReason !== undefined) {
      return e.outputOperationInfo.batchTime
    }
  }
  return undefined
}

describe("StreamingUI JSON API", () => {
  it("reports a run whose last batch fails: status, batches newest first, the failed batch's page, inputs, graph", async () => {
    const r = await live(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "100 millis" })
        const ui = yield* StreamingUI.serve(ssc, { port: 0 })
        const events = collectEvents(ssc)
        const words = ssc.queueStream([["a", "b", "a"], ["c"], [], ["d", "boom"]])
        words.mapToPair((w) => [w, 1]).reduceByKey((a, b) => a + b).foreachBatch(() => {})
        words.foreachBatch((batch) => {
          if (batch.includes("boom")) throw new Error('the word "boom" is not allowed')
        })
        yield* ssc.start
        const exit = yield* Effect.exit(ssc.awaitTermination)
        // The failure ends awaitTermination at once; the stop that follows publishes StreamingStopped.
        yield* waitFor(() => events.some((e) => e._tag === "StreamingStopped"), "the context to stop")
        return {
          exit,
          events,
          ui,
          status: yield* getJson(`${ui.url}api/status`),
          batches: yield* getJson(`${ui.url}api/batches`),
          timeline: yield* getJson(`${ui.url}api/timeline`),
          receivers: yield* getJson(`${ui.url}api/receivers`),
          graph: yield* getJson(`${ui.url}api/graph`),
          state: yield* getJson(`${ui.url}api/state`),
          missing: yield* getJson(`${ui.url}api/batches/123`),
          page: yield* getText(ui.url),
          uplot: yield* getText(`${ui.url}static/uPlot.iife.min.js`),
          detail: yield* getJson(`${ui.url}api/batches/${failedTimeOf(events)}`),
        }
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
    )
    assert.ok(failureOf(r.exit) instanceof BatchJobError)
    const done = completed(r.events)
    const failedStart = r.events.flatMap((e) =>
      e._tag === "OutputOperationCompleted" && e.outputOperationInfo.failureReason !== undefined
        ? [e.outputOperationInfo]
        : []
    )
    assert.equal(failedStart.length, 1)
    const failedTime = failedStart[0].batchTime
    assert.match(r.ui.url, /^http:\/\/127\.0\.0\.1:\d+\/$/)

    const status = r.status.body
    assert.equal(status.running, false)
    assert.equal(status.batchIntervalMillis, 100)
    assert.equal(status.completedBatches, done.length + 1)
    assert.equal(status.failedBatches, 1)
    assert.equal(status.totalRecords, 3 + 1 + 0 + 2)
    assert.equal(typeof status.startTime, "number")

    const batches = r.batches.body
    assert.deepEqual(batches.active, [])
    assert.equal(batches.completed.length, done.length + 1)
    const times = batches.completed.map((b: { batchTime: number }) => b.batchTime)
    assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first")
    const newest = batches.completed[0]
    assert.equal(newest.batchTime, failedTime)
    assert.equal(newest.status, "failed")
    assert.equal(newest.numRecords, 2)
    assert.deepEqual(newest.outputOps, { succeeded: 1, failed: 1, total: 2 })
    assert.match(newest.failureReason, /the word "boom" is not allowed/)
    for (const b of batches.completed.slice(1)) {
      assert.equal(b.status, "completed")
      assert.deepEqual(b.outputOps, { succeeded: 2, failed: 0, total: 2 })
      const info = done.find((d) => d.batchTime === b.batchTime)!
      assert.equal(b.numRecords, info.numRecords)
      assert.equal(b.totalDelay, info.totalDelay)
      assert.equal(b.schedulingDelay, info.schedulingDelay)
    }

    const detail = r.detail.body
    assert.equal(detail.batchMillis, 100)
    assert.deepEqual(detail.inputs.map((i: { name: string; numRecords: number }) => [i.name, i.numRecords]), [[
      "queueStream",
      2,
    ]])
    assert.deepEqual(
      detail.outputOperations.map((o: { id: number; name: string; status: string }) => [o.id, o.name, o.status]),
      [
        [0, "foreachBatch", "succeeded"],
        [1, "foreachBatch", "failed"],
      ],
    )
    assert.match(detail.outputOperations[1].failureReason, /boom/)
    assert.equal(typeof detail.outputOperations[0].durationMillis, "number")

    assert.equal(r.missing.status, 404)
    assert.match(
      r.missing.body.error,
      /^No batch at "123": it is neither active nor among the last 1000 completed batches$/,
    )

    const t = r.timeline.body
    assert.equal(t.times.length, done.length + 1)
    assert.deepEqual(t.failed, t.times.map((time: number) => time === failedTime))
    assert.deepEqual(t.inputRate.slice(0, 4), [30, 10, 0, 20].slice(4 - Math.min(4, t.times.length)))

    assert.deepEqual(
      r.receivers.body.map((x: { name: string; kind: string; status: string }) => [x.name, x.kind, x.status]),
      [
        ["queueStream", "QueueInputDStream", "STOPPED"],
      ],
    )
    const nodes = r.graph.body.nodes as Array<
      { id: number; kind: string; role: string; parents: Array<number>; depth: number }
    >
    assert.deepEqual(nodes.map((n) => [n.kind, n.role, n.depth]), [
      ["QueueInputDStream", "input", 0],
      // mapToPair is fused into reduceByKey's loop: one node.
      ["ShuffledDStream", "operator", 1],
      ["ForEachDStream", "output", 2],
      ["ForEachDStream", "output", 1],
    ])
    assert.deepEqual(nodes[1].parents, [nodes[0].id])
    assert.deepEqual(nodes[2].parents, [nodes[1].id])
    assert.deepEqual(nodes[3].parents, [nodes[0].id])
    assert.deepEqual(r.state.body.streams, [])

    assert.equal(r.page.status, 200)
    assert.match(r.page.type ?? "", /^text\/html/)
    assert.match(r.page.body, /<script src="\/static\/uPlot\.iife\.min\.js"><\/script>/)
    assert.equal(r.uplot.status, 200)
    assert.match(r.uplot.body, /uPlot/)
  })

  it("fails with a StreamingUIError for a bad port, a taken port or bad retainedBatches", async () => {
    const blocker = Net.createServer()
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve))
    const taken = (blocker.address() as Net.AddressInfo).port
    try {
      const errors = await live(Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        const attempt = (options: StreamingUI.Options) =>
          Effect.map(Effect.exit(Effect.scoped(StreamingUI.serve(ssc, options))), failureOf)
        return [
          yield* attempt({ port: 70000 }),
          yield* attempt({ port: taken }),
          yield* attempt({ port: 0, retainedBatches: 0 }),
        ]
      }))
      for (const e of errors) assert.ok(e instanceof StreamingUI.StreamingUIError, String(e))
      assert.equal(
        (errors[0] as StreamingUI.StreamingUIError).message,
        `Cannot serve the streaming UI: port must be an integer from 0 to 65535, got "70000"`,
      )
      assert.match(
        (errors[1] as StreamingUI.StreamingUIError).message,
        new RegExp(`^Cannot serve the streaming UI on "127\\.0\\.0\\.1:${taken}": .*EADDRINUSE|in use`, "i"),
      )
      assert.equal(
        (errors[2] as StreamingUI.StreamingUIError).message,
        `Cannot serve the streaming UI: retainedBatches must be a positive integer, got "0"`,
      )
    } finally {
      await new Promise((resolve) => blocker.close(resolve))
    }
  })
})

describe("StreamingUI layer", () => {
  it("serves while the layer lives, on the given host and port, for the StreamingContext service", async () => {
    const probe = Net.createServer()
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve))
    const port = (probe.address() as Net.AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    const status = await live(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.StreamingContext
        ssc.queueStream([["a"]]).foreachBatch(() => {})
        // Bound to every interface; reachable on loopback.
        return yield* getJson(`http://127.0.0.1:${port}/api/status`)
      }).pipe(
        Effect.provide(StreamingUI.layer({ port, host: "0.0.0.0" })),
        Effect.provide(StreamingContext.layer({ batchInterval: "1 second" })),
      ),
    )
    assert.equal(status.status, 200)
    assert.equal(status.body.running, false)
    assert.equal(status.body.batchIntervalMillis, 1000)
    // Released with the layer: the port is free again.
    const again = Net.createServer()
    await new Promise<void>((resolve, reject) => {
      again.once("error", reject)
      again.listen(port, "0.0.0.0", resolve)
    })
    await new Promise((resolve) => again.close(resolve))
  })
})

describe("StreamingUI.attach", () => {
  it("serves until close, without a caller scope", async () => {
    const result = await Effect.runPromise(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        const { ui, close } = yield* StreamingUI.attach(ssc, { port: 0 })
        const before = yield* getJson(`${ui.url}api/status`)
        yield* close
        const after = yield* Effect.promise(() => fetch(`${ui.url}api/status`).then(() => "answered", () => "refused"))
        return { before: before.status, after }
      }).pipe(withPlatform),
    )
    assert.deepEqual(result, { before: 200, after: "refused" })
  })
})

describe("StreamingUI memory", () => {
  it("keeps at most retainedBatches batches over 3000 batches under TestClock", async () => {
    const numBatches = 3000
    const retained = 50
    const result = await Effect.runPromise(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        ssc.checkpoint("memory")
        const collector = new Collector(graphOf(ssc), 1000, retained, () => ssc.checkpointDirectory)
        ssc.addStreamingListener(collector.onEvent)
        const ui = yield* StreamingUI.serve(ssc, { port: 0, retainedBatches: retained })
        const batches = Array.from({ length: numBatches }, (_, i) => [i % 100, (i * 7) % 100])
        Testing.input(ssc, batches)
          .mapToPair((k) => [k, 1])
          .updateStateByKey((vs: ReadonlyArray<number>, s: Option.Option<number>) =>
            Option.some(vs.length + Option.getOrElse(s, () => 0))
          )
          .foreachBatch(() => {})
        const first = BatchClock.firstBatchTime(yield* Effect.clockWith((c) => c.currentTimeMillis), 1000)
        yield* Effect.provide(ssc.start, Checkpoint.layerMemory)
        const sizes: Array<ReturnType<Collector["sizes"]>> = []
        for (let k = 0; k < numBatches; k++) {
          yield* TestClock.adjust("1 second")
          yield* ssc.awaitBatch(first + k * 1000)
          if (k === 999 || k === numBatches - 1) sizes.push(collector.sizes())
        }
        const api = yield* getJson(`${ui.url}api/batches`)
        const timeline = yield* getJson(`${ui.url}api/timeline`)
        const state = yield* getJson(`${ui.url}api/state`)
        const oldest = yield* getJson(`${ui.url}api/batches/${first}`)
        yield* ssc.stop()
        return { sizes, api: api.body, timeline: timeline.body, state: state.body, oldest, first, collector }
      }).pipe(
        Effect.scoped,
        Effect.provide(TestClock.layer()),
        withPlatform,
        Effect.provideService(Metric.MetricRegistry, new Map()),
      ),
    )
    // The same table sizes after 1000 and after 3000 batches: bounded by retainedBatches.
    assert.deepEqual(result.sizes[0], result.sizes[1])
    assert.deepEqual(result.sizes[1], { completed: retained, byTime: retained, active: 0, rebalances: 0 })
    assert.equal(result.collector.totalCompleted, numBatches)
    assert.equal(result.api.completed.length, retained)
    assert.equal(result.api.totalCompleted, numBatches)
    assert.equal(result.api.completed[0].batchTime, result.first + (numBatches - 1) * 1000)
    assert.equal(result.timeline.times.length, retained)
    assert.equal(result.oldest.status, 404)
    assert.equal(result.state.streams.length, 1)
    assert.equal(result.state.streams[0].keys, 100)
    assert.ok(result.state.streams[0].approximateBytes > 0)
    // Graph checkpoints every 10 s (the default for a 1 s stateful stream), counted from zero time.
    const zero = result.first - 1000
    const last = result.first + (numBatches - 1) * 1000
    assert.equal(result.state.lastCheckpointTime, zero + Math.floor((last - zero) / 10_000) * 10_000)
  })
})
