/**
 * The Kafka crash tests' child process: a direct stream (earliest, one unique value per record)
 * into a running count per value (updateStateByKey), recovered with getOrCreate. After every
 * batch it writes the counts to `out` (temp + rename). With `slow`, outputs sometimes take
 * longer than a batch, so the clock cuts batches ahead of the checkpoints (their ranges are
 * recorded and re-run after a crash). KAFKA_CHILD_DEBUG=1 prints batch events and times.
 * Usage: kafka_child.ts <brokers> <topic> <groupId> <checkpoint dir> <out file> [slow]
 */
import process from "node:process"
import { Effect, Schema } from "effect"
import { Kafka, Runtime, StreamingContext } from "../../mod.ts"
import { runningSum, writeCounts } from "./child.ts"

const [brokers, topic, groupId, checkpointDir, outFile, mode] = process.argv.slice(2)

Runtime.runMain(Effect.gen(function* () {
  const ssc = yield* StreamingContext.getOrCreate(checkpointDir, (ssc) => {
    const stream = Kafka.KafkaDirectStream.make(ssc, {
      brokers: brokers.split(","),
      groupId,
      topics: [topic],
      autoOffsetReset: "earliest",
      value: Schema.String,
      maxRatePerPartition: 500,
      sessionTimeout: 3000,
      heartbeatInterval: 300,
      maxWaitTimeInMs: 100,
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
    })
    // `slow`: some batches with records take up to 400 ms (batches missed while the process
    // was down have none, so catching up stays fast)
    stream.foreachBatch((records) =>
      mode === "slow" && records.length > 0 && Math.random() < 0.3
        ? Effect.sleep(`${Math.floor(Math.random() * 400)} millis`)
        : Effect.void
    )
    stream
      .mapToPair((r) => [r.value, 1])
      .updateStateByKey(runningSum)
      .checkpoint("600 millis")
      .foreachBatch((counts, time) => {
        writeCounts(outFile)(counts, time)
        if (process.env.KAFKA_CHILD_DEBUG) process.stdout.write(`batch ${time} ${counts.length} ${Date.now()}\n`)
      })
  }, { batchInterval: "200 millis" })
  if (process.env.KAFKA_CHILD_DEBUG) {
    ssc.addStreamingListener((e) => {
      if (e._tag === "BatchSubmitted" || e._tag === "BatchStarted") {
        process.stdout.write(`${e._tag} ${e.batchInfo.batchTime} ${e.batchInfo.numRecords} ${Date.now()}\n`)
      } else if (e._tag === "ReceiverError") process.stdout.write(`${e._tag} ${e.receiverInfo.lastErrorMessage}\n`)
    })
  }
  yield* ssc.start
  process.stdout.write("started\n")
  yield* ssc.awaitTermination
}))
