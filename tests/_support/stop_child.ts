/**
 * The graceful-stop test's child process: a receiver stores 3970 records; the output hangs
 * (`hang`) or works (`clean`). It logs `ready` once a batch with records is in its output, then
 * waits for SIGTERM. Usage: stop_child.ts <hang | clean> <graceful stop timeout in seconds>
 */
import process from "node:process"
import { Duration, Effect } from "effect"
import { Receiver, Runtime, StreamingContext } from "../../mod.ts"

const [mode, seconds] = process.argv.slice(2)
const gracefulStopTimeout = Duration.seconds(Number(seconds))

Runtime.runMain(Effect.gen(function* () {
  const ssc = yield* StreamingContext.make({ batchInterval: "200 millis", gracefulStopTimeout })
  ssc.receiverStream(Receiver.make<number>({
    name: "numbers",
    run: (store) => Effect.andThen(store.all(Array.from({ length: 3970 }, (_, i) => i)), Effect.never),
  })).foreachBatch(
    (batch) => {
      if (batch.length === 0) return
      console.log("ready")
      return mode === "hang" ? Effect.never : undefined
    },
    { timeout: Infinity },
  )
  yield* ssc.start
  yield* ssc.awaitTermination
}))
