/**
 * Spark's NetworkWordCount: counts words in UTF-8 text received from a TCP server every second.
 *
 *   deno run -A examples/network_word_count.ts [host port]
 *   bun examples/network_word_count.ts [host port]
 *
 * With `nc -lk 9999` in another terminal and `localhost 9999` as arguments, every line typed
 * shows up in that batch's counts. With no arguments, an embedded server on a free port
 * replays a sample text, so the example runs with nothing else installed. Ctrl-C stops it
 * gracefully.
 */
import process from "node:process"
import { Effect } from "effect"
import { StreamingContext } from "../mod.ts"
import { serveSampleText } from "./_sample_server.ts"

const args = process.argv.slice(2)

const program = Effect.gen(function* () {
  const { host, port } = args.length >= 2 ? { host: args[0], port: Number(args[1]) } : yield* serveSampleText()
  yield* Effect.log(`Counting words from ${host}:${port}`)

  const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
  ssc.socketTextStream(host, port)
    .flatMap((line) => line.split(" "))
    .mapToPair((word) => [word, 1])
    .reduceByKey((a, b) => a + b)
    .print()
  yield* ssc.start
  yield* ssc.awaitTermination
}).pipe(Effect.scoped)

StreamingContext.runMain(program)
