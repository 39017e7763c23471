/**
 * The streaming UI's Kafka figures against librdkafka's mock cluster (kcat): committed offsets
 * per partition, high-water marks and consumer lag (falling to zero as a rate-limited direct
 * stream catches up), the initial assignment as a rebalance event, Kafka offset ranges on the
 * batch page, and the lag / committed-offset metrics.
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect, Metric, Schema } from "effect"
import * as Kafka from "../lib/Kafka.ts"
import * as StreamingContext from "../lib/StreamingContext.ts"
import * as StreamingUI from "../lib/StreamingUI.ts"
import { collectEvents, completed, live, waitFor } from "./_support/live.ts"
import { fast, produce, startCluster, type TestCluster, unique } from "./_support/kafka.ts"

let cluster: TestCluster

before(async () => {
  cluster = await startCluster()
})
after(async () => {
  await cluster?.stop()
})

interface PartitionView {
  topic: string
  partition: number
  committedOffset?: number
  processedOffset?: number
  highWatermark?: number
  lag?: number
}

const getJson = (url: string): Effect.Effect<any> => Effect.promise(() => fetch(url).then((r) => r.json()))

describe("StreamingUI with a Kafka direct stream", { timeout: 90_000 }, () => {
  it("shows committed offsets, high-water marks and a lag that falls to zero, and Kafka offset ranges per batch", async () => {
    const topic = unique("ui-lag")
    const groupId = unique("ui-g")
    const total = 160
    await produce(cluster.bootstrap, topic, Array.from({ length: total }, (_, i) => [`k${i}`, `v${i}`] as const))
    const r = await live(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "250 millis" })
        const ui = yield* StreamingUI.serve(ssc, { port: 0, kafkaLagInterval: "200 millis" })
        const events = collectEvents(ssc)
        let seen = 0
        Kafka.KafkaDirectStream.make(ssc, {
          brokers: cluster.brokers,
          groupId,
          topics: [topic],
          autoOffsetReset: "earliest",
          value: Schema.String,
          maxRatePerPartition: 16, // 4 records per partition per 250 ms batch: ~10 batches to catch up
          ...fast,
        }).foreachBatch((records) => {
          seen += records.length
        })
        yield* ssc.start
        // While it catches up, the lag is positive.
        const lags: Array<number> = []
        const sample = Effect.gen(function* () {
          const k = yield* getJson(`${ui.url}api/kafka`)
          const parts: Array<PartitionView> = k.inputs[0]?.partitions ?? []
          if (parts.length > 0 && parts.every((p) => p.lag !== undefined)) {
            lags.push(parts.reduce((n, p) => n + p.lag!, 0))
          }
        })
        while (seen < total) {
          yield* sample
          yield* Effect.sleep("100 millis")
          if (completed(events).length > 200) break
        }
        yield* waitFor(() => seen >= total, "every record")
        // Then everything is committed and the lag reaches zero.
        let kafka: any = undefined
        yield* waitFor(() => {
          const parts: Array<PartitionView> = kafka?.inputs?.[0]?.partitions ?? []
          return parts.length === 4 && parts.every((p) => p.lag === 0 && p.committedOffset === p.highWatermark)
        }, "zero lag").pipe(
          Effect.raceFirst(Effect.forever(Effect.andThen(
            Effect.flatMap(getJson(`${ui.url}api/kafka`), (k) => Effect.sync(() => (kafka = k))),
            Effect.sleep("100 millis"),
          ))),
        )
        const batchWithRecords = completed(events).find((b) => b.numRecords > 0)!
        const batch = yield* getJson(`${ui.url}api/batches/${batchWithRecords.batchTime}`)
        // The committed-offset gauges are read at each completed batch: let two more complete.
        const n = completed(events).length
        yield* waitFor(() => completed(events).length >= n + 2, "two more batches")
        const metrics = yield* Effect.promise(() => fetch(`${ui.url}metrics`).then((res) => res.text()))
        yield* ssc.stop()
        return { lags, kafka, batch, batchWithRecords, metrics }
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
    )

    assert.ok(r.lags.some((l) => l > 0), `a positive lag while catching up: ${r.lags.join(", ")}`)
    const parts: Array<PartitionView> = r.kafka.inputs[0].partitions
    assert.deepEqual(parts.map((p) => [p.topic, p.partition]), [[topic, 0], [topic, 1], [topic, 2], [topic, 3]])
    assert.equal(parts.reduce((n, p) => n + p.highWatermark!, 0), total)
    assert.equal(parts.reduce((n, p) => n + p.committedOffset!, 0), total)
    assert.ok(r.kafka.rebalances.length >= 1)
    const first = r.kafka.rebalances[r.kafka.rebalances.length - 1]
    assert.deepEqual(first.added, [`${topic}-0`, `${topic}-1`, `${topic}-2`, `${topic}-3`])
    // The batch page's input metadata: one offset range per partition, counting the batch's records.
    const input = r.batch.inputs[0]
    const ranges = input.metadata.offsets as Array<
      { topic: string; partition: number; fromOffset: number; untilOffset: number }
    >
    assert.equal(input.numRecords, r.batchWithRecords.numRecords)
    assert.equal(ranges.reduce((n, x) => n + x.untilOffset - x.fromOffset, 0), input.numRecords)
    for (const x of ranges) {
      assert.ok(x.untilOffset - x.fromOffset <= 4, `${x.untilOffset - x.fromOffset} ≤ 4 per partition`)
    }
    for (const p of parts) {
      assert.match(
        r.metrics,
        new RegExp(`dstream_kafka_lag_records\\{topic="${topic}",partition="${p.partition}"\\} 0\\n`),
      )
      assert.match(
        r.metrics,
        new RegExp(
          `dstream_kafka_committed_offset\\{topic="${topic}",partition="${p.partition}"\\} ${p.committedOffset}\\n`,
        ),
      )
    }
  })
})
