/**
 * The write-ahead-log test's child process: numbered lines from a TCP server through a socket
 * receiver with the write-ahead log, into a count per line number (updateStateByKey),
 * recovered with getOrCreate. After every batch it writes the counts to `out` (temp + rename).
 * Usage: wal_child.ts <port> <checkpoint dir> <out file>
 */
import * as fs from "node:fs"
import process from "node:process"
import { Effect, Option } from "effect"
import { StreamingContext } from "../../mod.ts"

const [port, checkpointDir, outFile] = process.argv.slice(2)

StreamingContext.runMain(Effect.gen(function*() {
  const ssc = yield* StreamingContext.getOrCreate(checkpointDir, (ssc) => {
    ssc.socketTextStream("127.0.0.1", Number(port), { writeAheadLog: { rollingInterval: "1 second" } })
      .filter((line) => line.length > 0)
      .mapToPair((line) => [Number(line), 1])
      .updateStateByKey((values: ReadonlyArray<number>, state: Option.Option<number>) =>
        Option.some(values.reduce((a, b) => a + b, Option.getOrElse(state, () => 0)))
      )
      .checkpoint("400 millis")
      .foreachBatch((counts, time) => {
        const tmp = `${outFile}.tmp`
        fs.writeFileSync(tmp, JSON.stringify({ time, counts: Object.fromEntries(counts) }))
        fs.renameSync(tmp, outFile)
      })
  }, { batchInterval: "200 millis" })
  yield* ssc.start
  yield* ssc.awaitTermination
}))
