/**
 * Deterministic pipeline tests, the way Spark's `TestSuiteBase` drives them — and more: input
 * batches are fed one per batch time, the batch clock is advanced with Effect's `TestClock`,
 * and every output batch is collected with its time as a deep copy (a later mutation of state
 * never shows in an earlier batch).
 *
 * - {@link runOperation} / {@link testOperation}: one input, one operation (Spark's
 *   `testOperation`).
 * - {@link run}: any pipeline; collect one stream, or several named ones — then outputs are
 *   kept up to a failure and the failure is returned as a value with its batch time.
 * - {@link harness} and {@link timeline}: start at any clock, advance by any duration, run
 *   effects between ticks (enqueue, write a file), look at outputs between start and the first
 *   tick.
 * - {@link recover}: run, stop, recover from the same in-memory checkpoint store with a new
 *   program built by the same code, continue.
 * - {@link inspect}: a stream's remember duration, checkpoint interval and held batch times.
 * - {@link randomSplits} / {@link checkSplitInvariance}: the same records cut into batches in
 *   different ways must give the same batch-independent result.
 *
 * @example
 * ```ts
 * import { Testing } from "effect-dstream/testing"
 *
 * const out = yield* Testing.runOperation(
 *   [["a", "b"], ["a"]],
 *   (s) => s.mapToPair((w) => [w, 1]).reduceByKey((a, b) => a + b),
 * )
 * // [[["a", 1], ["b", 1]], [["a", 1]]]
 * ```
 *
 * @module
 */
import { isDeepStrictEqual } from "node:util"
import { Clock, Data, type Duration, Effect, Exit, Option } from "effect"
import { TestClock } from "effect/testing"
import * as BatchClock from "./BatchClock.ts"
import * as Checkpoint from "./Checkpoint.ts"
import * as DStream from "./DStream.ts"
import { BatchJobError, type UnprocessedRecordsError } from "./Errors.ts"
import * as StreamingContext from "./StreamingContext.ts"
import * as Time from "./Time.ts"
import { type Batch, InputNode, type NodeContext } from "./_internal/node.ts"
import type { TaggedErrorClass } from "./_internal/taggedError.ts"

/**
 * Spark's `TestInputStream`: the batch at the k-th batch time is `batches[k - 1]`; a `null`
 * entry means no batch at that time; past the end, batches are empty.
 * @internal
 */
class TestInputNode<A> extends InputNode<A> {
  readonly kind = "TestInputStream"
  readonly name = "test input"
  constructor(ctx: NodeContext, readonly batches: ReadonlyArray<ReadonlyArray<A> | null>) {
    super(ctx)
  }
  compute(t: number): Effect.Effect<Batch<A> | undefined> {
    return Effect.sync(() => {
      const index = (t - this.zeroTime!) / this.slideMillis - 1
      const batch = index < this.batches.length ? this.batches[index] : []
      if (batch === null) return undefined
      this.record(t, batch.length)
      return batch
    })
  }
}

/**
 * A test input stream over the given batches (Spark's `TestInputStream`); `null` entries give
 * no batch at that time.
 *
 * @example
 * ```ts
 * const nums = Testing.input(ssc, [[1, 2], [3], null, [4]])
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const input = <A>(
  ssc: StreamingContext.StreamingContext,
  batches: ReadonlyArray<ReadonlyArray<A> | null>,
): DStream.DStream<A> => DStream.fromNode(new TestInputNode<A>(ssc as unknown as NodeContext, batches))

// ---- copies ------------------------------------------------------------------------------------

/**
 * A deep copy of `value` that keeps prototypes (so `Option`s, `Data` classes and tuples stay
 * what they were): arrays, plain and class objects, `Map`, `Set`, `Date` and typed arrays are
 * copied; functions and primitives are shared. Collected batches are copied with it, so a
 * pipeline that mutates its state in place (`s.push(...vs); return s`) shows each batch as it
 * was.
 *
 * @example
 * ```ts
 * const state = [1]
 * const copy = Testing.snapshot(state)
 * state.push(2) // copy is still [1]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const snapshot = <A>(value: A): A => copyValue(value, new Map()) as A

const copyValue = (u: unknown, seen: Map<object, unknown>): unknown => {
  if (typeof u !== "object" || u === null) return u
  const done = seen.get(u)
  if (done !== undefined) return done
  if (Array.isArray(u)) {
    const out: Array<unknown> = new Array(u.length)
    seen.set(u, out)
    for (let i = 0; i < u.length; i++) out[i] = copyValue(u[i], seen)
    return Object.isFrozen(u) ? Object.freeze(out) : out
  }
  if (u instanceof Map) {
    const out = new Map()
    seen.set(u, out)
    for (const [k, v] of u) out.set(copyValue(k, seen), copyValue(v, seen))
    return out
  }
  if (u instanceof Set) {
    const out = new Set()
    seen.set(u, out)
    for (const v of u) out.add(copyValue(v, seen))
    return out
  }
  if (u instanceof Date) return new Date(u.getTime())
  if (ArrayBuffer.isView(u)) return u instanceof DataView ? new DataView(u.buffer.slice(0)) : (u as Uint8Array).slice()
  const out = Object.create(Object.getPrototypeOf(u)) as object
  seen.set(u, out)
  for (const key of Reflect.ownKeys(u)) {
    const d = Object.getOwnPropertyDescriptor(u, key)!
    if ("value" in d) d.value = copyValue(d.value, seen)
    Object.defineProperty(out, key, d)
  }
  return Object.isFrozen(u) ? Object.freeze(out) : out
}

// ---- running -------------------------------------------------------------------------------------

/**
 * One collected output batch: its batch time and a deep copy of its elements.
 *
 * @since 0.1.0
 * @category testing
 */
