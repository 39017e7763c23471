/** Recovery runs shared by the checkpoint tests: a context from getOrCreate under TestClock. */
import { Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import { Checkpoint, type DStream, StreamingContext } from "../../mod.ts"
import { sorted } from "./run.ts"

/** Builds the pipeline whose batches a recovery test compares. */
export type Build = (ssc: StreamingContext.StreamingContext) => DStream.DStream<unknown>

/**
 * Runs a context from getOrCreate under TestClock: the clock starts at `startAt` (the time the
 * process "comes back"), then advances `numBatches` batches. Returns [time, sorted batch].
 */
export const runFrom = (build: Build, options: { readonly startAt: number; readonly numBatches: number }) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(options.startAt)
    const out: Array<readonly [number, unknown]> = []
    const ssc = yield* StreamingContext.getOrCreate("checkpoint", (ssc) => {
      build(ssc).foreachBatch((batch, time) => {
        out.push([time, sorted([batch])[0]])
      })
    })
    yield* ssc.start
    const first = (Math.floor(options.startAt / 1000) + 1) * 1000
    yield* Effect.yieldNow
    for (let k = 0; k < options.numBatches; k++) {
      yield* TestClock.adjust(1000)
      yield* ssc.awaitBatch(first + k * 1000)
    }
    if ((yield* ssc.state) === "STOPPED") yield* ssc.awaitTermination
    yield* ssc.stop()
    return out
  }).pipe(Effect.provide(TestClock.layer()))

export const withStore = (store: Checkpoint.CheckpointStoreShape) =>
  Effect.provide(Layer.succeed(Checkpoint.CheckpointStore, store))
