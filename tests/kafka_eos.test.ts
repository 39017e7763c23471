/**
 * The exactly-once Kafka sink (`Kafka.sink(..., { exactlyOnce: true })`) in a running context.
 *
 * - "protocol": against librdkafka's mock cluster through the loopback proxy
 *   (tests/_support/kafka_proxy.ts): the batches' outputs and offsets go through InitProducerId,
 *   AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn without an error, and every
 *   record arrives; likewise for a scale-out word count, whose changelog appends join each batch's
 *   transaction. The mock does not honour transactions, so nothing here shows the guarantees.
 * - "model": the guarantees, against the in-memory model of the client interface
 *   (tests/_support/kafka_model.ts) driving the direct stream (`Kafka.directStreamWith`): an
 *   output failing mid-batch, or a batch failing after the sink wrote, leaves no output visible
 *   to `read_committed` and no offsets committed, the re-run writes each output once, and a
 *   zombie with the same input partitions is fenced.
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { Cause, Effect, Exit, Option, Schema } from "effect"
import * as Kafka from "../lib/Kafka.ts"
import * as KafkaScale from "../lib/KafkaScale.ts"
import * as StreamingContext from "../lib/StreamingContext.ts"
import { ValidationError } from "../lib/Errors.ts"
import { type MockCluster, startMockCluster } from "../receivers/_kafka_mock.ts"
import { ApiKey, assertTransactionsWentThrough, type KafkaProxy, startKafkaProxy } from "./_support/kafka_proxy.ts"
import { eventually, fast, kcat, unique } from "./_support/kafka.ts"
import { KafkaModel } from "./_support/kafka_model.ts"
import { BatchTransactions } from "../lib/_internal/kafkaTransactions.ts"

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
    assertTransactionsWentThrough(txn)
    // several batches, each its own transaction; offsets went with them (the stream reports what committed)
    assert.ok(txn.filter((s) => s.apiKey === ApiKey.EndTxn).length >= 2)
    const committed = await Effect.runPromise(stream!.committedOffsets)
    assert.equal(committed.reduce((n, c) => n + c.offset, 0), values.length)
  })

  it("protocol: a scale-out word count with an exactly-once sink commits outputs, changelog appends and offsets in transactions without an error", async () => {
    const input = unique("eos-scale-in")
    const output = unique("eos-scale-out")
    const app = unique("eos-app")
    const lines = Array.from({ length: 30 }, (_, i) => ["a", "b", "c", "d", "e"].slice(0, 1 + (i % 5)).join(" "))
    const counts: Record<string, number> = {}
    for (const l of lines) for (const w of l.split(" ")) counts[w] = (counts[w] ?? 0) + 1
    await kcat(["-P", "-b", mock.bootstrap, "-t", input, "-K", "\t"], lines.map((l, i) => `k${i}\t${l}\n`).join(""))
    const before = proxy.seen.length
    const sameCounts = (a: Record<string, number>, b: Record<string, number>) =>
      Object.keys(a).length === Object.keys(b).length && Object.keys(b).every((w) => a[w] === b[w])
    /** The last `word=count` written per word, as a read_committed reader of the output would keep it. */
    const latest = async () => {
      const last: Record<string, number> = {}
      for (const o of await readAll(output)) {
        const [w, n] = o.split("=")
        last[w] = Math.max(last[w] ?? 0, Number(n))
      }
      return last
    }
    await Effect.runPromise(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "300 millis" })
      const source = KafkaScale.scaleOut(ssc, {
        brokers: [proxy.bootstrap],
        applicationId: app,
        topic: input,
        value: Schema.String,
        ...fast,
      })
      source
        .repartitionByKey({
          name: "words",
          by: (r) => r.value.split(" ").map((w) => [w, 1] as const),
          key: Schema.String,
          value: Schema.NumberFromString,
        })
        .updateStateByKey(
          (ones: ReadonlyArray<number>, s: Option.Option<number>) =>
            Option.some(ones.reduce((x, y) => x + y, Option.getOrElse(s, () => 0))),
          { schemas: { state: Schema.Number } },
        )
        .map(([w, n]) => `${w}=${n}`)
        .pipe(Kafka.sink({ brokers: [proxy.bootstrap], topic: output, value: Schema.String, exactlyOnce: true }))
      yield* ssc.start
      yield* Effect.promise(() => eventually(async () => sameCounts(await latest(), counts), 45_000, "the counts"))
        .pipe(Effect.ensuring(ssc.stop()))
    }))
    assert.deepEqual(await latest(), counts)
    const txn = proxy.seen.slice(before)
    assertTransactionsWentThrough(txn)
    // the changelog appends went into the same transactions: the changelog holds every word's final count
    const changelog = await kcat([
      "-C",
      "-b",
      mock.bootstrap,
      "-t",
      `${app}-words-changelog`,
      "-o",
      "beginning",
      "-e",
      "-q",
      "-f",
      "%k\t%s\n",
    ])
    const logged: Record<string, number> = {}
    for (const line of changelog.split("\n")) {
      const [k, v] = line.split("\t")
      if (k === undefined || v === undefined || !k.startsWith('"')) continue
      logged[JSON.parse(k)] = Math.max(logged[JSON.parse(k)] ?? 0, Number(v))
    }
    assert.deepEqual(logged, counts)
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
      sink(a.map((r) => r.value))
      assert.throws(
        () =>
          Kafka.sink({
            brokers: [proxy.bootstrap],
            topic: "o2",
            value: Schema.String,
            exactlyOnce: true,
            transactionalIdPrefix: "x",
          })(
            a.map((r) => r.value),
          ),
        (e: unknown) => e instanceof ValidationError && /other exactly-once sinks use "g"/.test(e.message),
      )
      const other = Kafka.sink({ brokers: ["127.0.0.1:1"], topic: "o", value: Schema.String, exactlyOnce: true })
      assert.throws(
        () => other(a.map((r) => r.value)),
        (e: unknown) => e instanceof ValidationError && /brokers "127.0.0.1:1" are not/.test(e.message),
      )
    }))
  })
})