export interface Collected<A> {
  /** The batch time. */
  readonly time: number
  /** A deep copy of the batch's elements. */
  readonly batch: ReadonlyArray<A>
}

/**
 * Named streams to collect.
 *
 * @since 0.1.0
 * @category testing
 */
export type Streams = { readonly [name: string]: DStream.DStream<any> }

/**
 * The collected batches of each named stream.
 *
 * @since 0.1.0
 * @category testing
 */
export type Outputs<O extends Streams> = {
  readonly [K in keyof O]: O[K] extends DStream.DStream<infer A> ? ReadonlyArray<Collected<A>> : never
}

/**
 * What a run of several named streams gives: every batch collected up to the end or to the
 * failure that stopped the context, and that failure (with its batch time) as a value.
 *
 * @since 0.1.0
 * @category testing
 */
export interface RunResult<O extends Streams> {
  /** Every named stream's collected batches. */
  readonly outputs: Outputs<O>
  /** The batch failure that stopped the context, if one did. */
  readonly failure: BatchJobError | undefined
}

/**
 * Why a test run could not start.
 *
 * @since 0.1.0
 * @category testing
 */
export type StartError = StreamingContext.StartError | Checkpoint.CheckpointMissingError

/**
 * Options of {@link run}, {@link harness} and {@link recover}.
 *
 * @since 0.1.0
 * @category testing
 */
export interface RunOptions {
  /** Batch interval; default `"1 second"`. */
  readonly batchInterval?: Duration.Input | undefined
  /** How many batch times to advance ({@link run}). */
  readonly numBatches: number
  /**
   * A checkpoint directory name (stateful operators need one). Checkpoints go to `store`, or
   * to the environment's `CheckpointStore`, else to a fresh in-memory store — never to the
   * file system unless a file-system store is what you pass.
   */
  readonly checkpoint?: string | undefined
  /** The checkpoint store (see `checkpoint`). */
  readonly store?: Checkpoint.CheckpointStoreShape | undefined
  /** The clock's time when the context starts, in epoch milliseconds; default 0. */
  readonly startTime?: number | undefined
  /** Other options of the context (failure policy, receivers, …). */
  readonly context?: Omit<StreamingContext.Options, "batchInterval"> | undefined
}

/**
 * Options of {@link harness}, {@link timeline} and {@link recover}: those of {@link run} without
 * `numBatches`.
 *
 * @since 0.1.0
 * @category testing
 */
export type HarnessOptions = Omit<RunOptions, "numBatches">

/**
 * A started pipeline under `TestClock`, driven by hand (see {@link harness}).
 *
 * @since 0.1.0
 * @category testing
 */
export interface Harness<O extends Streams> {
  /** The context under test. */
  readonly ssc: StreamingContext.StreamingContext
  /** The streams the build function returned. */
  readonly streams: O
  /** The first batch time (the next multiple of the batch interval after the start time). */
  readonly firstBatchTime: number
  /** The batch interval in milliseconds. */
  readonly batchMillis: number
  /** The test clock's time. */
  readonly now: Effect.Effect<number>
  /** Runs `effect` when the clock reaches `time`, before the batch of `time` is cut. */
  readonly at: (time: number, effect: Effect.Effect<unknown, unknown>) => Harness<O>
  /**
   * Moves the clock to `time`: every batch due on the way is cut and awaited in order, and the
   * hooks of {@link Harness.at} run at their times. Stops early when a batch failure stops the
   * context.
   */
  readonly advanceTo: (time: number) => Effect.Effect<void>
  /** {@link Harness.advanceTo} `now + duration`. */
  readonly advance: (duration: Duration.Input) => Effect.Effect<void>
  /** Advances until `n` more batch times have run. */
  readonly advanceBatches: (n: number) => Effect.Effect<void>
  /** What was collected so far (copies). */
  readonly outputs: Effect.Effect<Outputs<O>>
  /** The failure that stopped the context, if any. */
  readonly failure: Effect.Effect<BatchJobError | undefined>
  /**
   * Stops the context and returns everything collected; a graceful stop that leaves records
   * unprocessed fails with the context's `UnprocessedRecordsError`.
   */
  readonly stop: {
    (): Effect.Effect<RunResult<O>>
    (options: StreamingContext.StopOptions): Effect.Effect<RunResult<O>, UnprocessedRecordsError>
  }
}

