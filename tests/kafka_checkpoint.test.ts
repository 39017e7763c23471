/**
 * The Kafka direct stream's part in graph checkpoints, in one process against librdkafka's
 * mock cluster (or KAFKA_BROKERS), with an in-memory checkpoint store that records what is
 * written: offsets are committed only up to what a written checkpoint covers, and a context
 * recovered with getOrCreate gives its windows the records of the batches before the
 * checkpoint (their ranges are in the checkpoint and fetched again).
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect, Option, Schema } from "effect"
import * as Checkpoint from "../lib/Checkpoint.ts"
import * as Kafka from "../lib/Kafka.ts"
import * as StreamingContext from "../lib/StreamingContext.ts"
import { eventually, fast, produce, startCluster, type TestCluster, unique } from "./_support/kafka.ts"

let cluster: TestCluster

before(async () => {
  cluster = await startCluster()
})
after(async () => {
  await cluster?.stop()
})

/** A memory store that remembers the time of every checkpoint written to it. */
const recordingStore = (): { readonly store: Checkpoint.CheckpointStoreShape; readonly written: Array<number> } => {
  const base = Effect.runSync(Checkpoint.makeMemory())
  const written: Array<number> = []
  return {
    written,
    store: {
      ...base,
      write: (name, bytes) =>
        Effect.tap(
          base.write(name, bytes),
          Effect.sync(() => {
            const m = /^checkpoint-(\d+)$/.exec(name)
            if (m) written.push(Number(m[1]))
          }),
        ),
    },
  }
}

const common = (topic: string, groupId: string) => ({
  brokers: cluster.brokers,
  groupId,
  topics: [topic],
  autoOffsetReset: "earliest" as const,
  value: Schema.String,
  maxRatePerPartition: 50, // 10 records per partition per 200 ms batch
  ...fast,
})

const tag = (r: Kafka.KafkaRecord<string, string>): string => `${r.partition}@${r.offset}`

describe("Kafka direct stream and checkpoints", { timeout: 60_000 }, () => {
  it("commits offsets only up to what a written checkpoint covers", async () => {
    const topic = unique("ckpt-commit")
    const groupId = unique("g")
    await produce(cluster.bootstrap, topic, Array.from({ length: 300 }, (_, i) => [`k${i}`, `v${i}`] as const))
    const { store, written } = recordingStore()
    const ranges = new Map<number, ReadonlyArray<Kafka.OffsetRange>>()
    const observed: Array<{ time: number; committed: ReadonlyArray<Kafka.TopicPartitionOffset> }> = []
    let seen = 0
    await Effect.runPromise(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.getOrCreate("kafka-commit-checkpoint", (ssc) => {
          const stream = Kafka.directStream(ssc, common(topic, groupId))
          stream.foreachBatch((records, time, meta) =>
            Effect.map(stream.committedOffsets, (committed) => {
              seen += records.length
              ranges.set(time, meta.offsetRanges)
              observed.push({ time, committed })
            })
          )
          stream.mapToPair((r) => [r.value, 1]).updateStateByKey((
            vs: ReadonlyArray<number>,
            s: Option.Option<number>,
          ) => Option.some(vs.length + Option.getOrElse(s, () => 0))).checkpoint("600 millis").foreachBatch(() => {})
        }, { batchInterval: "200 millis" })
        yield* ssc.start
        yield* Effect.promise(async () => {
          await eventually(() => seen >= 300, 30_000, "300 records")
          const n = observed.length
          await eventually(() => observed.length >= n + 6, 10_000, "six more batches")
        }).pipe(Effect.ensuring(ssc.stop()))
      }).pipe(Effect.provideService(Checkpoint.CheckpointStore, store)),
    )
    const untilAt = (time: number, partition: number): number =>
      ranges.get(time)?.find((r) => r.partition === partition)?.untilOffset ?? -1
    let commits = 0
    for (const { time, committed } of observed) {
      for (const c of committed) {
        commits++
        // some checkpoint written before this batch covers the committed offset
        const covered = Math.max(-1, ...written.filter((w) => w < time).map((w) => untilAt(w, c.partition)))
        assert.ok(
          c.offset <= covered,
          `at batch ${time}, partition ${c.partition} committed ${c.offset} beyond the checkpoints written (${covered})`,
        )
      }
    }
    assert.ok(commits > 0, "offsets were committed")
    assert.ok(written.length >= 3, "checkpoints were written")
  })

  it("a recovered context's windows see the records of the batches before its checkpoint", async () => {
    const topic = unique("ckpt-window")
    const groupId = unique("g")
    await produce(cluster.bootstrap, topic, Array.from({ length: 400 }, (_, i) => [`k${i}`, `v${i}`] as const))
    const { store } = recordingStore()
    const run = (
      perBatch: Map<number, Array<string>>,
      windows: Map<number, Array<string>>,
      until: () => boolean,
    ): Promise<void> =>
      Effect.runPromise(
        Effect.gen(function* () {
          const ssc = yield* StreamingContext.getOrCreate("kafka-window-checkpoint", (ssc) => {
            const stream = Kafka.directStream(ssc, common(topic, groupId))
            stream.foreachBatch((records, time) => {
              perBatch.set(time, records.map(tag))
            })
            stream.map(tag).window("1 second", "200 millis").foreachBatch((records, time) => {
              windows.set(time, [...records])
            })
          }, { batchInterval: "200 millis" })
          yield* ssc.start
          yield* Effect.promise(() => eventually(until, 30_000, "enough batches")).pipe(Effect.ensuring(ssc.stop()))
        }).pipe(Effect.provideService(Checkpoint.CheckpointStore, store)),
      )
    const first = new Map<number, Array<string>>()
    await run(first, new Map(), () => [...first.values()].filter((b) => b.length > 0).length >= 4)
    const second = new Map<number, Array<string>>()
    const windows = new Map<number, Array<string>>()
    await run(second, windows, () => windows.size >= 2)
    const x0 = Math.min(...windows.keys())
    const checkpointTime = x0 - 200
    const fromFirst: Array<string> = []
    const expected: Array<string> = []
    for (let s = x0 - 800; s <= x0; s += 200) {
      const batch = s <= checkpointTime ? first.get(s) : second.get(s)
      assert.ok(batch !== undefined, `batch ${s} ran in ${s <= checkpointTime ? "the first" : "the recovered"} context`)
      if (s <= checkpointTime) fromFirst.push(...batch)
      expected.push(...batch)
    }
    assert.ok(fromFirst.length > 0, "the window spans records of batches before the checkpoint")
    assert.deepEqual([...windows.get(x0)!].sort(), expected.sort())
  })
})
