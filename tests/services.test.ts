/**
 * Pipelines that use the user's own Effect services: a `Context.Service` declared with
 * `StreamingContext.make<R>` is usable from `foreachBatch`, `transform`, `transformWith`,
 * receivers and `fromStream`, provided by a Layer; a typed failure of an output keeps its type
 * through the output's handle. The `@ts-expect-error` lines prove that forgetting to declare or
 * to provide a service does not compile (`deno check` runs this file).
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Cause, Context, Data, Effect, Exit, Layer, Ref, Stream } from "effect"
import { TestClock } from "effect/testing"
import { type BatchJobError, DStream, Receiver, StreamingContext } from "../mod.ts"

/** A user service: counts what it is told, keeps what it is given. */
class Counter extends Context.Service<Counter, {
  readonly add: (n: number) => Effect.Effect<void>
  readonly keep: (batch: ReadonlyArray<string>) => Effect.Effect<void>
  readonly total: Effect.Effect<number>
  readonly kept: Effect.Effect<ReadonlyArray<ReadonlyArray<string>>>
}>()("tests/Counter") {}

const counterLayer: Layer.Layer<Counter> = Layer.effect(Counter)(Effect.gen(function* () {
  const total = yield* Ref.make(0)
  const kept = yield* Ref.make<ReadonlyArray<ReadonlyArray<string>>>([])
  return {
    add: (n) => Ref.update(total, (t) => t + n),
    keep: (batch) => Ref.update(kept, (k) => [...k, batch]),
    total: Ref.get(total),
    kept: Ref.get(kept),
  }
}))

/** Another user service, for the typed-failure test. */
class SinkDown extends Data.TaggedError("SinkDown")<{ readonly batchSize: number }> {}

const expectType = <T>(_value: T) => ({
  toBe: <U>(_check: [T] extends [U] ? ([U] extends [T] ? true : false) : false) => {},
})

describe("user services in pipelines", () => {
  it("foreachBatch, transform, transformWith and a receiver use a Context.Service provided by a Layer", async () => {
    const program = Effect.gen(function* () {
      const ssc = yield* StreamingContext.make<Counter>({ batchInterval: "1 second" })
      const words = ssc.queueStream([["a", "b"], ["c"], []])
      const ticks = ssc.receiverStream(Receiver.make<number, Counter>({
        name: "counted",
        run: (store) =>
          Effect.gen(function* () {
            const counter = yield* Counter
            yield* counter.add(100) // the receiver sees the service too
            yield* store(1)
            return yield* Effect.never
          }),
      }))
      const upper = words.transform((batch) =>
        Effect.gen(function* () {
          const counter = yield* Counter
          yield* counter.add(batch.length)
          return batch.map((w) => w.toUpperCase())
        })
      )
      upper.transformWith(ticks, (ws, ts) =>
        Effect.gen(function* () {
          const counter = yield* Counter
          yield* counter.add(ts.length * 1000)
          return ws
        })).foreachBatch((batch) => Effect.flatMap(Effect.service(Counter), (counter) => counter.keep(batch)))
      yield* ssc.start
      for (let k = 0; k < 3; k++) {
        yield* TestClock.adjust("1 second")
        yield* ssc.awaitBatch(1000 * (k + 1))
      }
      yield* ssc.stop()
      const counter = yield* Counter
      return { total: yield* counter.total, kept: yield* counter.kept }
    })
    const result = await Effect.runPromise(
      program.pipe(Effect.provide(counterLayer), Effect.provide(TestClock.layer())),
    )
    assert.deepEqual(result.kept, [["A", "B"], ["C"], []])
    assert.equal(result.total, 100 + 3 + 1000)
  })

  it("fromStream runs an Effect Stream that needs a service", async () => {
    const program = Effect.gen(function* () {
      const ssc = yield* StreamingContext.make<Counter>({ batchInterval: "1 second" })
      const fromService = Stream.fromEffect(Effect.as(Effect.flatMap(Effect.service(Counter), (c) => c.add(7)), "seen"))
      ssc.fromStream(fromService).foreachBatch((batch) => Effect.flatMap(Effect.service(Counter), (c) => c.keep(batch)))
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      yield* ssc.awaitBatch(1000)
      yield* ssc.stop()
      const counter = yield* Counter
      return { total: yield* counter.total, kept: yield* counter.kept }
    })
    const result = await Effect.runPromise(
      program.pipe(Effect.provide(counterLayer), Effect.provide(TestClock.layer())),
    )
    assert.deepEqual(result, { total: 7, kept: [["seen"]] })
  })

  it("a typed failure of an output keeps its type: the handle narrows the BatchJobError", async () => {
    const program = Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      const nums = ssc.queueStream([[1, 2], [3]])
      const other = nums.foreachBatch(() => Effect.void)
      const sink = nums.foreachBatch((batch) =>
        batch.length === 1 ? Effect.fail(new SinkDown({ batchSize: batch.length })) : Effect.void
      )
      yield* ssc.start
      yield* TestClock.adjust("2 seconds")
      const exit = yield* Effect.exit(ssc.awaitTermination)
      return { exit, sink, other }
    })
    const { exit, sink, other } = await Effect.runPromise(program.pipe(Effect.provide(TestClock.layer())))
    assert.ok(Exit.isFailure(exit))
    const error = Cause.squash(exit.cause)
    assert.equal(sink.id, 1)
    assert.equal(other.isFailure(error), false)
    if (!sink.isFailure(error)) return assert.fail(`not the sink's failure: ${String(error)}`)
    expectType(error).toBe<BatchJobError<SinkDown>>(true)
    expectType(error.cause).toBe<SinkDown>(true)
    assert.equal(error.cause._tag, "SinkDown")
    assert.equal(error.cause.batchSize, 1)
    assert.equal(error.batchTime, 2000)
    assert.equal(error.origin, "output")
  })

  it("a defect (a thrown exception) is not taken for the output's typed failure", async () => {
    const program = Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      const out = ssc.queueStream([[1]]).foreachBatch((): Effect.Effect<void, SinkDown> => {
        throw new Error("bug")
      })
      yield* ssc.start
      yield* TestClock.adjust("1 second")
      return { exit: yield* Effect.exit(ssc.awaitTermination), out }
    })
    const { exit, out } = await Effect.runPromise(program.pipe(Effect.provide(TestClock.layer())))
    assert.ok(Exit.isFailure(exit))
    const error = Cause.squash(exit.cause)
    assert.equal(out.isFailure(error), false)
    assert.equal((error as BatchJobError).origin, "defect")
  })
})

