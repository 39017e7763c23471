/**
 * The event-time crash test's child process: a session count per key over a text-file stream
 * (lines "<event time ms> <key>"), watermark delay 2 s, session gap 1 s, recovered with
 * getOrCreate. Every emitted window and late record is merged into `out` (temp + rename), so
 * windows re-emitted by batches re-run after a restart show up once, and a re-emission with a
 * different value shows up as a conflict. After every batch it writes the batch time and the
 * watermark in effect to `progress`.
 * Usage: event_time_child.ts <input dir> <checkpoint dir> <out file> <progress file>
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs"
import process from "node:process"
import { Effect } from "effect"
import { EventTime, Runtime, StreamingContext } from "../../mod.ts"

const [inputDir, checkpointDir, outFile, progressFile] = process.argv.slice(2)

interface Out {
  windows: Record<string, number>
  late: Array<string>
  conflicts: Array<string>
}

const writeAtomically = (file: string, data: unknown): void => {
  writeFileSync(`${file}.tmp`, JSON.stringify(data))
  renameSync(`${file}.tmp`, file)
}

const readOut = (): Out => {
  try {
    return JSON.parse(readFileSync(outFile, "utf8"))
  } catch {
    return { windows: {}, late: [], conflicts: [] }
  }
}

Runtime.runMain(Effect.gen(function* () {
  const ssc = yield* StreamingContext.getOrCreate(checkpointDir, (ssc) => {
    const sessions = ssc.textFileStream(inputDir)
      .filter((line) => line.length > 0)
      .map((line) => {
        const [t, k] = line.split(" ")
        return { t: Number(t), k }
      })
      .withWatermark((e) => e.t, "2 seconds")
      .keyBy((e) => e.k)
      .countByEventWindow(EventTime.session("1 second"), { name: "sessions" })
      .checkpoint("400 millis")
    sessions.foreachBatch((batch) => {
      if (batch.length === 0) return
      const out = readOut()
      for (const w of batch) {
        const id = `${w.key} ${w.start} ${w.end}`
        const before = out.windows[id]
        if (before !== undefined && before !== w.value) out.conflicts.push(`${id}: ${before} then ${w.value}`)
        out.windows[id] = w.value
      }
      writeAtomically(outFile, out)
    })
    sessions.late().foreachBatch((batch) => {
      if (batch.length === 0) return
      const out = readOut()
      for (const l of batch) {
        const id = `${l.record[1].t} ${l.record[0]}`
        if (!out.late.includes(id)) out.late.push(id)
      }
      writeAtomically(outFile, out)
    })
    sessions.progress().foreachBatch((batch) => {
      for (const p of batch) writeAtomically(progressFile, { time: p.batchTime, watermark: p.watermark ?? null })
    })
  }, { batchInterval: "200 millis" })
  yield* ssc.start
  yield* ssc.awaitTermination
}))
