/**
 * The file-recovery test's child process: textFileStream → map(Number) → reduceByWindow(+, 2 s,
 * 400 ms) with a checkpoint directory, recovered with getOrCreate. Every batch writes the
 * numbers it read to `<out>/batch-<time>.json`, and every window its result to
 * `<out>/window-<time>.json` (temp + rename), so the test can recompute each window from the
 * batches that an uninterrupted run would have made of the same files.
 * Usage: file_window_child.ts <input dir> <checkpoint dir> <out dir>
 */
import process from "node:process"
import { renameSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { Runtime, StreamingContext } from "../../mod.ts"

const [inputDir, checkpointDir, outDir] = process.argv.slice(2)

const writeAtomically = (name: string, value: unknown): void => {
  const tmp = join(outDir, `.${name}.tmp`)
  writeFileSync(tmp, JSON.stringify(value))
  renameSync(tmp, join(outDir, name))
}

Runtime.runMain(Effect.gen(function* () {
  const ssc = yield* StreamingContext.getOrCreate(checkpointDir, (ssc) => {
    const numbers = ssc.textFileStream(inputDir).map(Number)
    numbers.foreachBatch((batch, time) => writeAtomically(`batch-${time}.json`, batch))
    numbers.reduceByWindow((a, b) => a + b, "2 seconds", "400 millis")
      .foreachBatch((batch, time) => writeAtomically(`window-${time}.json`, batch))
  }, { batchInterval: "200 millis" })
  yield* ssc.start
  yield* ssc.awaitTermination
}))
