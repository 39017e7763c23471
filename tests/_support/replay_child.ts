/**
 * The replay crash test's child process: replays a directory of lines "<event time ms> <key>"
 * (25 records a batch, a checkpoint every batch) through a tumbling 3 s count per key,
 * recovered with getOrCreate, and exits when the history is done. Every emitted window is
 * merged into `out` (temp + rename); a window emitted twice with different values is recorded
 * as a conflict.
 * Usage: replay_child.ts <input dir> <checkpoint dir> <out file>
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs"
import process from "node:process"
import { Effect } from "effect"
import { EventTime, Replay, Runtime, StreamingContext } from "../../mod.ts"

const [inputDir, checkpointDir, outFile] = process.argv.slice(2)

interface Out {
  windows: Record<string, number>
  conflicts: Array<string>
}

const readOut = (): Out => {
  try {
    return JSON.parse(readFileSync(outFile, "utf8"))
  } catch {
    return { windows: {}, conflicts: [] }
  }
}

Runtime.runMain(Effect.gen(function* () {
  const ssc = yield* StreamingContext.getOrCreate(checkpointDir, (ssc) => {
    Replay.input(ssc, Replay.fromDirectory(inputDir), { recordsPerBatch: 25 })
      .map((line) => {
        const [t, k] = line.split(" ")
        return { t: Number(t), k }
      })
      .withWatermark((e) => e.t, "2 seconds")
      .keyBy((e) => e.k)
      .countByEventWindow(EventTime.tumbling("3 seconds"))
      .checkpoint("1 second")
      .foreachBatch((batch) => {
        if (batch.length === 0) return
        const out = readOut()
        for (const w of batch) {
          const id = `${w.key} ${w.start}`
          const before = out.windows[id]
          if (before !== undefined && before !== w.value) out.conflicts.push(`${id}: ${before} then ${w.value}`)
          out.windows[id] = w.value
        }
        writeFileSync(`${outFile}.tmp`, JSON.stringify(out))
        renameSync(`${outFile}.tmp`, outFile)
      })
  }, { batchInterval: "1 second" })
  yield* Effect.log("Replaying")
  yield* Replay.run(ssc)
  yield* Effect.log("Replay finished")
}))