type Build<O> = (ssc: StreamingContext.StreamingContext) => O | Effect.Effect<O>

/** Runs `effect` under a `TestClock`: the caller's if it has one, else a fresh one. */
const withTestClock = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiber((fiber) => {
    const clock = fiber.getRef(Clock.Clock) as Partial<TestClock.TestClock>
    return typeof clock.adjust === "function" ? effect : Effect.provide(effect, TestClock.layer())
  })

/** The store a test context checkpoints into: the given one, the environment's, or a fresh memory one. */
const resolveStore = (store: Checkpoint.CheckpointStoreShape | undefined) =>
  store !== undefined ? Effect.succeed(store) : Effect.flatMap(
    Effect.serviceOption(Checkpoint.CheckpointStore),
    (s) => Option.isSome(s) ? Effect.succeed(s.value) : Checkpoint.makeMemory("test checkpoint store"),
  )

/**
 * Builds a context (or recovers one with `getOrCreate` when `recover` is set), starts it at
 * `startTime` and returns its harness. Must run under a TestClock.
 */
const startHarness = <O extends Streams>(
  build: Build<O>,
  options: HarnessOptions,
  store: Checkpoint.CheckpointStoreShape,
  recover: boolean,
): Effect.Effect<Harness<O>, StartError> =>
  Effect.gen(function* () {
    const batchInterval = options.batchInterval ?? "1 second"
    const batchMillis = Time.millis(batchInterval, "Batch interval")
    if (options.startTime !== undefined && (yield* Clock.currentTimeMillis) < options.startTime) {
      yield* TestClock.setTime(options.startTime)
    }
    let streams: O | undefined
    const made = (ssc: StreamingContext.StreamingContext) => {
      const built = build(ssc)
      return Effect.map(Effect.isEffect(built) ? built : Effect.succeed(built), (o) => void (streams = o))
    }
    const withStore = Effect.provideService(Checkpoint.CheckpointStore, store)
    let ssc: StreamingContext.StreamingContext
    if (recover) {
      if (options.checkpoint === undefined) {
        return yield* Effect.die(new Error("Testing.recover needs a checkpoint directory name"))
      }
      ssc = yield* withStore(
        StreamingContext.getOrCreate(options.checkpoint, made, { ...options.context, batchInterval }),
      )
    } else {
      ssc = yield* StreamingContext.make({ ...options.context, batchInterval })
      if (options.checkpoint !== undefined) ssc.checkpoint(options.checkpoint)
      yield* made(ssc)
    }
    const named = streams!
    const collected: Record<string, Array<Collected<unknown>>> = {}
    for (const [name, stream] of Object.entries(named)) {
      const into: Array<Collected<unknown>> = []
      collected[name] = into
      stream.foreachBatch((batch, time) => {
        into.push({ time, batch: snapshot(batch) })
      })
    }
    yield* withStore(ssc.start)
    const now = yield* Clock.currentTimeMillis
    const firstBatchTime = BatchClock.firstBatchTime(now, Time.millis(ssc.batchInterval))
    const hooks: Array<{ readonly time: number; readonly effect: Effect.Effect<unknown, unknown> }> = []
    let nextBatch = firstBatchTime
    let failure: BatchJobError | undefined
    const stopped = Effect.gen(function* () {
      if ((yield* ssc.state) !== "STOPPED") return false
      const exit = yield* Effect.exit(ssc.awaitTermination)
      if (Exit.isFailure(exit) && failure === undefined) {
        const error = exit.cause.reasons.find((r) => r._tag === "Fail")
        if (error !== undefined && error._tag === "Fail" && error.error instanceof BatchJobError) failure = error.error
      }
      return true
    })
    const runHooks = (upTo: number) =>
      Effect.gen(function* () {
        while (hooks.length > 0 && hooks[0].time <= upTo) {
          const hook = hooks.shift()!
          const now = yield* Clock.currentTimeMillis
          if (hook.time - 1 > now) yield* TestClock.adjust(hook.time - 1 - now)
          yield* Effect.orDie(hook.effect)
        }
      })
    const advanceTo = (target: number): Effect.Effect<void> =>
      Effect.gen(function* () {
        while (true) {
          if (yield* stopped) return
          const nextHook = hooks.length > 0 ? hooks[0].time : Infinity
          if (nextHook <= target && nextHook <= nextBatch) {
            yield* runHooks(nextHook)
            continue
          }
          if (nextBatch > target) break
          const now = yield* Clock.currentTimeMillis
          if (nextBatch > now) yield* TestClock.adjust(nextBatch - now)
          yield* ssc.awaitBatch(nextBatch)
          nextBatch += batchMillis
        }
        const now = yield* Clock.currentTimeMillis
        if (target > now) yield* TestClock.adjust(target - now)
      })
    const outputs = Effect.sync(() => {
      const out: Record<string, ReadonlyArray<Collected<unknown>>> = {}
      for (const [name, batches] of Object.entries(collected)) out[name] = batches.slice()
      return out as Outputs<O>
    })
    const stop = (options?: StreamingContext.StopOptions) =>
      Effect.gen(function* () {
        yield* stopped
        if (options === undefined) yield* ssc.stop()
        else yield* ssc.stop(options)
        yield* stopped
        return { outputs: yield* outputs, failure }
      })
    const harness: Harness<O> = {
      ssc,
      streams: named,
      firstBatchTime,
      batchMillis,
      now: Clock.currentTimeMillis,
      at: (time, effect) => {
        let i = hooks.length
        while (i > 0 && hooks[i - 1].time > time) i--
        hooks.splice(i, 0, { time, effect })
        return harness
      },
      advanceTo,
      advance: (duration) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => advanceTo(now + Time.millis(duration, "Duration"))),
      advanceBatches: (n) => Effect.suspend(() => advanceTo(nextBatch + (n - 1) * batchMillis)),
      outputs,
      failure: Effect.andThen(stopped, Effect.sync(() => failure)),
      stop: stop as Harness<O>["stop"],
    }
    return harness
  })