// ---- the guarantees, on the in-memory model --------------------------------------------------

const MODEL = ["model:9092"]
const decoder = new TextDecoder()
const committedValues = (model: KafkaModel, topic: string) =>
  model.committedRecords(topic).map((r) => decoder.decode(r.value ?? new Uint8Array())).sort()
const anyValues = (model: KafkaModel, topic: string) => {
  const out: Array<string> = []
  for (let p = 0; p < 4; p++) {
    for (const r of model.visible(topic, p, 0, model.endOffset(topic, p, "read_uncommitted"), "read_uncommitted")) {
      out.push(decoder.decode(r.value ?? new Uint8Array()))
    }
  }
  return out.sort()
}
const committedSum = (model: KafkaModel, groupId: string) =>
  [...model.committedOffsets(groupId).values()].reduce((n, o) => n + o.offset, 0)
const produceTo = async (model: KafkaModel, topic: string, from: number, n: number) => {
  const p = await model.client.producer()
  await p.send(Array.from({ length: n }, (_, i) => ({ topic, key: `k${from + i}`, value: `v${from + i}` })))
}
const expected = (prefix: string, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => `${prefix}${from + i}`).sort()

/** A context reading `in` of the model with exactly-once sinks set up by `setup`; runs until `done` or failure. */
const runOnModel = (
  model: KafkaModel,
  groupId: string,
  setup: (stream: Kafka.KafkaDirectStream<string, string>) => void,
  done: () => boolean,
  strategy: { readonly topics: ReadonlyArray<string> } | {
    readonly assign: ReadonlyArray<{ topic: string; partition: number }>
  } = { topics: ["in"] },
): Promise<Exit.Exit<void, unknown>> =>
  Effect.runPromise(Effect.gen(function* () {
    const ssc = yield* StreamingContext.make({ batchInterval: "100 millis" })
    const stream = Kafka.directStreamWith(ssc, {
      brokers: MODEL,
      groupId,
      ...strategy,
      autoOffsetReset: "earliest",
      value: Schema.String,
      ...fast,
    } as Kafka.DirectStreamOptions<string, string>, model.client)
    setup(stream)
    yield* ssc.start
    const finished = Effect.promise(() => eventually(done, 20_000, "the model's outputs")).pipe(
      Effect.andThen(ssc.stop()),
    )
    return yield* Effect.exit(Effect.raceFirst(ssc.awaitTermination, finished))
  }))

const causeText = (exit: Exit.Exit<void, unknown>) =>
  Exit.isFailure(exit) ? String(Cause.squash(exit.cause)) + JSON.stringify(exit.cause) : ""

