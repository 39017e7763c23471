/**
 * The exactly-once Kafka sink (`Kafka.sink(..., { exactlyOnce: true })`) in a running context.
 *
 * - "protocol": against librdkafka's mock cluster through the loopback proxy
 *   (tests/_support/kafka_proxy.ts): the batches' outputs and offsets go through InitProducerId,
 *   AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn without an error, and every
 *   record arrives. The mock does not honour transactions, so nothing here shows the guarantees.
 * - The guarantees are shown against the in-memory model (tests/kafka_eos_model.test.ts).
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect, Schema } from "effect"
import * as Kafka from "../lib/Kafka.ts"
import * as StreamingContext from "../lib/StreamingContext.ts"
import { ValidationError } from "../lib/Errors.ts"
import { type MockCluster, startMockCluster } from "../receivers/_kafka_mock.ts"
import { ApiKey, type KafkaProxy, startKafkaProxy } from "./_support/kafka_proxy.ts"
import { eventually, fast, kcat, unique } from "./_support/kafka.ts"

let mock: MockCluster
let proxy: KafkaProxy

before(async () => {
  mock = await startMockCluster()
  proxy = await startKafkaProxy(mock.bootstrap)
})
after(async () => {
  await proxy?.stop()
  await mock?.stop()
})

const readAll = async (topic: string): Promise<Array<string>> =>
  (await kcat(["-C", "-b", mock.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"]))
    .split("\n").filter((l) => l !== "")

describe("Exactly-once Kafka sink", { timeout: 60_000 }, () => {
  it("protocol: on the mock through the proxy, each batch's outputs and offsets go through the transactional APIs without an error", async () => {
    const input = unique("eos-in")
    const output = unique("eos-out")
    const groupId = unique("eos-g")
    const values = Array.from({ length: 40 }, (_, i) => `v${i}`)
    await kcat(["-P", "-b", mock.bootstrap, "-t", input, "-K", "\t"], values.map((v, i) => `k${i}\t${v}\n`).join(""))
    const before = proxy.seen.length
    let stream: Kafka.KafkaDirectStream<string, string> | undefined
    await Effect.runPromise(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "300 millis" })
      stream = Kafka.directStream(ssc, {
        brokers: [proxy.bootstrap],
        groupId,
        topics: [input],
        autoOffsetReset: "earliest",
        value: Schema.String,
        maxRatePerPartition: 20, // several batches
        ...fast,
      })
      stream.map((r) => `out:${r.value}`).pipe(
        Kafka.sink({ brokers: [proxy.bootstrap], topic: output, value: Schema.String, exactlyOnce: true }),
      )
      yield* ssc.start
      yield* Effect.promise(() =>
        eventually(async () => (await readAll(output)).length >= values.length, 30_000, "outputs")
      )
        .pipe(Effect.ensuring(ssc.stop()))
    }))
    const out = await readAll(output)
    assert.deepEqual([...out].sort(), values.map((v) => `out:${v}`).sort())
    const txn = proxy.seen.slice(before)
    for (
      const key of [
        ApiKey.InitProducerId,
        ApiKey.AddPartitionsToTxn,
        ApiKey.AddOffsetsToTxn,
        ApiKey.TxnOffsetCommit,
        ApiKey.EndTxn,
      ]
    ) {
      const of = txn.filter((s) => s.apiKey === key)
      assert.ok(of.length > 0, `no response of api ${key} went through the proxy`)
      assert.deepEqual(of.flatMap((s) => s.errorCodes).filter((c) => c !== 0), [], `api ${key} returned errors`)
    }
    // several batches, each its own transaction; offsets went with them (the stream reports what committed)
    assert.ok(txn.filter((s) => s.apiKey === ApiKey.EndTxn).length >= 2)
    const committed = await Effect.runPromise(stream!.committedOffsets)
    assert.equal(committed.reduce((n, c) => n + c.offset, 0), values.length)
  })

  it("refuses a stream that does not come from exactly one direct stream, a windowed stream, or other brokers", async () => {
    await Effect.runPromise(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      const a = Kafka.directStream(ssc, {
        brokers: [proxy.bootstrap],
        groupId: "g",
        topics: ["a"],
        value: Schema.String,
      })
      const b = Kafka.directStream(ssc, {
        brokers: [proxy.bootstrap],
        groupId: "g",
        topics: ["b"],
        value: Schema.String,
      })
      const both = a.map((r) => r.value).union(b.map((r) => r.value))
      const sink = Kafka.sink({ brokers: [proxy.bootstrap], topic: "o", value: Schema.String, exactlyOnce: true })
      assert.throws(() => sink(both), (e: unknown) => e instanceof ValidationError && /exactly one/.test(e.message))
      const windowed = a.map((r) => r.value).window("2 seconds")
      assert.throws(
        () => sink(windowed),
        (e: unknown) =>
          e instanceof ValidationError && /keeps records across batches \(WindowedDStream\)/.test(e.message),
      )
      const other = Kafka.sink({ brokers: ["127.0.0.1:1"], topic: "o", value: Schema.String, exactlyOnce: true })
      assert.throws(
        () => other(a.map((r) => r.value)),
        (e: unknown) => e instanceof ValidationError && /brokers "127.0.0.1:1" are not/.test(e.message),
      )
    }))
  })
})