/**
 * Builds a pipeline whose streams `build` returns by name, starts it under `TestClock` (the
 * caller's, or a fresh one) at `startTime`, and hands the {@link Harness} to `body`; the
 * context is stopped afterwards. Between start and the first tick nothing has run yet, which
 * `body` may check.
 *
 * @example
 * ```ts
 * const queue: Array<ReadonlyArray<number>> = []
 * const out = yield* Testing.harness(
 *   (ssc) => ({ doubled: ssc.queueStream(queue).map((n) => n * 2) }),
 *   { startTime: 12_000 },
 *   (h) => Effect.gen(function* () {
 *     queue.push([1, 2])
 *     yield* h.advance("1 second")
 *     return yield* h.outputs
 *   }),
 * )
 * // out.doubled: [{ time: 13000, batch: [2, 4] }]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const harness = <O extends Streams, A, E>(
  build: Build<O>,
  options: HarnessOptions,
  body: (h: Harness<O>) => Effect.Effect<A, E>,
): Effect.Effect<A, E | StartError> =>
  withTestClock(
    Effect.gen(function* () {
      const store = yield* resolveStore(options.store)
      const h = yield* startHarness(build, options, store, false)
      return yield* body(h).pipe(Effect.ensuring(h.ssc.stop()))
    }),
  )

/**
 * A scripted timeline: effects at given clock times (`at`), then a run until a time. The
 * declarative form of {@link harness}.
 *
 * @since 0.1.0
 * @category testing
 */
export interface Timeline<O extends Streams> {
  /** Runs `effect` when the clock reaches `time`, before the batch of `time` is cut. */
  readonly at: (time: number, effect: Effect.Effect<unknown, unknown>) => Timeline<O>
  /** Starts the pipeline, runs the timeline until the clock reaches `until`, stops, returns what was collected. */
  readonly run: (until: number) => Effect.Effect<RunResult<O>, StartError>
}

