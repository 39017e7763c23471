/**
 * The Kafka direct stream against librdkafka's mock cluster (started here through kcat) or a
 * real cluster when KAFKA_BROKERS is set; kcat is the independent producer and reader.
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { type Duration, Effect, Exit, Schema } from "effect"
import { BatchJobError } from "../lib/Errors.ts"
import * as Kafka from "../lib/Kafka.ts"
import * as StreamingContext from "../lib/StreamingContext.ts"
import {
  committedOffsets,
  eventually,
  fast,
  kcat,
  produce,
  startCluster,
  type TestCluster,
  unique,
} from "./_support/kafka.ts"

let cluster: TestCluster

before(async () => {
  cluster = await startCluster()
})
after(async () => {
  await cluster?.stop()
})

/** Runs `body` with a started context; stops it afterwards. */
const withContext = <A>(
  batchInterval: Duration.Input,
  setup: (ssc: StreamingContext.StreamingContext) => A,
  body: (ssc: StreamingContext.StreamingContext, a: A) => Promise<void>,
): Promise<void> =>
  Effect.runPromise(Effect.gen(function* () {
    const ssc = yield* StreamingContext.make({ batchInterval })
    const a = setup(ssc)
    yield* ssc.start
    yield* Effect.promise(() => body(ssc, a)).pipe(Effect.ensuring(ssc.stop()))
  }))

