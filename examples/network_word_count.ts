/**
 * Spark's NetworkWordCount: counts words in UTF-8 text received from a TCP server every second.
 *
 *   deno run -A examples/network_word_count.ts [host port] [--ui 4040]
 *   bun examples/network_word_count.ts [host port] [--ui 4040]
 *
 * With `nc -lk 9999` in another terminal and `localhost 9999` as arguments, every line typed
 * shows up in that batch's counts. With no arguments, an embedded server on a free port
 * replays a sample text, so the example runs with nothing else installed. Ctrl-C stops it
 * gracefully. With `--ui <port>`, the live Streaming page is served at http://127.0.0.1:<port>/
 * (JSON under /api/status, /api/batches, …; Prometheus text at /metrics).
 */
import process from "node:process"
import { Effect } from "effect"
import { Runtime, StreamingContext, StreamingUI } from "../mod.ts"
import { serveSampleText } from "./_sample_server.ts"

const argv = process.argv.slice(2)
const uiAt = argv.indexOf("--ui")
const uiPort = uiAt >= 0 ? Number(argv[uiAt + 1]) : undefined
const args = uiAt >= 0 ? argv.filter((_, i) => i !== uiAt && i !== uiAt + 1) : argv

const program = Effect.gen(function* () {
  const { host, port } = args.length >= 2 ? { host: args[0], port: Number(args[1]) } : yield* serveSampleText()
  yield* Effect.log(`Counting words from ${host}:${port}`)

  const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
  if (uiPort !== undefined) {
    const ui = yield* StreamingUI.serve(ssc, { port: uiPort })
    yield* Effect.log(`Streaming UI at ${ui.url}`)
  }
  ssc.socketTextStream(host, port)
    .flatMap((line) => line.split(" "))
    .mapToPair((word) => [word, 1])
    .reduceByKey((a, b) => a + b)
    .print()
  yield* ssc.start
  yield* ssc.awaitTermination
}).pipe(Effect.scoped)

Runtime.runMain(program)