/**
 * A scripted timeline over a pipeline: `at(t, effect)` runs `effect` when the clock reaches
 * `t` (before the batch of `t`), `run(until)` starts the context at `startTime`, plays the
 * timeline and returns every collected batch (and a failure, if one stopped the context).
 *
 * @example
 * ```ts
 * const queue: Array<ReadonlyArray<string>> = []
 * const result = yield* Testing.timeline((ssc) => ({ words: ssc.queueStream(queue) }), { startTime: 12_000 })
 *   .at(12_500, Effect.sync(() => queue.push(["a"])))
 *   .at(14_000, Effect.sync(() => queue.push(["b"])))
 *   .run(15_000)
 * // result.outputs.words: [{ time: 13000, batch: ["a"] }, { time: 14000, batch: ["b"] }, { time: 15000, batch: [] }]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const timeline = <O extends Streams>(build: Build<O>, options: HarnessOptions = {}): Timeline<O> => {
  const make = (hooks: ReadonlyArray<readonly [number, Effect.Effect<unknown, unknown>]>): Timeline<O> => ({
    at: (time, effect) => make([...hooks, [time, effect]]),
    run: (until) =>
      harness(build, options, (h) =>
        Effect.gen(function* () {
          for (const [time, effect] of hooks) h.at(time, effect)
          yield* h.advanceTo(until)
          return yield* h.stop()
        })),
  })
  return make([])
}

/**
 * Builds a pipeline on a fresh context, starts it under `TestClock`, advances `numBatches`
 * batch intervals one at a time (waiting for each batch to complete), stops the context and
 * returns what was collected, each batch a deep copy (see {@link snapshot}).
 *
 * - When `build` returns one stream: its output batches; a failed batch fails the run with its
 *   `BatchJobError`.
 * - When `build` returns named streams (`{ outputs, state }`): a {@link RunResult} with every
 *   stream's batches and times, kept up to a failure, and that failure as a value.
 *
 * @example
 * ```ts
 * const out = yield* Testing.run((ssc) => Testing.input(ssc, [[1], [2]]).count(), { numBatches: 3 })
 * // [[1], [1], [0]]
 *
 * const { outputs, failure } = yield* Testing.run((ssc) => {
 *   const counts = Testing.input(ssc, [["a"], ["a"]]).map((w) => [w, 1] as const)
 *     .mapWithState(State.StateSpec.function((_k, v: Option.Option<number>, s) => { … }))
 *   return { counts, state: counts.stateSnapshots() }
 * }, { numBatches: 2, checkpoint: "ckpt" })
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const run: {
  <B>(
    build: (ssc: StreamingContext.StreamingContext) => DStream.DStream<B> | Effect.Effect<DStream.DStream<B>>,
    options: RunOptions,
  ): Effect.Effect<Array<ReadonlyArray<B>>, BatchJobError | StartError>
  <O extends Streams>(
    build: (ssc: StreamingContext.StreamingContext) => O | Effect.Effect<O>,
    options: RunOptions,
  ): Effect.Effect<RunResult<O>, StartError>
} = ((build: Build<unknown>, options: RunOptions): Effect.Effect<unknown, BatchJobError | StartError> => {
  let single = false
  const named: Build<Streams> = (ssc) => {
    const built = build(ssc)
    const wrap = (b: unknown): Streams => {
      if (DStream.isDStream(b)) {
        single = true
        return { output: b }
      }
      return b as Streams
    }
    return Effect.isEffect(built) ? Effect.map(built as Effect.Effect<unknown>, wrap) : wrap(built)
  }
  return Effect.flatMap(collectRun(named, options), (result): Effect.Effect<unknown, BatchJobError> => {
    if (!single) return Effect.succeed(result)
    if (result.failure !== undefined) return Effect.fail(result.failure)
    return Effect.succeed(result.outputs.output.map((c) => c.batch))
  })
}) as never

const collectRun = <O extends Streams>(build: Build<O>, options: RunOptions) =>
  harness(build, options, (h) => Effect.andThen(h.advanceBatches(options.numBatches), h.stop()))

/**
 * Like {@link run} with one stream, returning every output batch with its time.
 *
 * @example
 * ```ts
 * const out = yield* Testing.runWithTimes((ssc) => Testing.input(ssc, [[1], [2]]).map((n) => n * 10), { numBatches: 2 })
 * // [[1000, [10]], [2000, [20]]]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const runWithTimes = <B>(
  build: (ssc: StreamingContext.StreamingContext) => DStream.DStream<B> | Effect.Effect<DStream.DStream<B>>,
  options: RunOptions,
): Effect.Effect<Array<readonly [number, ReadonlyArray<B>]>, BatchJobError | StartError> =>
  Effect.flatMap(
    collectRun((ssc) => {
      const built = build(ssc)
      return Effect.isEffect(built) ? Effect.map(built, (output) => ({ output })) : { output: built }
    }, options),
    (result) =>
      result.failure !== undefined
        ? Effect.fail(result.failure)
        : Effect.succeed(result.outputs.output.map((c) => [c.time, c.batch] as const)),
  )

/**
 * Spark's `testOperation(input, operation, expectedOutput)` without the assertion: one input
 * stream, one operation; runs as many batches as there are inputs unless `numBatches` says
 * otherwise (see {@link testOperation}, which runs as many as there are expected outputs).
 *
 * @example
 * ```ts
 * const out = yield* Testing.runOperation([[1, 2], [3]], (s) => s.map((n) => n + 1))
 * // [[2, 3], [4]]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const runOperation = <A, B>(
  batches: ReadonlyArray<ReadonlyArray<A> | null>,
  operation: (input: DStream.DStream<A>) => DStream.DStream<B>,
  options?: Partial<RunOptions>,
): Effect.Effect<Array<ReadonlyArray<B>>, BatchJobError | StartError> =>
  run((ssc) => operation(input(ssc, batches)), { numBatches: batches.length, ...options })

/**
 * Spark's two-input `testOperation`: two input streams combined by one operation.
 *
 * @example
 * ```ts
 * const out = yield* Testing.runOperation2([[["a", 1]]], [[["a", "x"]]], (l, r) => l.join(r))
 * // [[["a", [1, "x"]]]]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const runOperation2 = <A, B, C>(
  batches1: ReadonlyArray<ReadonlyArray<A> | null>,
  batches2: ReadonlyArray<ReadonlyArray<B> | null>,
  operation: (a: DStream.DStream<A>, b: DStream.DStream<B>) => DStream.DStream<C>,
  options?: Partial<RunOptions>,
): Effect.Effect<Array<ReadonlyArray<C>>, BatchJobError | StartError> =>
  run((ssc) => operation(input(ssc, batches1), input(ssc, batches2)), {
    numBatches: Math.max(batches1.length, batches2.length),
    ...options,
  })

/** @internal */
export const OutputMismatchErrorBase: TaggedErrorClass<"OutputMismatchError", {
  readonly message: string
  readonly index: number
  readonly expected: unknown
  readonly actual: unknown
}> = Data.TaggedError("OutputMismatchError")

