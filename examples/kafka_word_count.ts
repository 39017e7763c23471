/**
 * The seed's KafkaTest, typed: a direct stream on topic `spark02` (group `spark_kafka`) prints
 * every value, counts the words of each batch and commits the batch's offset ranges after its
 * outputs ran.
 *
 *   KAFKA_BROKERS=host:9092 deno run -A examples/kafka_word_count.ts
 *   KAFKA_BROKERS=host:9092 bun examples/kafka_word_count.ts
 *
 * Environment: KAFKA_BROKERS (comma-separated), KAFKA_TOPIC (default spark02), KAFKA_GROUP
 * (default spark_kafka), EXAMPLE_SECONDS (stop after that many seconds; default: run until
 * Ctrl-C). Without KAFKA_BROKERS the example starts librdkafka's mock cluster through kcat
 * (`apt-get install -y kcat`) and a kcat producer that writes two lines a second, so it runs
 * out of the box. Start it several times with the same group to scale out.
 */
import process from "node:process"
import { Effect, Schema } from "effect"
import { Kafka, Runtime, StreamingContext } from "../mod.ts"
import { kcat, startMockCluster } from "../receivers/_kafka_mock.ts"

const { KafkaDirectStream } = Kafka
const topic = process.env.KAFKA_TOPIC ?? "spark02"
const groupId = process.env.KAFKA_GROUP ?? "spark_kafka"
const seconds = process.env.EXAMPLE_SECONDS === undefined ? undefined : Number(process.env.EXAMPLE_SECONDS)

/** The mock cluster and a kcat producer writing sample lines, released with the scope. */
const mockWithProducer = Effect.gen(function* () {
  const mock = yield* Effect.acquireRelease(
    Effect.promise(() => startMockCluster()),
    (m) => Effect.promise(() => m.stop()),
  )
  // kcat -P sends what it read at end of input: one short-lived kcat per second.
  const lines = ["to be or not to be", "that is the question", "whether tis nobler in the mind to suffer"]
  let i = 0
  yield* Effect.acquireRelease(
    Effect.sync(() =>
      setInterval(() => {
        const line = lines[i++ % lines.length]
        kcat(["-P", "-b", mock.bootstrap, "-t", topic], `${line}\n${line.toUpperCase()}\n`).catch(() => undefined)
      }, 1000)
    ),
    (timer) => Effect.sync(() => clearInterval(timer)),
  )
  yield* Effect.log(
    `Started librdkafka's mock cluster at ${mock.bootstrap} and a kcat producer writing two lines a second`,
  )
  return [mock.bootstrap]
})

const program = Effect.gen(function* () {
  const brokers = process.env.KAFKA_BROKERS?.split(",") ?? (yield* mockWithProducer)
  const ssc = yield* StreamingContext.make({ batchInterval: "2 seconds" })
  const stream = KafkaDirectStream.make(ssc, {
    brokers,
    groupId,
    topics: [topic],
    autoOffsetReset: "latest",
    value: Schema.String,
    commit: "manual",
    sessionTimeout: 6000,
    heartbeatInterval: 500,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  // KafkaTest: print every value, then commit this batch's offsets.
  stream.foreachBatch((records, _time, meta) =>
    Effect.gen(function* () {
      for (const r of records) console.log(r.value)
      for (const range of meta.offsetRanges) console.log(String(range))
      yield* stream.commitAsync(meta.offsetRanges)
    })
  )
  stream
    .flatMap((r) => r.value.split(" "))
    .mapToPair((word) => [word, 1])
    .reduceByKey((a, b) => a + b)
    .print()
  stream.deadLetters.foreachBatch((dead) => {
    for (const d of dead) console.error(`dead letter ${d.topic}/${d.partition}@${d.offset}: ${d.error}`)
  })
  yield* ssc.start
  if (seconds === undefined) yield* ssc.awaitTermination
  else {
    yield* ssc.awaitTerminationOrTimeout(`${seconds} seconds`)
    yield* ssc.stop({ graceful: true })
  }
}).pipe(Effect.scoped)

Runtime.runMain(program)
