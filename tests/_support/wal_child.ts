/**
 * The write-ahead-log test's child process: numbered lines from a TCP server through a socket
 * receiver with the write-ahead log, into a count per line number (updateStateByKey),
 * recovered with getOrCreate. After every batch it writes the counts to `out` (temp + rename);
 * it prints each write-ahead log damage event as `DAMAGE <json>`.
 * Usage: wal_child.ts <port> <checkpoint dir> <out file>
 */
import process from "node:process"
import { Effect } from "effect"
import { Runtime, StreamingContext } from "../../mod.ts"
import { runningSum, writeCounts } from "./child.ts"

const [port, checkpointDir, outFile] = process.argv.slice(2)

Runtime.runMain(Effect.gen(function* () {
  const ssc = yield* StreamingContext.getOrCreate(checkpointDir, (ssc) => {
    ssc.addStreamingListener((event) => {
      if (event._tag === "WriteAheadLogDamaged") console.log(`DAMAGE ${JSON.stringify(event.damage)}`)
    })
    ssc.socketTextStream("127.0.0.1", Number(port), { writeAheadLog: { rollingInterval: "1 second" } })
      .filter((line) => line.length > 0)
      .mapToPair((line) => [Number(line), 1])
      .updateStateByKey(runningSum)
      .checkpoint("400 millis")
      .foreachBatch(writeCounts(outFile))
  }, { batchInterval: "200 millis" })
  yield* ssc.start
  yield* ssc.awaitTermination
}))
