/**
 * The DStream model shared by the operator modules: the `DStream` interface and the types its
 * methods mention (output, window and event-time models), `TypeId`, `isDStream` and `fromNode`.
 * It imports none of the operator modules: `lib/DStream.ts`, `lib/Window.ts` and
 * `lib/EventTime.ts` import it (and re-export its public types), and `lib/DStream.ts` installs
 * the class whose fluent methods call their operators, so no two modules import each other.
 *
 * @module
 */
import type { Duration, Effect, Option, Stream } from "effect"
import type { Pipeable } from "effect/Pipeable"
import type { BatchJobError } from "../Errors.ts"
import type { StateSchemas, StateSpec, UpdateStateOptions, UpdateStateWithTime } from "../State.ts"
import type { WindowAssigner } from "./eventTime.ts"
import type { FailedRecord as FailedRecordModel, FailurePolicy as FailurePolicyModel, Node, NodeEnv } from "./node.ts"

/**
 * The key that marks a value as a DStream.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("effect-dstream/DStream")

/**
 * Services available to Effect-returning batch functions and outputs.
 *
 * @since 0.1.0
 * @category models
 */
export type Env = NodeEnv

/**
 * A batch function's result: the new batch, plain or as an Effect.
 *
 * @since 0.1.0
 * @category models
 */
export type BatchResult<B, R = never> = ReadonlyArray<B> | Effect.Effect<ReadonlyArray<B>, unknown, R | Env>

/**
 * An output function's result: nothing, or an Effect to run.
 *
 * @since 0.1.0
 * @category models
 */
export type OutputResult<R = never, E = unknown> = void | Effect.Effect<unknown, E, R | Env>

/**
 * What an output operation returns: a handle naming it, whose `isFailure` tells whether a
 * `BatchJobError` (from `awaitTermination`, or a listener) is this output's own typed failure —
 * its function failed with `E` — and narrows it to `BatchJobError<E>`.
 *
 * @example
 * ```ts
 * const saved = counts.foreachBatch((batch) => db.saveAll(batch)) // Effect<void, DbError, Db>
 * const exit = yield* Effect.exit(ssc.awaitTermination)
 * if (Exit.isFailure(exit)) {
 *   const error = Cause.squash(exit.cause)
 *   if (saved.isFailure(error)) error.cause // DbError
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Output<out E> {
  /** Registration index in the context: the `outputId` of its events and errors. */
  readonly id: number
  /** `print`, `foreachBatch`, `saveAsTextFiles`, … */
  readonly name: string
  /** `true` when `error` is a `BatchJobError` of this output whose own function failed with `E`. */
  readonly isFailure: (error: unknown) => error is BatchJobError<E>
}

/**
 * What a failed output operation (or a failed computation of its batch) does: `"stop"` stops
 * the context and fails `awaitTermination` with a `BatchJobError`; `"skip"` reports the failure
 * (`OutputOperationCompleted` and `BatchCompleted` carry the reason), logs it and goes on, the
 * batch counting as done (checkpointed, inputs told, Kafka offsets committable);
 * `{ retry, then }` runs the output again on the `Schedule` (it receives each failure), then
 * stops or skips (`then`, default `"stop"`).
 *
 * @example
 * ```ts
 * const ssc = yield* StreamingContext.make({
 *   batchInterval: "1 second",
 *   onFailure: { retry: Schedule.min([Schedule.exponential("100 millis"), Schedule.recurs(3)]), then: "skip" },
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type FailurePolicy = FailurePolicyModel

/**
 * A record a per-record operator threw on (context option `recordErrors: "deadLetter"`), as
 * `ssc.deadLetters` gives it: the record, the operator's name, what it threw and the batch time.
 *
 * @since 0.1.0
 * @category models
 */
export type FailedRecord = FailedRecordModel

/**
 * Options every output operation takes: its own failure policy and timeout (the context's
 * `onFailure` and `outputTimeout` otherwise). `timeout: Infinity` waits without bound.
 *
 * @since 0.1.0
 * @category models
 */
