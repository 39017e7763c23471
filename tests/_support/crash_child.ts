/**
 * The crash test's child process: the stateful word count over a text-file stream, recovered
 * with getOrCreate. After every batch it writes the running counts to `out` (temp + rename).
 * Usage: crash_child.ts <input dir> <checkpoint dir> <out file>
 */
import process from "node:process"
import { Effect } from "effect"
import { Runtime, StreamingContext } from "../../mod.ts"
import { runningSum, writeCounts } from "./child.ts"

const [inputDir, checkpointDir, outFile] = process.argv.slice(2)

Runtime.runMain(Effect.gen(function* () {
  const ssc = yield* StreamingContext.getOrCreate(checkpointDir, (ssc) => {
    ssc.textFileStream(inputDir)
      .flatMap((line) => line.split(" "))
      .filter((w) => w.length > 0)
      .mapToPair((w) => [w, 1])
      .updateStateByKey(runningSum)
      .checkpoint("600 millis")
      .foreachBatch(writeCounts(outFile))
  }, { batchInterval: "200 millis" })
  yield* ssc.start
  yield* ssc.awaitTermination
}))
