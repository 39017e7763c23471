/**
 * Replay over a directory: the event-time word count of examples/event_time_word_count.ts
 * (lines "<epoch ms> <text>", tumbling 10-second windows, watermark 5 s behind) run over the
 * text files of a directory as fast as the machine allows: one batch per 30 seconds of event
 * time, on a virtual clock. The program ends by itself when every file has been read.
 *
 *   deno run -A examples/replay_directory.ts [directory]
 *   bun examples/replay_directory.ts [directory]
 *
 * With no argument it first writes an hour of sample history (one line a second, out of order
 * by up to 3 s, a few lines late) into a temporary directory, in 6 files of 10 minutes.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import process from "node:process"
import { Effect } from "effect"
import { type DStream, EventTime, Replay, Runtime, StreamingContext } from "../mod.ts"
import { sampleText } from "./_sample_server.ts"

/** The pipeline, as a live job would build it over `ssc.textFileStream(directory)`. */
const wordCounts = (lines: DStream.DStream<string>) =>
  lines
    .map((line) => {
      const space = line.indexOf(" ")
      return { time: Number(line.slice(0, space)), text: line.slice(space + 1) }
    })
    .filter((line) => Number.isFinite(line.time))
    .flatMap((line) => line.text.split(" ").map((word) => ({ time: line.time, word })))
    .withWatermark((w) => w.time, "5 seconds")
    .keyBy((w) => w.word)
    .countByEventWindow(EventTime.tumbling("10 seconds"))

/** Writes an hour of history: one line a second, in 6 files. */
const writeSampleHistory = (dir: string): void => {
  const start = Date.UTC(2026, 0, 1, 12, 0, 0)
  for (let f = 0; f < 6; f++) {
    const lines: Array<string> = []
    for (let s = f * 600; s < (f + 1) * 600; s++) {
      const lag = s % 97 === 0 ? 60_000 : (s * 7919) % 3000
      lines.push(`${start + s * 1000 - lag} ${sampleText[s % sampleText.length]}`)
    }
    const file = nodePath.join(dir, `history-${f}.txt`)
    fs.writeFileSync(file, lines.join("\n") + "\n")
    const at = new Date(Date.now() - (6 - f) * 1000)
    fs.utimesSync(file, at, at)
  }
}

const args = process.argv.slice(2)
const time = (ms: number) => new Date(ms).toISOString().slice(11, 19)

const program = Effect.gen(function* () {
  const scratch = fs.mkdtempSync(nodePath.join(os.tmpdir(), "replay-directory-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(scratch, { recursive: true, force: true })))
  const directory = args[0] ?? nodePath.join(scratch, "history")
  if (args[0] === undefined) {
    fs.mkdirSync(directory)
    writeSampleHistory(directory)
  }
  yield* Effect.log(`Replaying ${directory}`)

  const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
  ssc.checkpoint(nodePath.join(scratch, "checkpoint"))
  // One batch per 30 seconds of event time (by the lines' own stamps).
  const lines = Replay.input(ssc, Replay.fromDirectory(directory), {
    eventTime: (line) => Number(line.slice(0, line.indexOf(" "))),
    span: "30 seconds",
  })
  const counts = wordCounts(lines)
  let windows = 0
  let late = 0
  counts.foreachBatch((batch) => {
    const byWindow = new Map<string, number>()
    for (const w of batch) {
      const id = `[${time(w.start)}, ${time(w.end)})`
      byWindow.set(id, (byWindow.get(id) ?? 0) + w.value)
      windows++
    }
    for (const [id, words] of byWindow) console.log(`window ${id}: ${words} words`)
  })
  counts.late().foreachBatch((batch) => {
    // One line per late source line: its words, its time and the watermark.
    const byLine = new Map<string, Array<string>>()
    for (const l of batch) {
      late++
      const id = `at ${time(l.record[1].time)}, watermark ${time(l.watermark)}`
      byLine.set(id, [...(byLine.get(id) ?? []), l.record[0]])
    }
    for (const [id, words] of byLine) console.log(`late: "${words.join(" ")}" ${id}`)
  })
  const started = performance.now()
  yield* Replay.run(ssc)
  yield* Effect.log(
    `Replay done in ${
      (performance.now() - started).toFixed(0)
    } ms: ${windows} (word, window) results, ${late} late words`,
  )
}).pipe(Effect.scoped)

Runtime.runMain(program)