export interface OutputOptions {
  /** What a failure of this output does (default: the context's `onFailure`). */
  readonly onFailure?: FailurePolicy | undefined
  /** Bound of one run of this output (default: the context's `outputTimeout`). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A discretized stream of `A`.
 *
 * @since 0.1.0
 * @category models
 */
export interface DStream<out A, in R = never> extends Pipeable {
  /** Marks a DStream and carries its element type. */
  readonly [TypeId]: { readonly _A: (_: never) => A }
  /** @internal */
  readonly node: Node<A>
  /** How often this stream produces a batch. */
  readonly slideDuration: Duration.Duration

  // ---- per-batch operators ----------------------------------------------------------------
  /** Applies `f` to every element. */
  map<B>(f: (a: A) => B): DStream<B, R>
  /** Applies `f` to every element and flattens the results. */
  flatMap<B>(f: (a: A) => Iterable<B>): DStream<B, R>
  /** Keeps the elements that satisfy the predicate. */
  filter<B extends A>(refinement: (a: A) => a is B): DStream<B, R>
  /** Keeps the elements that satisfy the predicate. */
  filter(predicate: (a: A) => boolean): DStream<A, R>
  /** Applies `f` to each whole batch (Spark's `mapPartitions`, one partition per batch). */
  mapPartitions<B>(f: (batch: ReadonlyArray<A>) => Iterable<B>): DStream<B, R>
  /** Turns each batch into a one-element batch holding the batch's array. */
  glom(): DStream<ReadonlyArray<A>, R>
  /** Elements of this stream, then elements of `that`, per batch. */
  union<B>(that: DStream<B>): DStream<A | B, R>
  /** Number of elements per batch: always exactly one element, 0 for an empty batch. */
  count(): DStream<number, R>
  /** Occurrences of each distinct element per batch. */
  countByValue(): DStream<readonly [A, number], R>
  /** Reduces each non-empty batch to one element; an empty batch gives an empty batch. */
  reduce(f: (a: A, b: A) => A): DStream<A, R>
  /** Applies a batch-level function (plain or Effect-returning) receiving the batch time. */
  transform<B>(f: (batch: ReadonlyArray<A>, time: number) => BatchResult<B, R>): DStream<B, R>
  /** Combines this stream's batch and `that`'s batch of the same time. */
  transformWith<B, C>(
    that: DStream<B>,
    f: (a: ReadonlyArray<A>, b: ReadonlyArray<B>, time: number) => BatchResult<C, R>,
  ): DStream<C, R>
  /** Spark's `repartition(n)`: a batch is one in-process array, so elements pass unchanged. */
  repartition(numPartitions: number): DStream<A, R>
  /** A view of this stream that remembers its batches for at least `duration` (for `slice`). */
  remember(duration: Duration.Input): DStream<A, R>
  /** The batches at all slide-aligned times in `[from, to]` (inclusive), computed on demand. */
  slice(from: number, to: number): Effect.Effect<Array<readonly [number, ReadonlyArray<A>]>, unknown, Env>
  /** Maps every element to a key-value pair; value literal types widen. */
  mapToPair<K, V>(f: (a: A) => readonly [K, V]): DStream<readonly [K, V], R>
  /** Pairs every element with the key `f` computes. */
  keyBy<K>(f: (a: A) => K): DStream<readonly [K, A], R>

