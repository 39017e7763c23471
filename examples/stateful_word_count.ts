/**
 * Spark's StatefulNetworkWordCount / RecoverableNetworkWordCount: a running word count over
 * everything received from a TCP server, kept with `updateStateByKey` and checkpointed to the
 * directory `checkpoint`. Kill the process (even with SIGKILL) and start it again: getOrCreate
 * recovers the counts and they continue from where they were.
 *
 *   deno run -A examples/stateful_word_count.ts [host port]
 *   bun examples/stateful_word_count.ts [host port]
 *
 * With `nc -lk 9999` in another terminal and `localhost 9999` as arguments, every line typed
 * adds to the counts. With no arguments, an embedded server on a free port replays a sample
 * text. Ctrl-C stops it gracefully.
 */
import process from "node:process"
import { Effect, Option } from "effect"
import { Runtime, StreamingContext } from "../mod.ts"
import { serveSampleText } from "./_sample_server.ts"

const args = process.argv.slice(2)

const program = Effect.gen(function* () {
  const { host, port } = args.length >= 2 ? { host: args[0], port: Number(args[1]) } : yield* serveSampleText()
  yield* Effect.log(`Counting words from ${host}:${port}, checkpointing to ./checkpoint`)

  const ssc = yield* StreamingContext.getOrCreate("checkpoint", (ssc) => {
    ssc.checkpoint("checkpoint")
    ssc.socketTextStream(host, port)
      .flatMap((line) => line.split(" "))
      .filter((word) => word.length > 0)
      .mapToPair((word) => [word, 1])
      .updateStateByKey((values: ReadonlyArray<number>, state: Option.Option<number>) =>
        Option.some(values.reduce((a, b) => a + b, Option.getOrElse(state, () => 0)))
      )
      .print()
  })
  yield* ssc.start
  yield* ssc.awaitTermination
}).pipe(Effect.scoped)

Runtime.runMain(program)