/**
 * Output batches differ from the expected ones: the first batch (index, time) that differs,
 * with both sides.
 *
 * @since 0.1.0
 * @category testing
 */
export class OutputMismatchError extends OutputMismatchErrorBase {}

/**
 * Spark's `testOperation(input, operation, expectedOutput, useSet)`: runs as many batches as
 * there are expected outputs (so windows need no `numBatches`), then compares batch by batch —
 * in order, or as multisets with `useSet` (keyed results whose order is not part of the
 * contract). Fails with an {@link OutputMismatchError} naming the first batch that differs.
 *
 * @example
 * ```ts
 * yield* Testing.testOperation(
 *   [["a", "b"], ["a"]],
 *   (s) => s.mapToPair((w) => [w, 1]).reduceByKey((a, b) => a + b),
 *   [[["b", 1], ["a", 1]], [["a", 1]]],
 *   { useSet: true },
 * )
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const testOperation = <A, B>(
  batches: ReadonlyArray<ReadonlyArray<A> | null>,
  operation: (input: DStream.DStream<A>) => DStream.DStream<B>,
  expected: ReadonlyArray<ReadonlyArray<B>>,
  options?: Partial<RunOptions> & { readonly useSet?: boolean | undefined },
): Effect.Effect<void, OutputMismatchError | BatchJobError | StartError> =>
  Effect.flatMap(
    runOperation(batches, operation, { numBatches: expected.length, ...options }),
    (actual) => verifyOutput(actual, expected, options?.useSet ?? false),
  )

const verifyOutput = <B>(
  actual: ReadonlyArray<ReadonlyArray<B>>,
  expected: ReadonlyArray<ReadonlyArray<B>>,
  useSet: boolean,
): Effect.Effect<void, OutputMismatchError> => {
  if (actual.length !== expected.length) {
    return Effect.fail(
      new OutputMismatchError({
        message: `Expected ${expected.length} output batches, got ${actual.length}`,
        index: Math.min(actual.length, expected.length),
        expected,
        actual,
      }),
    )
  }
  for (let i = 0; i < expected.length; i++) {
    const same = useSet ? sameElements(actual[i], expected[i]) : isDeepStrictEqual(actual[i], expected[i])
    if (!same) {
      return Effect.fail(
        new OutputMismatchError({
          message: `Output batch ${i} differs${useSet ? " (compared as sets)" : ""}: expected ${
            show(expected[i])
          }, got ${show(actual[i])}`,
          index: i,
          expected: expected[i],
          actual: actual[i],
        }),
      )
    }
  }
  return Effect.void
}

const show = (u: unknown): string => {
  try {
    return JSON.stringify(unwrapOptions(u))
  } catch {
    return String(u)
  }
}

// ---- comparison helpers --------------------------------------------------------------------------

/**
 * `true` when both collections hold the same elements the same number of times, in any order
 * (elements compared deeply). For keyed results whose order is not part of the contract.
 *
 * @example
 * ```ts
 * Testing.sameElements([["b", 1], ["a", 2]], [["a", 2], ["b", 1]]) // true
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const sameElements = <A>(actual: Iterable<A>, expected: Iterable<A>): boolean => {
  const left = [...actual]
  const right = [...expected]
  if (left.length !== right.length) return false
  const used = new Array<boolean>(right.length).fill(false)
  outer: for (const a of left) {
    for (let j = 0; j < right.length; j++) {
      if (!used[j] && isDeepStrictEqual(a, right[j])) {
        used[j] = true
        continue outer
      }
    }
    return false
  }
  return true
}

/**
 * Replaces every `Option` inside `value` (join sides, mapWithState results) by its value, or
 * `null` for `None`, so results compare against plain literals.
 *
 * @example
 * ```ts
 * Testing.unwrapOptions([["a", [1, Option.none()]]]) // [["a", [1, null]]]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const unwrapOptions = (value: unknown): any => {
  if (Option.isOption(value)) return Option.isSome(value) ? unwrapOptions(value.value) : null
  if (Array.isArray(value)) return value.map(unwrapOptions)
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [unwrapOptions(k), unwrapOptions(v)]))
  if (typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = unwrapOptions(v)
    return out
  }
  return value
}

/**
 * The failure of a run (see {@link run} with named streams) as a plain summary: batch time,
 * output id and the cause's message, or `undefined` when no batch failed.
 *
 * @example
 * ```ts
 * const { failure } = yield* Testing.run((ssc) => ({ out: … }), { numBatches: 3 })
 * Testing.describeFailure(failure) // { time: 2000, outputId: 0, message: "boom" }
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const describeFailure = (
  failure: BatchJobError | undefined,
): { readonly time: number; readonly outputId: number; readonly message: string } | undefined => {
  if (failure === undefined) return undefined
  const cause = failure.cause
  const message = cause instanceof Error ? cause.message : typeof cause === "string" ? cause : String(cause)
  return { time: failure.batchTime, outputId: failure.outputId, message }
}

// ---- recovery ------------------------------------------------------------------------------------

/**
 * What {@link recover} returns: the run before the stop and the recovered run after it.
 *
 * @since 0.1.0
 * @category testing
 */