  // ---- keyed operators (only on DStream<readonly [K, V]>) ---------------------------------
  /** Merges the values of each key with `f` per batch. */
  reduceByKey<K = any, V = any>(this: DStream<readonly [K, V]>, f: (a: V, b: V) => V): DStream<readonly [K, V], R>
  /** Collects the values of each key per batch, in arrival order. */
  groupByKey<K = any, V = any>(this: DStream<readonly [K, V]>): DStream<readonly [K, ReadonlyArray<V>], R>
  /** Spark's `combineByKey`: per-key combiners built from the batch's values. */
  combineByKey<K = any, V = any, C = any>(
    this: DStream<readonly [K, V]>,
    createCombiner: (v: V) => C,
    mergeValue: (c: C, v: V) => C,
    mergeCombiners: (a: C, b: C) => C,
  ): DStream<readonly [K, C], R>
  /** Applies `f` to every value, keeping keys. */
  mapValues<K = any, V = any, W = any>(this: DStream<readonly [K, V]>, f: (v: V) => W): DStream<readonly [K, W], R>
  /** Applies `f` to every value and flattens, keeping keys. */
  flatMapValues<K = any, V = any, W = any>(
    this: DStream<readonly [K, V]>,
    f: (v: V) => Iterable<W>,
  ): DStream<readonly [K, W], R>
  /** Inner join of the two streams' batches of the same time. */
  join<K = any, V = any, W = any>(
    this: DStream<readonly [K, V]>,
    that: DStream<readonly [K, W]>,
  ): DStream<readonly [K, readonly [V, W]], R>
  /** Left outer join; a missing right side is `Option.none()`. */
  leftOuterJoin<K = any, V = any, W = any>(
    this: DStream<readonly [K, V]>,
    that: DStream<readonly [K, W]>,
  ): DStream<readonly [K, readonly [V, Option.Option<W>]], R>
  /** Right outer join; a missing left side is `Option.none()`. */
  rightOuterJoin<K = any, V = any, W = any>(
    this: DStream<readonly [K, V]>,
    that: DStream<readonly [K, W]>,
  ): DStream<readonly [K, readonly [Option.Option<V>, W]], R>
  /** Full outer join; a missing side is `Option.none()`. */
  fullOuterJoin<K = any, V = any, W = any>(
    this: DStream<readonly [K, V]>,
    that: DStream<readonly [K, W]>,
  ): DStream<readonly [K, readonly [Option.Option<V>, Option.Option<W>]], R>
  /** Groups both streams' values per key; a key on one side only gets an empty array on the other. */
  cogroup<K = any, V = any, W = any>(
    this: DStream<readonly [K, V]>,
    that: DStream<readonly [K, W]>,
  ): DStream<readonly [K, readonly [ReadonlyArray<V>, ReadonlyArray<W>]], R>

  // ---- windowed operators (lib/Window.ts; slide defaults to this stream's slide) -----------
  /** The batches of the last `windowDuration`, every `slideDuration`, in time order. */
  window(windowDuration: Duration.Input, slideDuration?: Duration.Input): DStream<A, R>
  /** Number of elements per window (incremental: nothing before the first element, then 0 when empty). */
  countByWindow(windowDuration: Duration.Input, slideDuration?: Duration.Input): DStream<number, R>
  /** Reduces each window to one element; an empty window gives an empty batch. */
  reduceByWindow(f: (a: A, b: A) => A, windowDuration: Duration.Input, slideDuration?: Duration.Input): DStream<A, R>
  /** Incremental window reduce with an inverse function `invF`. */
  reduceByWindow(
    f: (a: A, b: A) => A,
    invF: (a: A, b: A) => A,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): DStream<A, R>
  /** Occurrences of each distinct element per window (incremental; zero counts dropped). */
  countByValueAndWindow(
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): DStream<readonly [A, number], R>
  /** Merges each key's values over the window with `f`; keys without data in the window disappear. */
  reduceByKeyAndWindow<K = any, V = any>(
    this: DStream<readonly [K, V]>,
    f: (a: V, b: V) => V,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): DStream<readonly [K, V], R>
  /** Incremental per-key window reduce with an inverse function; keys at zero stay unless `filter` drops them. */
  reduceByKeyAndWindow<K = any, V = any>(
    this: DStream<readonly [K, V]>,
    f: (a: V, b: V) => V,
    invF: (a: V, b: V) => V,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
    options?: InverseOptions<K, V>,
  ): DStream<readonly [K, V], R>
  /** Collects each key's values over the window, in time order. */
  groupByKeyAndWindow<K = any, V = any>(
    this: DStream<readonly [K, V]>,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): DStream<readonly [K, ReadonlyArray<V>], R>
  // ---- end of windowed operators -----------------------------------------------------------