/** Every record of `topic` as `key=value` lines, read with kcat from the beginning. */
const readTopic = (topic: string) =>
  kcat(["-C", "-b", cluster.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k=%s\n"])

describe("Kafka direct stream", { timeout: 60_000 }, () => {
  it("cuts contiguous offset ranges bounded by maxRatePerPartition, gives empty batches, and commits only after outputs", async () => {
    const topic = unique("ranges")
    const groupId = unique("g")
    const values = Array.from({ length: 60 }, (_, i) => `v${i}`)
    await produce(cluster.bootstrap, topic, values.map((v, i) => [`k${i}`, v]))
    const batches: Array<{ time: number; values: Array<string>; ranges: ReadonlyArray<Kafka.OffsetRange> }> = []
    const violations: Array<string> = []
    await withContext("500 millis", (ssc) => {
      const stream = Kafka.KafkaDirectStream.make(ssc, {
        brokers: cluster.brokers,
        groupId,
        topics: [topic],
        autoOffsetReset: "earliest",
        value: Schema.String,
        maxRatePerPartition: 10, // 5 records per partition per 500 ms batch
        ...fast,
      })
      stream.foreachBatch((records, time, meta) =>
        Effect.gen(function* () {
          const committed = yield* stream.committedOffsets
          for (const r of meta.offsetRanges) {
            const c = committed.find((x) => x.topic === r.topic && x.partition === r.partition)
            if (c !== undefined && c.offset > r.fromOffset) {
              violations.push(`${r} committed ${c.offset} before its outputs ran`)
            }
          }
          batches.push({ time, values: records.map((r) => r.value), ranges: meta.offsetRanges })
          assert.deepEqual(meta.offsetRanges, stream.offsetRanges(time))
        })
      )
      return stream
    }, async () => {
      await eventually(() => batches.flatMap((b) => b.values).length >= 60, 30_000, "60 records")
      const n = batches.length
      await eventually(() => batches.length >= n + 2, 10_000, "two more batches")
    })
    const seen = batches.flatMap((b) => b.values)
    assert.deepEqual([...seen].sort(), [...values].sort())
    const byPartition = new Map<number, Array<Kafka.OffsetRange>>()
    for (const b of batches) {
      let count = 0
      for (const r of b.ranges) {
        assert.ok(r.count() <= 5, `${r} exceeds maxRatePerPartition × batch interval`)
        count += r.count()
        const list = byPartition.get(r.partition) ?? []
        list.push(r)
        byPartition.set(r.partition, list)
      }
      assert.equal(count, b.values.length, "a batch holds exactly its ranges' records")
    }
    assert.ok(batches.some((b) => b.ranges.some((r) => r.count() === 5)), "the per-partition bound was reached")
    for (const [, ranges] of byPartition) {
      for (let i = 1; i < ranges.length; i++) {
        assert.equal(ranges[i].fromOffset, ranges[i - 1].untilOffset, "ranges are contiguous")
      }
    }
    const last = batches[batches.length - 1]
    assert.deepEqual(last.values, [], "an empty poll gives an empty batch")
    assert.ok(last.ranges.length > 0 && last.ranges.every((r) => r.count() === 0))
    assert.match(String(last.ranges[0]), /^OffsetRange\(topic: '.+', partition: \d, range: \[\d+ -> \d+\]\)$/)
    assert.deepEqual(violations, [])
    const committed = await committedOffsets(cluster.brokers, groupId, topic)
    for (const [partition, ranges] of byPartition) {
      assert.equal(
        committed.get(partition),
        ranges[ranges.length - 1].untilOffset,
        `partition ${partition} committed up to its last range`,
      )
    }
  })

  it("never commits the offsets of a batch whose output failed", async () => {
    const topic = unique("fail")
    const groupId = unique("g")
    await produce(cluster.bootstrap, topic, Array.from({ length: 20 }, (_, i) => [`k${i}`, `v${i}`] as const))
    const exit = await Effect.runPromiseExit(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "300 millis" })
      const stream = Kafka.directStream(ssc, {
        brokers: cluster.brokers,
        groupId,
        topics: [topic],
        autoOffsetReset: "earliest",
        value: Schema.String,
        ...fast,
      })
      stream.foreachBatch((records) => records.length > 0 ? Effect.fail(new Error("sink down")) : Effect.void)
      yield* ssc.start
      yield* ssc.awaitTermination.pipe(Effect.ensuring(ssc.stop()))
    }))
    assert.ok(Exit.isFailure(exit))
    const error = exit.cause.reasons.find((r) => r._tag === "Fail")
    assert.ok(error !== undefined && error._tag === "Fail" && error.error instanceof BatchJobError)
    const committed = await committedOffsets(cluster.brokers, groupId, topic)
    for (const [partition, offset] of committed) assert.equal(offset, -1, `partition ${partition} must have no commit`)
  })

  it("sends records that fail to decode to the dead-letter stream and topic, and keeps going", async () => {
    const topic = unique("json")
    const dlq = unique("dlq")
    const groupId = unique("g")
    const Reading = Schema.Struct({ sensor: Schema.String, value: Schema.Number })
    const lines: Array<readonly [string, string]> = [
      ["a", `{"sensor":"a","value":1}`],
      ["b", `not json`],
      ["c", `{"sensor":"c","value":"high"}`],
      ["d", `{"sensor":"d","value":4}`],
    ]
    await produce(cluster.bootstrap, topic, lines)
    const good: Array<{ sensor: string; value: number }> = []
    const dead: Array<Kafka.DeadLetter> = []
    const metaDead: Array<number> = []
    await withContext("300 millis", (ssc) => {
      const stream = Kafka.directStream(ssc, {
        brokers: cluster.brokers,
        groupId,
        topics: [topic],
        autoOffsetReset: "earliest",
        value: Kafka.json(Reading),
        deadLetterTopic: dlq,
        ...fast,
      })
      stream.foreachBatch((records, _t, meta) => {
        for (const r of records) good.push(r.value)
        metaDead.push(meta.deadLetters.length)
      })
      stream.deadLetters.foreachBatch((batch) => {
        dead.push(...batch)
      })
      return stream
    }, async () => {
      await eventually(() => good.length + dead.length >= 4, 20_000, "4 records")
      // later records still flow after the failures
      await produce(cluster.bootstrap, topic, [["e", `{"sensor":"e","value":5}`]])
      await eventually(() => good.length >= 3, 20_000, "the record after the failures")
    })
    assert.deepEqual(good.map((g) => g.sensor).sort(), ["a", "d", "e"])
    assert.equal(dead.length, 2)
    assert.equal(metaDead.reduce((a, b) => a + b, 0), 2)
    const text = dead.map((d) => new TextDecoder().decode(d.value!)).sort()
    assert.deepEqual(text, [`not json`, `{"sensor":"c","value":"high"}`].sort())
    for (const d of dead) {
      assert.equal(d.topic, topic)
      assert.equal(d.part, "value")
      assert.ok(d.error.length > 0)
      assert.ok(Number.isInteger(d.offset) && d.offset >= 0)
      assert.equal(
        new TextDecoder().decode(d.key!),
        d.value && new TextDecoder().decode(d.value) === "not json" ? "b" : "c",
      )
    }
    // the dead-letter topic, read by kcat: raw value and the error headers
    const out = await kcat([
      "-C",
      "-b",
      cluster.bootstrap,
      "-t",
      dlq,
      "-o",
      "beginning",
      "-e",
      "-q",
      "-f",
      "%k|%s|%h\n",
    ])
    const rows = out.trim().split("\n").sort()
    assert.equal(rows.length, 2, JSON.stringify(rows))
    assert.ok(
      rows.some((r) => r.startsWith("b|not json|") && r.includes(`dlq.topic=${topic}`) && r.includes("dlq.error=")),
    )
    assert.ok(rows.some((r) => r.startsWith(`c|{"sensor":"c","value":"high"}|`)))
  })

  it("interoperates with kcat: reads what kcat wrote and the sink writes what kcat reads", async () => {
    const input = unique("in")
    const output = unique("out")
    const groupId = unique("g")
    await produce(cluster.bootstrap, input, [["x", "hello world"], ["y", "hello kafka"]])
    await withContext("300 millis", (ssc) => {
      const stream = Kafka.directStream(ssc, {
        brokers: cluster.brokers,
        groupId,
        topics: [input],
        autoOffsetReset: "earliest",
        value: Schema.String,
        ...fast,
      })
      stream
        .flatMap((r) => r.value.split(" "))
        .mapToPair((w) => [w, 1])
        .reduceByKey((a, b) => a + b)
        .pipe((counts) =>
          Kafka.writeToKafka(counts, {
            brokers: cluster.brokers,
            topic: output,
            key: Schema.String,
            value: Kafka.json(Schema.Number),
            retry: fast.retry,
          })
        )
      stream.map((r) => r.key ?? "").pipe(
        Kafka.sink({ brokers: cluster.brokers, topic: output, value: Schema.String, retry: fast.retry }),
      )
      return stream
    }, async () => {
      await eventually(
        async () => {
          const out = await readTopic(output)
          return out.trim().split("\n").length >= 5
        },
        20_000,
        "5 records in the output topic",
      )
    })
    const out = await readTopic(output)
    assert.deepEqual(out.trim().split("\n").sort(), ["=x", "=y", "hello=2", "kafka=1", "world=1"])
  })

  it("fails the batch visibly when the sink cannot send", async () => {
    const exit = await Effect.runPromiseExit(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
      ssc.queueStream([["a", "b"]]).pipe(
        Kafka.sink({
          brokers: ["127.0.0.1:1"],
          topic: "nowhere",
          value: Schema.String,
          retry: { retries: 1, initialRetryTime: 50 },
          connectionTimeout: 300,
          logLevel: 0,
        }),
      )
      yield* ssc.start
      yield* ssc.awaitTermination.pipe(Effect.ensuring(ssc.stop()))
    }))
    assert.ok(Exit.isFailure(exit))
    const error = exit.cause.reasons.find((r) => r._tag === "Fail")
    assert.ok(error !== undefined && error._tag === "Fail" && error.error instanceof BatchJobError)
    assert.equal((error.error as BatchJobError).outputId, 0)
  })

  it("SubscribePattern consumes the existing topics matching the regex and no others", async () => {
    // kafkajs matches the pattern against the topics that exist when it subscribes: create
    // them first (the mock auto-creates a topic on its first produce).
    const prefix = unique("pat").replace(/[^a-z0-9]/g, "")
    const matching = [`${prefix}-orders-eu`, `${prefix}-orders-us`]
    const other = [`${prefix}-payments`, `x${prefix}-orders-eu`]
    for (const topic of [...matching, ...other]) {
      await produce(cluster.bootstrap, topic, [["a", `${topic}/1`], ["b", `${topic}/2`]])
    }
    const seen: Array<[string, string]> = []
    let batches = 0
    await withContext("200 millis", (ssc) => {
      const stream = Kafka.directStream(ssc, {
        brokers: cluster.brokers,
        groupId: unique("g"),
        pattern: new RegExp(`^${prefix}-orders-.*`),
        autoOffsetReset: "earliest",
        value: Schema.String,
        ...fast,
      })
      stream.foreachBatch((records) => {
        batches++
        for (const r of records) seen.push([r.topic, r.value])
      })
      return stream
    }, async () => {
      await eventually(() => seen.length >= 4, 10_000, "the 4 records of the matching topics")
      const n = batches
      await eventually(() => batches >= n + 3, 20_000, "three more batches") // nothing else arrives
    })
    assert.deepEqual(
      seen.map(([, v]) => v).sort(),
      matching.flatMap((t) => [`${t}/1`, `${t}/2`]).sort(),
    )
    assert.ok(seen.every(([t, v]) => v.startsWith(`${t}/`)), "each record carries its topic")
  })

  it("Assign starts the listed partitions at explicit offsets", async () => {
    const topic = unique("assign")
    const groupId = unique("g")
    await produce(cluster.bootstrap, topic, Array.from({ length: 40 }, (_, i) => [`k${i}`, `v${i}`] as const))
    const offsets = await kcat([
      "-C",
      "-b",
      cluster.bootstrap,
      "-t",
      topic,
      "-p",
      "0",
      "-o",
      "beginning",
      "-e",
      "-q",
      "-f",
      "%o %s\n",
    ])
    const p0 = offsets.trim().split("\n").map((l) => l.split(" ")[1])
    assert.ok(p0.length >= 3, "partition 0 holds at least 3 records")
    const got: Array<[number, number, string]> = []
    const ranges: Array<Kafka.OffsetRange> = []
    await withContext("300 millis", (ssc) => {
      const stream = Kafka.directStream(ssc, {
        brokers: cluster.brokers,
        groupId,
        assign: [{ topic, partition: 0, offset: 2 }],
        value: Schema.String,
        ...fast,
      })
      stream.foreachBatch((records, _t, meta) => {
        for (const r of records) got.push([r.partition, r.offset, r.value])
        ranges.push(...meta.offsetRanges.filter((r) => r.count() > 0))
      })
      return stream
    }, async () => {
      await eventually(() => got.length >= p0.length - 2, 20_000, "partition 0 from offset 2")
    })
    assert.ok(got.every(([p]) => p === 0), "only the assigned partition")
    assert.deepEqual(got.map(([, , v]) => v), p0.slice(2))
    assert.equal(ranges[0].fromOffset, 2)
  })
})