// ---- compile-time checks (deno check) -----------------------------------------------------------

/** Built, never run: these only have to type-check (or fail to, where marked). */
export const typeChecks = () => {
  const useCounter = (batch: ReadonlyArray<string>) => Effect.flatMap(Effect.service(Counter), (c) => c.keep(batch))

  // A context that declares the service accepts outputs and transforms that use it ...
  const declared = Effect.gen(function* () {
    const ssc = yield* StreamingContext.make<Counter>({ batchInterval: "1 second" })
    ssc.queueStream([["a"]]).map((w) => w + "!").foreachBatch(useCounter)
    // the pipeable transform and foreachBatch keep the services too
    ssc.queueStream([["a"]]).pipe(
      DStream.transform((batch: ReadonlyArray<string>) => Effect.as(useCounter(batch), batch)),
      DStream.foreachBatch(useCounter),
    )
    yield* ssc.start
  })
  // ... and requires it: running the program without providing it does not compile ...
  // @ts-expect-error Type 'Counter' is not assignable to type 'never'
  Effect.runPromise(declared)
  // ... and providing it is what makes it compile.
  Effect.runPromise(declared.pipe(Effect.provide(counterLayer)))

  // A context that does not declare the service rejects an output that uses it.
  Effect.gen(function* () {
    const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
    // @ts-expect-error Type 'Counter' is not assignable to type 'FileSystem | Path'
    ssc.queueStream([["a"]]).foreachBatch(useCounter)
    // @ts-expect-error the same for transform
    ssc.queueStream([["a"]]).transform((batch) => Effect.as(useCounter(batch), batch))
  })

  // getOrCreate declares services the same way.
  const recovered = StreamingContext.getOrCreate<Counter>("ckpt", (ssc) => {
    ssc.queueStream([["a"]]).foreachBatch(useCounter)
  })
  // @ts-expect-error Type 'Counter' is not assignable to type 'never'
  Effect.runPromise(recovered)
}