  // ---- stateful operators (lib/State.ts, lib/_internal/state.ts; need ssc.checkpoint) ------
  /**
   * Spark's `updateStateByKey`: every batch, `update` gets every key with state or data (values
   * empty without data) and returns the new state, or `None` to remove the key. The batch is
   * the whole state. `initialState` is the state before the first batch.
   */
  updateStateByKey<K = any, V = any, S = V>(
    this: DStream<readonly [K, V]>,
    update: (values: ReadonlyArray<V>, state: Option.Option<S>) => Option.Option<S>,
    options?: UpdateStateOptions<K, S>,
  ): DStream<readonly [K, S], R>
  /** `updateStateByKey` whose function also gets the batch time and the key. */
  updateStateByKey<K = any, V = any, S = any>(
    this: DStream<readonly [K, V]>,
    options: UpdateStateWithTime<K, V, S>,
  ): DStream<readonly [K, S], R>
  /**
   * Spark's `mapWithState`: the spec's function runs once per record (and once per key timing
   * out), reading and changing the key's `State`; the batch is what it emits.
   */
  mapWithState<K = any, V = any, S = any, T = any>(
    this: DStream<readonly [K, V]>,
    spec: StateSpec<K, V, S, T>,
  ): MapWithStateDStream<K, S, T, R>
  /** Sets how often this stream's state is checkpointed (default: Spark's, ≥ 10 s); returns this stream. */
  checkpoint<Self extends DStream<A>>(this: Self, interval: Duration.Input): Self
  // ---- end of stateful operators -------------------------------------------------------------

  // ---- event time (lib/EventTime.ts) ----
  /**
   * Marks each record's event time (epoch ms) and tracks the watermark, `max(event time seen) −
   * delay`, for event-time windows and late data.
   */
  withWatermark(
    eventTime: (a: A) => number,
    delay: Duration.Input,
    options?: WatermarkOptions,
  ): WatermarkedDStream<A, R>
  // ---- end of event time ----

