/**
 * Event-time word count: lines "<epoch ms> <text>" from a TCP server, counted per word in
 * tumbling 10-second windows of the time each line was written (not when it arrived). The
 * watermark trails the newest time seen by 5 seconds; each window is printed once, when the
 * watermark passes its end; lines older than that are late and printed separately.
 *
 *   deno run -A examples/event_time_word_count.ts [host port]
 *   bun examples/event_time_word_count.ts [host port]
 *
 * With no arguments, an embedded server on a free port sends a sample text, five lines a
 * second, each stamped with its time minus a random lag: most lag 0–3 s (out of order, still
 * counted), about one in ten lags 30 s (late). Ctrl-C stops it.
 */
import * as fs from "node:fs"
import * as Net from "node:net"
import * as os from "node:os"
import * as nodePath from "node:path"
import process from "node:process"
import { Effect } from "effect"
import type { Scope } from "effect"
import { EventTime, Runtime, StreamingContext } from "../mod.ts"
import { sampleText } from "./_sample_server.ts"

/** A line server sending timestamped sample lines, some out of order, some late. */
const serveTimestampedLines: Effect.Effect<{ host: string; port: number }, never, Scope.Scope> = Effect.acquireRelease(
  Effect.callback<Net.Server>((resume) => {
    const server = Net.createServer((socket) => {
      let next = 0
      const timer = setInterval(() => {
        const lag = Math.random() < 0.1 ? 30_000 : Math.floor(Math.random() * 3000)
        socket.write(`${Date.now() - lag} ${sampleText[next]}\n`)
        next = (next + 1) % sampleText.length
      }, 200)
      socket.on("error", () => {})
      socket.on("close", () => clearInterval(timer))
    })
    server.once("error", (error) => resume(Effect.die(error)))
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void))),
).pipe(Effect.map((server) => ({ host: "127.0.0.1", port: (server.address() as Net.AddressInfo).port })))

const args = process.argv.slice(2)
const time = (ms: number) => new Date(ms).toISOString().slice(11, 19)

const program = Effect.gen(function* () {
  const { host, port } = args.length >= 2 ? { host: args[0], port: Number(args[1]) } : yield* serveTimestampedLines
  yield* Effect.log(`Counting words by event time from ${host}:${port}`)

  const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
  const checkpointDir = nodePath.join(os.tmpdir(), `event-time-word-count-${process.pid}`)
  yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(checkpointDir, { recursive: true, force: true })))
  ssc.checkpoint(checkpointDir)
  const counts = ssc.socketTextStream(host, port)
    .map((line) => {
      const space = line.indexOf(" ")
      return { time: Number(line.slice(0, space)), text: line.slice(space + 1) }
    })
    .filter((line) => Number.isFinite(line.time))
    .flatMap((line) => line.text.split(" ").map((word) => ({ time: line.time, word })))
    .withWatermark((w) => w.time, "5 seconds")
    .keyBy((w) => w.word)
    .countByEventWindow(EventTime.tumbling("10 seconds"))
  counts.foreachBatch((windows) => {
    if (windows.length === 0) return
    const byWindow = new Map<string, Array<string>>()
    for (const w of windows) {
      const id = `[${time(w.start)}, ${time(w.end)})`
      const list = byWindow.get(id) ?? []
      list.push(`${w.key}: ${w.value}`)
      byWindow.set(id, list)
    }
    for (const [id, words] of byWindow) console.log(`window ${id} final: ${words.join(", ")}`)
  })
  counts.late().foreachBatch((late) => {
    // One line per late source line: its words, its time, its window and the watermark.
    const byLine = new Map<string, Array<string>>()
    for (const l of late) {
      const id = `at ${time(l.record[1].time)} for window [${time(l.window.start)}, ${time(l.window.end)}), watermark ${
        time(l.watermark)
      }`
      const words = byLine.get(id) ?? []
      words.push(l.record[0])
      byLine.set(id, words)
    }
    for (const [id, words] of byLine) console.log(`late: "${words.join(" ")}" ${id}`)
  })
  yield* ssc.start
  yield* ssc.awaitTermination
}).pipe(Effect.scoped)

Runtime.runMain(program)
