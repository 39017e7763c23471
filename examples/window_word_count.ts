/**
 * Windowed word count (Spark's WindowedNetworkWordCount): with 1-second batches, counts the
 * words of the last 30 seconds every 10 seconds, in the two ways Spark offers:
 *
 * 1. `window("30 seconds", "10 seconds").reduceByKey(+)` — the batches of the window,
 *    reduced again at every slide;
 * 2. `reduceByKeyAndWindow(+, "30 seconds", "10 seconds")` — the same counts, from the
 *    per-batch reductions.
 *
 * Both print at 10 s, 20 s, 30 s, … after the start (the first two windows are partial) and
 * nothing in between. A third stream keeps 10-minute counts updated every second
 * incrementally (adds the batch that entered, subtracts the one that left):
 * `reduceByKeyAndWindow(+, −, "10 minutes", "1 second", { filter })`; it prints a one-line
 * summary every second.
 *
 *   deno run -A examples/window_word_count.ts [host port]
 *   bun examples/window_word_count.ts [host port]
 *
 * With `nc -lk 9999` in another terminal and `localhost 9999` as arguments, the lines typed
 * there are counted. With no arguments, an embedded server on a free port replays a sample
 * text. Ctrl-C stops it gracefully.
 */
import process from "node:process"
import { Console, Effect } from "effect"
import { Runtime, StreamingContext } from "../mod.ts"
import { serveSampleText } from "./_sample_server.ts"

const args = process.argv.slice(2)

const program = Effect.gen(function* () {
  const { host, port } = args.length >= 2 ? { host: args[0], port: Number(args[1]) } : yield* serveSampleText()
  yield* Effect.log(`Counting words of the last 30 seconds, every 10 seconds, from ${host}:${port}`)

  const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
  const words = ssc.socketTextStream(host, port).flatMap((line) => line.split(" ").filter((w) => w.length > 0))

  // 1. window, then reduce
  words.mapToPair((w) => [w, 1]).window("30 seconds", "10 seconds").reduceByKey((a, b) => a + b).print()

  // 2. reduceByKeyAndWindow
  words.mapToPair((w) => [w, 1]).reduceByKeyAndWindow((a, b) => a + b, "30 seconds", "10 seconds").print()

  // 3. incremental 10-minute window sliding every second: one summary line per second
  words.mapToPair((w) => [w, 1])
    .reduceByKeyAndWindow((a, b) => a + b, (a, b) => a - b, "10 minutes", "1 second", { filter: ([, n]) => n > 0 })
    .foreachBatch((counts, time) => {
      let total = 0
      for (const [, n] of counts) total += n
      return Console.log(`${time} ms: ${total} words (${counts.length} distinct) in the last 10 minutes`)
    })

  yield* ssc.start
  yield* ssc.awaitTermination
}).pipe(Effect.scoped)

Runtime.runMain(program)
