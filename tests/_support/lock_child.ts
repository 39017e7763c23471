/**
 * The checkpoint-lock test's child process: a context on `<checkpoint dir>` with an idle
 * receiver. `try`: starts it and prints `RESULT <json>` (the start's failure: tag, message,
 * owner) then exits; `hold`: starts it, prints `STARTED <pid>` and runs until killed.
 * Usage: lock_child.ts <try|hold> <checkpoint dir>
 */
import process from "node:process"
import { Effect, Exit } from "effect"
import { Receiver, Runtime, StreamingContext } from "../../mod.ts"

const [mode, checkpointDir] = process.argv.slice(2)

Runtime.runMain(Effect.gen(function* () {
  const ssc = yield* StreamingContext.getOrCreate(checkpointDir, (ssc) => {
    ssc.receiverStream(Receiver.make<string>({ name: "idle", run: () => Effect.never })).foreachBatch(() => {})
  }, { batchInterval: "100 millis" })
  const exit = yield* Effect.exit(ssc.start)
  if (mode === "try") {
    const failure = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
    const error = failure?._tag === "Fail" ? failure.error : undefined
    console.log(`RESULT ${
      JSON.stringify({
        started: Exit.isSuccess(exit),
        tag: error?._tag,
        message: error?.message,
        owner: error?._tag === "CheckpointLockedError" ? error.owner : undefined,
      })
    }`)
    yield* ssc.stop()
    return
  }
  console.log(`STARTED ${process.pid}`)
  yield* ssc.awaitTermination
}))
