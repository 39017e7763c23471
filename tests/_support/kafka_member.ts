/**
 * A consumer-group member for the Kafka tests, run as a child process:
 *   <runtime> tests/_support/kafka_member.ts <brokers> <topic> <groupId> [stall]
 * Prints one JSON line per batch: {"assignment":[p...],"records":[[partition,offset,value]...]}.
 * With `stall`, the output of the first non-empty batch prints its records and then never
 * completes, so that batch is never committed.
 */
import process from "node:process"
import { Effect, Schema } from "effect"
import { Kafka, Runtime, StreamingContext } from "../../mod.ts"

const [brokers, topic, groupId, mode] = process.argv.slice(2)

Runtime.runMain(Effect.gen(function* () {
  const ssc = yield* StreamingContext.make({ batchInterval: "300 millis" })
  const stream = Kafka.directStream(ssc, {
    brokers: brokers.split(","),
    groupId,
    topics: [topic],
    autoOffsetReset: "earliest",
    value: Schema.String,
    sessionTimeout: 4000,
    heartbeatInterval: 400,
    maxWaitTimeInMs: 200,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  let stalled = false
  stream.foreachBatch((records) =>
    Effect.gen(function* () {
      const assignment = (yield* stream.assignment).map((tp) => tp.partition).sort()
      process.stdout.write(
        JSON.stringify({ assignment, records: records.map((r) => [r.partition, r.offset, r.value]) }) + "\n",
      )
      if (mode === "stall" && records.length > 0 && !stalled) {
        stalled = true
        yield* Effect.never
      }
    })
  )
  yield* ssc.start
  yield* ssc.awaitTermination
}))