describe("Exactly-once Kafka sink on the model", { timeout: 60_000 }, () => {
  it("model: an output failing mid-batch leaves no output visible to read_committed and no offsets; the re-run writes each output once", async () => {
    const model = new KafkaModel()
    model.createTopic("in", 2)
    await produceTo(model, "in", 0, 20)
    const groupId = "g-fail"
    const sinks = (stream: Kafka.KafkaDirectStream<string, string>) => {
      const values = stream.map((r) => r.value)
      values.map((v) => `a:${v}`).pipe(
        Kafka.sink({ brokers: MODEL, topic: "out1", value: Schema.String, exactlyOnce: true }),
      )
      values.map((v) => `b:${v}`).pipe(
        Kafka.sink({ brokers: MODEL, topic: "out2", value: Schema.String, exactlyOnce: true }),
      )
    }
    model.failNext("send", 1, "out2")
    const failed = await runOnModel(model, groupId, sinks, () => false)
    assert.ok(Exit.isFailure(failed))
    assert.match(causeText(failed), /Injected failure of "send"/)
    assert.ok(anyValues(model, "out1").length > 0, "the first sink wrote nothing: the failure was not mid-batch")
    assert.deepEqual(committedValues(model, "out1"), [])
    assert.deepEqual(committedValues(model, "out2"), [])
    assert.equal(model.committedOffsets(groupId).size, 0)
    const rerun = await runOnModel(
      model,
      groupId,
      sinks,
      () =>
        committedValues(model, "out1").length >= 20 && committedValues(model, "out2").length >= 20 &&
        committedSum(model, groupId) >= 20,
    )
    assert.ok(Exit.isSuccess(rerun), causeText(rerun))
    assert.deepEqual(committedValues(model, "out1"), expected("a:v", 0, 20))
    assert.deepEqual(committedValues(model, "out2"), expected("b:v", 0, 20))
    assert.equal(committedSum(model, groupId), 20)
  })

  it("model: a batch that fails after the sink wrote (before its commit) leaves nothing visible; the restart writes each output once", async () => {
    const model = new KafkaModel()
    model.createTopic("in", 2)
    await produceTo(model, "in", 0, 15)
    const groupId = "g-crash"
    let failOnce = true
    const sinks = (fail: boolean) => (stream: Kafka.KafkaDirectStream<string, string>) => {
      stream.map((r) => `o:${r.value}`).pipe(
        Kafka.sink({ brokers: MODEL, topic: "out", value: Schema.String, exactlyOnce: true }),
      )
      stream.foreachBatch((records) =>
        Effect.suspend(() => {
          if (fail && failOnce && records.length > 0) {
            failOnce = false
            return Effect.fail(new Error("the process dies before the commit"))
          }
          return Effect.void
        })
      )
    }
    const failed = await runOnModel(model, groupId, sinks(true), () => false)
    assert.ok(Exit.isFailure(failed))
    assert.ok(anyValues(model, "out").length > 0, "the sink wrote nothing before the failure")
    assert.deepEqual(committedValues(model, "out"), [])
    assert.equal(model.committedOffsets(groupId).size, 0)
    const rerun = await runOnModel(
      model,
      groupId,
      sinks(false),
      () => committedValues(model, "out").length >= 15 && committedSum(model, groupId) >= 15,
    )
    assert.ok(Exit.isSuccess(rerun), causeText(rerun))
    assert.deepEqual(committedValues(model, "out"), expected("o:v", 0, 15))
  })

  it("model: a zombie with the same input partitions is fenced: its next batch fails and writes nothing visible; every output is visible once", async () => {
    const model = new KafkaModel()
    model.createTopic("in", 2)
    await produceTo(model, "in", 0, 10)
    const groupId = "g-zombie"
    const partitions = [{ topic: "in", partition: 0 }, { topic: "in", partition: 1 }]
    const sink = (stream: Kafka.KafkaDirectStream<string, string>) =>
      stream.map((r) => `o:${r.value}`).pipe(
        Kafka.sink({ brokers: MODEL, topic: "out", value: Schema.String, exactlyOnce: true }),
      )
    let zombieExit: Exit.Exit<void, unknown> | undefined
    const zombie = runOnModel(model, groupId, sink, () => false, { assign: partitions }).then((e) => (zombieExit = e))
    await eventually(
      () => committedValues(model, "out").length >= 10 && committedSum(model, groupId) >= 10,
      20_000,
      "the zombie's first outputs",
    )
    // a new owner of the same partitions starts (one context per process: what its stream does
    // at its first assignment, with the same transactional id)
    const owner = new BatchTransactions({
      client: model.client,
      groupId,
      transactionalIdPrefix: groupId,
      warn: () => {},
    })
    const starts = await owner.prepare(partitions)
    assert.equal(starts.reduce((n, o) => n + o.offset, 0), 10)
    await produceTo(model, "in", 10, 10)
    await zombie
    assert.ok(zombieExit !== undefined && Exit.isFailure(zombieExit), "the zombie kept running")
    assert.match(causeText(zombieExit), /fenced/)
    assert.deepEqual(committedValues(model, "out"), expected("o:v", 0, 10))
    assert.equal(committedSum(model, groupId), 10)
    await owner.close()
    const rest = await runOnModel(
      model,
      groupId,
      sink,
      () => committedValues(model, "out").length >= 20 && committedSum(model, groupId) >= 20,
      { assign: partitions },
    )
    assert.ok(Exit.isSuccess(rest), causeText(rest))
    assert.deepEqual(committedValues(model, "out"), expected("o:v", 0, 20))
  })
})