export interface Recovery<O extends Streams> {
  /** The run before the stop. */
  readonly before: RunResult<O>
  /** The recovered run. */
  readonly after: RunResult<O>
}

/**
 * Spark's checkpoint tests as one call: builds the pipeline with `getOrCreate` on a fresh
 * in-memory checkpoint store (or `options.store`), runs `before`, stops the context (a crash
 * loses nothing that a stop would keep: checkpoints are written after batches, never at stop),
 * then builds the pipeline again with `getOrCreate` from the same store — the recovered context
 * restores its state and re-runs the batches after the last checkpoint — and runs `after` on
 * it. The clock goes on from where the first run left it (move it in `after` to model downtime).
 * The store comes from here only: without `options.checkpoint` it fails.
 *
 * @example
 * ```ts
 * const { before, after } = yield* Testing.recover(
 *   (ssc) => ({ counts: Testing.input(ssc, [["a"], ["a"], ["a"]]).mapToPair((w) => [w, 1]).updateStateByKey(sum) }),
 *   { checkpoint: "ckpt" },
 *   (h) => h.advanceBatches(2),
 *   (h) => h.advanceBatches(2),
 * )
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const recover = <O extends Streams, E1, E2>(
  build: Build<O>,
  options: HarnessOptions & { readonly checkpoint: string },
  before: (h: Harness<O>) => Effect.Effect<unknown, E1>,
  after: (h: Harness<O>) => Effect.Effect<unknown, E2>,
): Effect.Effect<Recovery<O>, E1 | E2 | StartError> =>
  withTestClock(
    Effect.gen(function* () {
      const store = options.store ?? (yield* Checkpoint.makeMemory("test checkpoint store"))
      const first = yield* startHarness(build, options, store, true)
      yield* before(first).pipe(Effect.onError(() => first.ssc.stop()))
      const beforeResult = yield* first.stop()
      const second = yield* startHarness(build, { ...options, startTime: undefined }, store, true)
      yield* after(second).pipe(Effect.onError(() => second.ssc.stop()))
      const afterResult = yield* second.stop()
      return { before: beforeResult, after: afterResult }
    }),
  )

// ---- inspection ----------------------------------------------------------------------------------

/**
 * What a stream's graph node holds, for tests: Spark's `rememberDuration`,
 * `checkpointDuration`, `slideDuration`, `zeroTime` and `generatedRDDs.keys`.
 *
 * @since 0.1.0
 * @category testing
 */
export interface NodeInfo {
  /** The operator, as Spark names its DStream class (`WindowedDStream`, `StateDStream`, …). */
  readonly kind: string
  /** The slide (batch interval for most streams). */
  readonly slideMillis: number
  /** How long the node keeps its batches (`undefined` before start). */
  readonly rememberMillis: number | undefined
  /** Its checkpoint interval (stateful nodes), `undefined` otherwise or before start. */
  readonly checkpointMillis: number | undefined
  /** The zero time (`undefined` before start). */
  readonly zeroTime: number | undefined
  /** The batch times whose results the node holds now, oldest first. */
  readonly heldBatchTimes: ReadonlyArray<number>
}

