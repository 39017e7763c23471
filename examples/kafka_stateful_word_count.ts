/**
 * A running word count that scales out over a Kafka consumer group: lines from a topic, words
 * repartitioned by word through Kafka, a count per word kept in state shards that follow their
 * partitions (changelog-backed). Start it N times with the same group: the processes split the
 * work, and the union of the states they print is the global count.
 *
 *   KAFKA_BROKERS=host:9092 KAFKA_TOPIC=lines KAFKA_GROUP=wc deno run -A examples/kafka_stateful_word_count.ts
 *   KAFKA_BROKERS=host:9092 KAFKA_TOPIC=lines KAFKA_GROUP=wc bun examples/kafka_stateful_word_count.ts
 *
 * Environment: KAFKA_BROKERS (comma-separated), KAFKA_TOPIC (default `lines`), KAFKA_GROUP (the
 * application id and group; default `stateful_word_count`), EXAMPLE_SECONDS (stop after that many
 * seconds; default: run until Ctrl-C). Without KAFKA_BROKERS the example starts librdkafka's mock
 * cluster through kcat (`apt-get install -y kcat`) and a kcat producer that writes two lines a
 * second, so it runs out of the box.
 */
import process from "node:process"
import { Effect, Option, Schema } from "effect"
import { KafkaScale, Runtime, StreamingContext } from "../mod.ts"
import { kcat, startMockCluster } from "../receivers/_kafka_mock.ts"

const topic = process.env.KAFKA_TOPIC ?? "lines"
const group = process.env.KAFKA_GROUP ?? "stateful_word_count"
const seconds = process.env.EXAMPLE_SECONDS === undefined ? undefined : Number(process.env.EXAMPLE_SECONDS)

/** The mock cluster and a kcat producer writing sample lines, released with the scope. */
const mockWithProducer = Effect.gen(function* () {
  const mock = yield* Effect.acquireRelease(
    Effect.promise(() => startMockCluster()),
    (m) => Effect.promise(() => m.stop()),
  )
  // the topic exists before the stream starts (the mock creates it, with 4 partitions)
  yield* Effect.promise(() => kcat(["-L", "-b", mock.bootstrap, "-t", topic]))
  const lines = ["to be or not to be", "that is the question", "whether tis nobler in the mind to suffer"]
  let i = 0
  yield* Effect.acquireRelease(
    Effect.sync(() =>
      setInterval(() => {
        const line = lines[i++ % lines.length]
        // random keys: a word arrives on every input partition, the repartition brings it together
        kcat(["-P", "-b", mock.bootstrap, "-t", topic, "-K", "\t"], `${Math.random()}\t${line}\n${i}\t${line}\n`)
          .catch(() => undefined)
      }, 1000)
    ),
    (timer) => Effect.sync(() => clearInterval(timer)),
  )
  yield* Effect.log(`Started librdkafka's mock cluster at ${mock.bootstrap} and a producer writing two lines a second`)
  return [mock.bootstrap]
})

const program = Effect.gen(function* () {
  const brokers = process.env.KAFKA_BROKERS?.split(",") ?? (yield* mockWithProducer)
  const ssc = yield* StreamingContext.make({ batchInterval: "2 seconds" })
  const lines = KafkaScale.scaleOut(ssc, {
    brokers,
    applicationId: group,
    topic,
    value: Schema.String,
    sessionTimeout: 6000,
    heartbeatInterval: 500,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  const counts = lines
    .repartitionByKey({
      name: "words",
      by: (record) => record.value.split(" ").filter((w) => w.length > 0).map((w) => [w, 1] as const),
      key: Schema.String,
      value: Schema.NumberFromString,
    })
    .updateStateByKey(
      (ones: ReadonlyArray<number>, count: Option.Option<number>) =>
        Option.some(ones.reduce((a, b) => a + b, Option.getOrElse(count, () => 0))),
      { schemas: { state: Schema.Number } },
    )
  // this process's part of the global count, after every batch
  counts.foreachBatch((state, time) =>
    Effect.gen(function* () {
      const shards = yield* lines.shards
      console.log(
        `${new Date(time).toISOString()} shards ${shards.map((s) => `${s.partition} (${s.keys} keys)`).join(", ")}`,
      )
      console.log(
        JSON.stringify(Object.fromEntries([...state].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))),
      )
    })
  )
  ssc.addStreamingListener((e) => {
    if (e._tag === "KafkaShards" && e.kind !== "restoring") {
      console.log(`${e.kind}: ${e.shards.map((s) => `shard ${s.partition} (${s.keys} keys)`).join(", ") || "no shard"}`)
    }
  })
  yield* ssc.start
  if (seconds === undefined) yield* ssc.awaitTermination
  else {
    yield* ssc.awaitTerminationOrTimeout(`${seconds} seconds`)
    yield* ssc.stop({ graceful: true })
  }
}).pipe(Effect.scoped)

Runtime.runMain(program)