  // ---- output operations --------------------------------------------------------------------
  /** Prints the first `num` elements of every batch in Spark's format (header even when empty). */
  print(num?: number, options?: OutputOptions): void
  /**
   * Runs `f` on every batch with its time (plain or Effect-returning). The Effect may use the
   * services of the context (`StreamingContext.make<R>`) and the platform's `FileSystem` and
   * `Path`; its error type `E` is kept by the returned `Output` handle.
   */
  foreachBatch<E = never>(
    f: (batch: ReadonlyArray<A>, time: number) => OutputResult<R, E>,
    options?: OutputOptions,
  ): Output<E>
  /** Alias of `foreachBatch` (Spark's name). */
  foreachRDD<E = never>(
    f: (batch: ReadonlyArray<A>, time: number) => OutputResult<R, E>,
    options?: OutputOptions,
  ): Output<E>
  /** Writes every batch to the directory `prefix-<ms>[.suffix]`, atomically. */
  saveAsTextFiles(prefix: string, suffix?: string, options?: OutputOptions): void
  /**
   * The batches as an Effect `Stream` of `[time, batch]`. A bounded buffer (default 16 batches)
   * applies backpressure: batches wait while the consumer is behind (within the output timeout).
   * Ends when the context stops.
   */
  toStream(options?: ToStreamOptions): Stream.Stream<readonly [number, ReadonlyArray<A>]>
}

/**
 * Options of `DStream.toStream`: the buffer's capacity in batches (default 16) and the output
 * options (a consumer behind for longer than the timeout fails the output).
 *
 * @since 0.1.0
 * @category models
 */
export interface ToStreamOptions extends OutputOptions {
  /** Batches buffered for a slow consumer before batches wait (default 16). */
  readonly capacity?: number | undefined
}

/**
 * A `mapWithState` stream: the emitted values, plus the state itself via `stateSnapshots()`.
 *
 * @since 0.1.0
 * @category models
 */
export interface MapWithStateDStream<K, S, T, in R = never> extends DStream<T, R> {
  /** The whole state (every key and its state) after each batch. */
  stateSnapshots(): DStream<readonly [K, S], R>
}

/**
 * Options of the incremental `reduceByKeyAndWindow` (lib/Window.ts).
 *
 * @since 0.1.0
 * @category models
 */
export interface InverseOptions<K, V> {
  /**
   * Keeps only the pairs that satisfy it (Spark's `filterFunc`), typically dropping keys whose
   * value returned to the zero of the inverse function: `([, n]) => n !== 0`. Without it such
   * keys stay in every later window. It must not drop keys that still have data in the window.
   */
  readonly filter?: ((kv: readonly [K, V]) => boolean) | undefined
}

// ---- event-time models (lib/EventTime.ts re-exports them) ------------------------------------

/**
 * How records are grouped into event-time windows: `EventTime.tumbling`, `EventTime.sliding`
 * or `EventTime.session`.
 *
 * @since 0.1.0
 * @category models
 */
export interface WindowSpec {
  /** Tumbling, sliding or session windows. */
  readonly _tag: "Tumbling" | "Sliding" | "Session"
  /** @internal */
  readonly assigner: WindowAssigner
}

/**
 * `"append"`: each window is emitted once, when the watermark passes its end. `"update"`: every
 * batch emits the windows it changed (their current value).
 *
 * @since 0.1.0
 * @category models
 */
export type OutputMode = "append" | "update"

/**
 * One window's result for one key. `start` is inclusive, `end` exclusive (a session's end is
 * its last event + gap).
 *
 * @since 0.1.0
 * @category models
 */
export interface WindowResult<K, R> {
  /** The key. */
  readonly key: K
  /** Window start (epoch ms, inclusive). */
  readonly start: number
  /** Window end (epoch ms, exclusive). */
  readonly end: number
  /** The aggregate of the key's records in the window. */
  readonly value: R
}

/**
 * A record dropped because its window was already final: the record, the window it belonged
 * to and the watermark in effect.
 *
 * @since 0.1.0
 * @category models
 */
export interface LateRecord<A> {
  /** The late record. */
  readonly record: A
  /** The window it belonged to (for sessions, the session it would have started). */
  readonly window: { readonly start: number; readonly end: number }
  /** The watermark it was compared against (epoch ms). */
  readonly watermark: number
}

/**
 * One batch of an event-time window operator: the watermark in effect (`undefined` before the
 * first record), late records dropped, windows emitted and windows still open in state.
 *
 * @since 0.1.0
 * @category models
 */
export interface WindowProgress {
  /** The batch time. */
  readonly batchTime: number
  /** The watermark in force for this batch (`undefined` before the first event). */
  readonly watermark: number | undefined
  /** Records of this batch that were late for their window. */
  readonly lateRecords: number
  /** Windows emitted by this batch. */
  readonly emitted: number
  /** Windows still open (held in state) after this batch. */
  readonly openWindows: number
}

/**
 * Options of the event-time window operators.
 *
 * @since 0.1.0
 * @category models
 */
export interface WindowOptions<K, C> {
  /** Default `"append"`. */
  readonly mode?: OutputMode | undefined
  /** Schemas for keys and accumulators in checkpoints (default: the values as JSON). */
  readonly schemas?: { readonly key?: StateSchemas<K, C>["key"]; readonly accumulator?: StateSchemas<K, C>["state"] }
  /** A stable name for this state in checkpoints (default: its position in the graph). */
  readonly name?: string | undefined
}

/**
 * Options of `EventTime.aggregateByWindow`: `merge` combines two accumulators (required for
 * session windows, whose sessions merge when their gaps overlap).
 *
 * @since 0.1.0
 * @category models
 */
export interface AggregateOptions<K, C> extends WindowOptions<K, C> {
  /** Combines two accumulators (required for session windows). */
  readonly merge?: ((a: C, b: C) => C) | undefined
}

/**
 * Options of `EventTime.withWatermark`.
 *
 * @since 0.1.0
 * @category models
 */
export interface WatermarkOptions {
  /**
   * After this long (batch time) without any record, every quiet batch moves the watermark on
   * as if event time kept pace with the batch clock: `max event time + quiet time − delay`, so
   * open windows close and their state is dropped during quiet periods. Off by default (as in
   * Structured Streaming, the watermark then only moves with data). It depends on arrival
   * times, so a replay does not reproduce what it closes early.
   */
  readonly idleAdvance?: Duration.Input | undefined
}

/**
 * A stream with event time and a watermark (from `withWatermark`). It is a `DStream` of the
 * same records; `keyBy` and `filter` keep the event time, and the event-time window operators
 * are available when its elements are `[key, value]` pairs.
 *
 * @since 0.1.0
 * @category models
 */
export interface WatermarkedDStream<out A, in S = never> extends DStream<A, S> {
  /** Keys every record by `f`, keeping its event time: `[f(a), a]`. */
  keyBy<K>(f: (a: A) => K): WatermarkedDStream<readonly [K, A], S>
  /** Keeps the records satisfying the predicate, with their event time. */
  filter<B extends A>(refinement: (a: A) => a is B): WatermarkedDStream<B, S>
  /** Keeps the records satisfying the predicate, with their event time. */
  filter(predicate: (a: A) => boolean): WatermarkedDStream<A, S>
  /** Reduces each key's values per event-time window. */
  reduceByEventWindow<K, V>(
    this: WatermarkedDStream<readonly [K, V]>,
    window: WindowSpec,
    f: (a: V, b: V) => V,
    options?: WindowOptions<K, V>,
  ): EventWindowDStream<K, V, readonly [K, V], S>
  /** Folds each key's values per event-time window, starting from `initial` (`add` must not mutate it). */
  aggregateByEventWindow<K, V, C>(
    this: WatermarkedDStream<readonly [K, V]>,
    window: WindowSpec,
    initial: C,
    add: (acc: C, v: V) => C,
    options?: AggregateOptions<K, C>,
  ): EventWindowDStream<K, C, readonly [K, V], S>
  /** Counts each key's records per event-time window. */
  countByEventWindow<K, V>(
    this: WatermarkedDStream<readonly [K, V]>,
    window: WindowSpec,
    options?: WindowOptions<K, number>,
  ): EventWindowDStream<K, number, readonly [K, V], S>
}

/**
 * The results of an event-time window operator, with its side outputs.
 *
 * @since 0.1.0
 * @category models
 */
export interface EventWindowDStream<K, R, In, in S = never> extends DStream<WindowResult<K, R>, S> {
  /** The records dropped as late, per batch. */
  late(): DStream<LateRecord<In>, S>
  /** One {@link WindowProgress} per batch. */
  progress(): DStream<WindowProgress, S>
}

/**
 * Wraps a graph node as a DStream. `R`, the services of the node's context, exists only in
 * types (the context provides them to every job at run time), so the implementation, checked
 * against `DStream<A>`, is viewed as `DStream<A, R>` here.
 * @internal
 */
export const fromNode = <A, R = never>(node: Node<A>): DStream<A, R> => {
  if (construct === undefined) throw new Error("lib/DStream.ts is not loaded: it installs the DStream class")
  return construct(node) as DStream<A> as unknown as DStream<A, R>
}

let construct: (<A>(node: Node<A>) => DStream<A>) | undefined

/**
 * Installs the DStream class (lib/DStream.ts calls it once, when it loads): its fluent methods
 * call the operators of DStream.ts, Window.ts and EventTime.ts, which themselves build streams
 * with {@link fromNode}, so the class lives above them and this module below.
 * @internal
 */
export const installDStreamClass = (make: <A>(node: Node<A>) => DStream<A>): void => {
  construct = make
}

/**
 * `true` for DStream values.
 *
 * @since 0.1.0
 * @category guards
 */
export const isDStream = (u: unknown): u is DStream<unknown> => typeof u === "object" && u !== null && TypeId in u
