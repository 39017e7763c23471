/** Helpers for tests that run a context on the real clock. */
import { Effect } from "effect"
import { type Listener, Runtime, type StreamingContext } from "../../mod.ts"

/** Runs a scoped program with the runtime's platform services (`Runtime.layer`) on the real clock. */
export const live = <A, E>(effect: Effect.Effect<A, E, any>): Promise<A> =>
  Effect.runPromise(effect.pipe(Effect.scoped, Effect.provide(Runtime.layer)) as Effect.Effect<A, E>)

/** Polls `condition` every 20 ms; dies after `timeoutMillis` (generous: the machine is shared). */
export const waitFor = (condition: () => boolean, what: string, timeoutMillis = 60_000): Effect.Effect<void> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMillis
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("20 millis")
    }
  })

/** Collects every event of `ssc` (callback form) into an array. */
export const collectEvents = (ssc: StreamingContext.StreamingContext): Array<Listener.StreamingEvent> => {
  const events: Array<Listener.StreamingEvent> = []
  ssc.addStreamingListener((e) => {
    events.push(e)
  })
  return events
}

/** The BatchInfo of every completed batch in `events`. */
export const completed = (events: ReadonlyArray<Listener.StreamingEvent>): Array<Listener.BatchInfo> =>
  events.flatMap((e) => e._tag === "BatchCompleted" ? [e.batchInfo] : [])
