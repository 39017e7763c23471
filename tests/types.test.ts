/**
 * Type tests: `deno check` runs them. Each `@ts-expect-error` line proves a misuse does not
 * compile (if it ever compiled, the unused directive would fail the check); the runtime test
 * below only builds the pipelines.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect, Option } from "effect"
import { DStream, type State, StateSpec, StreamingContext, Window } from "../mod.ts"

type Equals<X, Y> = (<T>() => T extends X ? 1 : 2) extends (<T>() => T extends Y ? 1 : 2) ? true : false
const expectType = <T>(_value: T) => ({ toBe: <U>(_check: Equals<T, U>) => {} })

const build = (ssc: StreamingContext.StreamingContext) => {
  const lines = ssc.queueStream<string>([["a b"]])
  const words = lines.flatMap((l) => l.split(" "))
  expectType(words).toBe<DStream.DStream<string>>(true)

  // mapToPair / keyBy widen literal value types.
  const pairs = words.mapToPair((w) => [w, 1])
  expectType(pairs).toBe<DStream.DStream<readonly [string, number]>>(true)
  const keyed = words.keyBy((w) => w.length)
  expectType(keyed).toBe<DStream.DStream<readonly [number, string]>>(true)

  const counts = pairs.reduceByKey((a, b) => a + b)
  expectType(counts).toBe<DStream.DStream<readonly [string, number]>>(true)

  // Keyed operators on an untyped stream (`DStream<any>`, e.g. parsed JSON) keep `any`, not `unknown`.
  const untyped = lines.map((l): any => JSON.parse(l))
  expectType(untyped.reduceByKey((a, b) => a + b)).toBe<DStream.DStream<readonly [any, any]>>(true)
  expectType(untyped.mapValues((v) => v.total)).toBe<DStream.DStream<readonly [any, any]>>(true)
  expectType(untyped.join(untyped)).toBe<DStream.DStream<readonly [any, readonly [any, any]]>>(true)
  expectType(untyped.groupByKey()).toBe<DStream.DStream<readonly [any, ReadonlyArray<any>]>>(true)
  expectType(pairs.groupByKey()).toBe<DStream.DStream<readonly [string, ReadonlyArray<number>]>>(true)
  expectType(pairs.mapValues((n) => String(n))).toBe<DStream.DStream<readonly [string, string]>>(true)

  const other = words.mapToPair((w) => [w, true])
  expectType(pairs.join(other)).toBe<DStream.DStream<readonly [string, readonly [number, boolean]]>>(true)
  expectType(pairs.leftOuterJoin(other)).toBe<
    DStream.DStream<readonly [string, readonly [number, Option.Option<boolean>]]>
  >(true)
  expectType(pairs.fullOuterJoin(other)).toBe<
    DStream.DStream<readonly [string, readonly [Option.Option<number>, Option.Option<boolean>]]>
  >(true)
  expectType(pairs.cogroup(other)).toBe<
    DStream.DStream<readonly [string, readonly [ReadonlyArray<number>, ReadonlyArray<boolean>]]>
  >(true)
  expectType(words.count()).toBe<DStream.DStream<number>>(true)
  expectType(words.union(ssc.queueStream<number>([]))).toBe<DStream.DStream<string | number>>(true)
  expectType(words.filter((w): w is "a" => w === "a")).toBe<DStream.DStream<"a">>(true)

  // Keyed operators do not compile on a stream of non-pairs. (Never called: type-level only.)
  const misuse = () => {
    // @ts-expect-error reduceByKey needs DStream<readonly [K, V]>
    words.reduceByKey((a: string, b: string) => a + b)
    // @ts-expect-error groupByKey needs DStream<readonly [K, V]>
    words.groupByKey()
    // @ts-expect-error join needs pairs on both sides
    words.join(pairs)
    // @ts-expect-error the reduce function must take the value type
    pairs.reduceByKey((a: string, b: string) => a + b)
    // @ts-expect-error join keys must have the same type
    pairs.join(keyed)
    // @ts-expect-error the pipeable form is restricted the same way
    words.pipe(DStream.groupByKey)
    // @ts-expect-error map's function must accept the element type
    words.map((n: number) => n + 1)
    // @ts-expect-error union's argument must be a DStream
    words.union([1, 2])
    // @ts-expect-error transform must return an array or an Effect of one
    words.transform(() => 1)
  }
  void misuse

  // Windowed operators (lib/Window.ts): keyed forms only on pairs; fluent and pipeable agree.
  type Counts = DStream.DStream<readonly [string, number]>
  expectType(words.window("30 seconds", "10 seconds")).toBe<DStream.DStream<string>>(true)
  expectType(pairs.window("30 seconds", "10 seconds").reduceByKey((a, b) => a + b)).toBe<Counts>(true)
  expectType(pairs.reduceByKeyAndWindow((a, b) => a + b, "30 seconds", "10 seconds")).toBe<Counts>(true)
  expectType(
    pairs.reduceByKeyAndWindow((a, b) => a + b, (a, b) => a - b, "10 minutes", "1 second", {
      filter: ([, n]) => n > 0,
    }),
  ).toBe<Counts>(true)
  expectType(pairs.groupByKeyAndWindow("2 seconds")).toBe<DStream.DStream<readonly [string, ReadonlyArray<number>]>>(
    true,
  )
  expectType(words.countByWindow("2 seconds")).toBe<DStream.DStream<number>>(true)
  expectType(words.countByValueAndWindow("2 seconds")).toBe<Counts>(true)
  expectType(words.reduceByWindow((a, b) => a + b, "2 seconds")).toBe<DStream.DStream<string>>(true)
  expectType(pairs.pipe(Window.reduceByKeyAndWindow((a: number, b: number) => a + b, (a, b) => a - b, "1 minute")))
    .toBe<Counts>(true)
  expectType(pairs.pipe(Window.groupByKeyAndWindow("2 seconds"))).toBe<
    DStream.DStream<readonly [string, ReadonlyArray<number>]>
  >(true)
  const windowMisuse = () => {
    // @ts-expect-error reduceByKeyAndWindow needs DStream<readonly [K, V]>
    words.reduceByKeyAndWindow((a: string, b: string) => a + b, "2 seconds")
    // @ts-expect-error groupByKeyAndWindow needs DStream<readonly [K, V]>
    words.groupByKeyAndWindow("2 seconds")
    // @ts-expect-error the inverse function must take the value type
    pairs.reduceByKeyAndWindow((a, b) => a + b, (a: string, b: string) => a + b, "2 seconds")
    // @ts-expect-error the filter receives the stream's [key, value] pairs
    pairs.reduceByKeyAndWindow((a, b) => a + b, (a, b) => a - b, "2 seconds", undefined, {
      filter: ([k]: readonly [number, number]) => k > 0,
    })
    // @ts-expect-error the pipeable form is restricted the same way
    words.pipe(Window.groupByKeyAndWindow("2 seconds"))
    // @ts-expect-error a window duration must be a duration
    words.window("ten minutes")
  }
  void windowMisuse

  // Effect-returning batch functions and outputs are accepted.
  words.transform((batch) => Effect.succeed(batch.length > 0 ? [batch.length] : []))
  counts.foreachBatch((batch, time) => Effect.log(`${time}: ${batch.length}`))
  counts.print()
  return counts
}

const buildStateful = (ssc: StreamingContext.StreamingContext) => {
  const pairs = ssc.queueStream<string>([["a"]]).mapToPair((w) => [w, 1])

  // updateStateByKey infers the state type from the update function (the seed program).
  const totals = pairs.updateStateByKey((values, state) =>
    Option.some(values.reduce((a, b) => a + b, Option.getOrElse(state, () => 0)))
  )
  expectType(totals).toBe<DStream.DStream<readonly [string, number]>>(true)
  const lengths = pairs.updateStateByKey((values, state: Option.Option<string>) =>
    Option.some(`${Option.getOrElse(state, () => "")}${values.length}`)
  )
  expectType(lengths).toBe<DStream.DStream<readonly [string, string]>>(true)
  const withTime = pairs.updateStateByKey({
    update: (time: number, key: string, values: ReadonlyArray<number>, state: Option.Option<number>) =>
      Option.some(time + key.length + values.length + Option.getOrElse(state, () => 0)),
  })
  expectType(withTime).toBe<DStream.DStream<readonly [string, number]>>(true)

  // mapWithState: the emitted type and the snapshot type come from the spec.
  const spec = StateSpec.function((key: string, value: Option.Option<number>, state: State.State<number>) => {
    const sum = Option.getOrElse(value, () => 0) + (state.exists() ? state.get() : 0)
    state.update(sum)
    return [key, sum] as const
  })
  const mapped = pairs.mapWithState(spec)
  expectType(mapped.stateSnapshots()).toBe<DStream.DStream<readonly [string, number]>>(true)
  const emitted: DStream.DStream<readonly [string, number]> = mapped
  // checkpoint(interval) keeps the stream's own type.
  expectType(totals.checkpoint("10 seconds")).toBe<DStream.DStream<readonly [string, number]>>(true)

  const misuse = () => {
    const words = ssc.queueStream<string>([])
    // @ts-expect-error updateStateByKey needs DStream<readonly [K, V]>
    words.updateStateByKey((_values: ReadonlyArray<string>, state: Option.Option<number>) => state)
    // @ts-expect-error mapWithState needs DStream<readonly [K, V]>
    words.mapWithState(spec)
    // @ts-expect-error the spec's value type must match the stream's values
    ssc.queueStream<readonly [string, string]>([]).mapWithState(spec)
    // @ts-expect-error the spec's key type must match the stream's keys
    ssc.queueStream<readonly [number, number]>([]).mapWithState(spec)
    // @ts-expect-error the update function must return an Option of the state
    pairs.updateStateByKey((values: ReadonlyArray<number>, _state: Option.Option<number>) => values.length)
  }
  void misuse
  return emitted
}

describe("type-level API", () => {
  it("well-typed pipelines build", async () => {
    const ssc = await Effect.runPromise(StreamingContext.make({ batchInterval: "1 second" }))
    assert.ok(DStream.isDStream(build(ssc)))
    assert.ok(DStream.isDStream(buildStateful(ssc)))
    await Effect.runPromise(ssc.stop())
  })
})