/**
 * Inspects the graph node behind `stream`.
 *
 * @example
 * ```ts
 * const w = Testing.input(ssc, [[1]]).window("3 seconds", "1 second")
 * // after start:
 * Testing.inspect(w).rememberMillis // 1000 — its parent remembers 3 s
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const inspect = (stream: DStream.DStream<unknown>): NodeInfo => {
  const node = stream.node
  return {
    kind: node.kind,
    slideMillis: node.slideMillis,
    rememberMillis: node.rememberMillis,
    checkpointMillis: node.checkpointMillis,
    zeroTime: node.zeroTime,
    heldBatchTimes: [...node.generated.keys()].sort((a, b) => a - b),
  }
}

// ---- property-style helpers ----------------------------------------------------------------------

/** mulberry32: a small, fast, seedable PRNG. */
const prng = (seed: number): () => number => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Cuts `records` into consecutive batches at random boundaries chosen from `seed` (the same
 * seed gives the same cut; empty batches happen): the records in order, concatenated, are
 * `records` again.
 *
 * @example
 * ```ts
 * Testing.randomSplits([1, 2, 3, 4, 5], 42) // e.g. [[1], [], [2, 3, 4], [5]]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const randomSplits = <A>(
  records: ReadonlyArray<A>,
  seed: number,
  options?: { readonly maxBatchSize?: number | undefined },
): Array<Array<A>> => {
  const random = prng(seed)
  const max = options?.maxBatchSize ?? Math.max(1, Math.ceil(records.length / 4))
  const out: Array<Array<A>> = []
  let i = 0
  while (i < records.length) {
    const n = Math.floor(random() * (max + 1)) // 0 … max: empty batches too
    out.push(records.slice(i, i + n))
    i += n
  }
  if (out.length === 0) out.push([])
  return out
}

/** @internal */
export const SplitDependenceErrorBase: TaggedErrorClass<"SplitDependenceError", {
  readonly message: string
  readonly seed: number
  readonly batches: ReadonlyArray<ReadonlyArray<unknown>>
  readonly expected: unknown
  readonly actual: unknown
}> = Data.TaggedError("SplitDependenceError")

/**
 * The same records cut into batches two ways gave different results.
 *
 * @since 0.1.0
 * @category testing
 */
export class SplitDependenceError extends SplitDependenceErrorBase {}

/**
 * Checks that a pipeline does not depend on arrival timing: runs it over `records` cut into
 * batches in one batch per record and in several random ways (one per seed), reduces each
 * run's output batches with `result` (e.g. the final state, or the multiset of all counts),
 * and fails with a {@link SplitDependenceError} naming the seed and the cut when a result
 * differs from the first. Extra batches are run after the input so windows and timeouts drain
 * (`drainBatches`, default 0).
 *
 * @example
 * ```ts
 * yield* Testing.checkSplitInvariance(
 *   words,
 *   (s) => s.mapToPair((w) => [w, 1]).updateStateByKey(sum),
 *   (batches) => new Map(batches.at(-1)),
 *   { seeds: [1, 2, 3], checkpoint: "ckpt" },
 * )
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const checkSplitInvariance = <A, B, R>(
  records: ReadonlyArray<A>,
  operation: (input: DStream.DStream<A>) => DStream.DStream<B>,
  result: (batches: ReadonlyArray<ReadonlyArray<B>>) => R,
  options?: Partial<Omit<RunOptions, "numBatches">> & {
    readonly seeds?: ReadonlyArray<number> | undefined
    readonly drainBatches?: number | undefined
  },
): Effect.Effect<ReadonlyArray<R>, SplitDependenceError | BatchJobError | StartError> =>
  Effect.gen(function* () {
    const cuts: Array<readonly [number, ReadonlyArray<ReadonlyArray<A>>]> = [[-1, records.map((r) => [r])]]
    for (const seed of options?.seeds ?? [1, 2, 3, 4, 5]) cuts.push([seed, randomSplits(records, seed)])
    const results: Array<R> = []
    for (const [seed, batches] of cuts) {
      const out = yield* runOperation(batches, operation, {
        ...options,
        numBatches: batches.length + (options?.drainBatches ?? 0),
      })
      const r = result(out)
      if (results.length > 0 && !isDeepStrictEqual(r, results[0])) {
        return yield* new SplitDependenceError({
          message:
            `The result depends on how records are cut into batches: seed ${seed} (${batches.length} batches) gave ${
              show(r)
            }, one record per batch gave ${show(results[0])}`,
          seed,
          batches,
          expected: results[0],
          actual: r,
        })
      }
      results.push(r)
    }
    return results
  })
