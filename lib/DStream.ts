/**
 * `DStream<A>`: a discretized stream, a sequence of batches of `A` cut by the batch clock.
 * Immutable and lazily described: every operator returns a new DStream; nothing runs until
 * the context starts. Every operator exists as a fluent method and as a pipeable `dual`
 * function sharing one implementation. Keyed operators only type-check on
 * `DStream<readonly [K, V]>`.
 *
 * Inside a batch, operators run plain loops over arrays; Effect orchestrates batches, not
 * elements. A batch is one in-process array (Spark's RDD with a single partition): output
 * order is input order, and keyed results come in the order keys first appear.
 *
 * @module
 */
import { type Cause, Console, Duration, Effect, Option, Path, Queue, Stream } from "effect"
import { FileSystem } from "effect"
import { dual } from "effect/Function"
import { pipeArguments } from "effect/Pipeable"
import { BatchJobError, ValidationError } from "./Errors.ts"
import { formatElement, formatPrintBlock } from "./_internal/format.ts"
import { KeyMap } from "./_internal/keyMap.ts"
import {
  type Batch,
  BatchNode,
  concatBatches,
  type Fold,
  FoldNode,
  type Node,
  OutputNode,
  type OutputSettings,
  PipeNode,
} from "./_internal/node.ts"
import * as Time from "./Time.ts"
import type { StateSpec, UpdateStateOptions, UpdateStateWithTime } from "./State.ts"
import { makeCodecs, MapWithStateNode, StateSnapshotsNode, UpdateStateNode } from "./_internal/state.ts"
import { IllegalStateError } from "./Errors.ts"
import * as Window from "./Window.ts"
import * as EventTime from "./EventTime.ts"
import {
  type BatchResult,
  type DStream,
  type Env,
  type FailurePolicy,
  fromNode,
  installDStreamClass,
  isDStream,
  type MapWithStateDStream,
  type Output,
  type OutputOptions,
  type OutputResult,
  type ToStreamOptions,
  TypeId,
} from "./_internal/dstream.ts"

export {
  /**
   * Wraps a graph node as a DStream.
   * @internal
   */
  fromNode,
  /**
   * `true` for DStream values.
   *
   * @since 0.1.0
   * @category guards
   */
  isDStream,
  /**
   * The key that marks a value as a DStream.
   *
   * @since 0.1.0
   * @category symbols
   */
  TypeId,
} from "./_internal/dstream.ts"
export type {
  BatchResult,
  DStream,
  Env,
  FailedRecord,
  FailurePolicy,
  MapWithStateDStream,
  Output,
  OutputOptions,
  OutputResult,
  ToStreamOptions,
} from "./_internal/dstream.ts"

/**
 * Checks a failure policy; throws a `ValidationError` naming what is wrong.
 * @internal
 */
export const validatePolicy = (policy: FailurePolicy, what: string): FailurePolicy => {
  if (policy === "stop" || policy === "skip") return policy
  if (typeof policy === "object" && policy !== null && "retry" in policy && policy.retry !== undefined) {
    if (policy.then === undefined || policy.then === "stop" || policy.then === "skip") return policy
  }
  throw new ValidationError({
    message: `${what} must be "stop", "skip" or { retry: Schedule, then?: "stop" | "skip" }: ${
      typeof policy === "object" ? JSON.stringify(policy) : String(policy)
    }`,
  })
}

const outputSettings = (options: OutputOptions | undefined): OutputSettings => {
  if (options === undefined) return {}
  const timeout = options.timeout
  return {
    onFailure: options.onFailure === undefined ? undefined : validatePolicy(options.onFailure, "onFailure"),
    timeoutMillis: timeout === undefined
      ? undefined
      : timeout === Infinity || (Duration.isDuration(timeout) && !Duration.isFinite(timeout))
      ? Infinity
      : Time.millis(timeout, "Output timeout"),
  }
}

/**
 * The DStream class: its fluent methods call this module's operators and Window's and
 * EventTime's, which build their streams with `fromNode` from lib/_internal/dstream.ts, so this
 * module installs the class there (below) rather than those modules importing this one.
 */
class DStreamImpl<A> implements DStream<A> {
  readonly [TypeId] = { _A: (_: never) => _ as A }
  constructor(readonly node: Node<A>) {}
  get slideDuration(): Duration.Duration {
    return Duration.millis(this.node.slideMillis)
  }
  pipe(): unknown {
    return pipeArguments(this, arguments)
  }
  toString(): string {
    return `DStream(${this.node.kind})`
  }
  map<B>(f: (a: A) => B): DStream<B> {
    return map(this, f)
  }
  flatMap<B>(f: (a: A) => Iterable<B>): DStream<B> {
    return flatMap(this, f)
  }
  filter(p: (a: A) => boolean): DStream<A> {
    return filter(this, p)
  }
  mapPartitions<B>(f: (batch: ReadonlyArray<A>) => Iterable<B>): DStream<B> {
    return mapPartitions(this, f)
  }
  glom(): DStream<ReadonlyArray<A>> {
    return glom(this)
  }
  union<B>(that: DStream<B>): DStream<A | B> {
    return union(this, that)
  }
  count(): DStream<number> {
    return count(this)
  }
  countByValue(): DStream<readonly [A, number]> {
    return countByValue(this)
  }
  reduce(f: (a: A, b: A) => A): DStream<A> {
    return reduce(this, f)
  }
  transform<B>(f: (batch: ReadonlyArray<A>, time: number) => BatchResult<B>): DStream<B> {
    return transform(this, f)
  }
  transformWith<B, C>(
    that: DStream<B>,
    f: (a: ReadonlyArray<A>, b: ReadonlyArray<B>, time: number) => BatchResult<C>,
  ): DStream<C> {
    return transformWith(this, that, f)
  }
  repartition(n: number): DStream<A> {
    return repartition(this, n)
  }
  remember(d: Duration.Input): DStream<A> {
    return remember(this, d)
  }
  slice(from: number, to: number): Effect.Effect<Array<readonly [number, ReadonlyArray<A>]>, unknown, Env> {
    return slice(this, from, to)
  }
  mapToPair<K, V>(f: (a: A) => readonly [K, V]): DStream<readonly [K, V]> {
    return mapToPair(this, f)
  }
  keyBy<K>(f: (a: A) => K): DStream<readonly [K, A]> {
    return keyBy(this, f)
  }
  reduceByKey(this: any, f: any): any {
    return reduceByKey(this, f)
  }
  groupByKey(this: any): any {
    return groupByKey(this)
  }
  combineByKey(this: any, c: any, m: any, mc: any): any {
    return combineByKey(this, c, m, mc)
  }
  mapValues(this: any, f: any): any {
    return mapValues(this, f)
  }
  flatMapValues(this: any, f: any): any {
    return flatMapValues(this, f)
  }
  join(this: any, that: any): any {
    return join(this, that)
  }
  leftOuterJoin(this: any, that: any): any {
    return leftOuterJoin(this, that)
  }
  rightOuterJoin(this: any, that: any): any {
    return rightOuterJoin(this, that)
  }
  fullOuterJoin(this: any, that: any): any {
    return fullOuterJoin(this, that)
  }
  cogroup(this: any, that: any): any {
    return cogroup(this, that)
  }
  // ---- windowed operators (lib/Window.ts) ----
  window(w: Duration.Input, s?: Duration.Input): DStream<A> {
    return Window.window(this, w, s)
  }
  countByWindow(w: Duration.Input, s?: Duration.Input): DStream<number> {
    return Window.countByWindow(this, w, s)
  }
  reduceByWindow(f: any, ...rest: Array<any>): any {
    return typeof rest[0] === "function"
      ? Window.reduceByWindow(this, f, rest[0], rest[1], rest[2])
      : Window.reduceByWindow(this, f, rest[0], rest[1])
  }
  countByValueAndWindow(w: Duration.Input, s?: Duration.Input): DStream<readonly [A, number]> {
    return Window.countByValueAndWindow(this, w, s)
  }
  reduceByKeyAndWindow(this: any, f: any, ...rest: Array<any>): any {
    return typeof rest[0] === "function"
      ? Window.reduceByKeyAndWindow(this, f, rest[0], rest[1], rest[2], rest[3])
      : Window.reduceByKeyAndWindow(this, f, rest[0], rest[1])
  }
  groupByKeyAndWindow(this: any, w: Duration.Input, s?: Duration.Input): any {
    return Window.groupByKeyAndWindow(this, w, s)
  }
  // ---- end of windowed operators ----
  // ---- stateful operators ----
  updateStateByKey(this: any, update: any, options?: any): any {
    return updateStateByKey(this, update, options)
  }
  mapWithState(this: any, spec: any): any {
    return mapWithState(this, spec)
  }
  checkpoint(this: any, interval: Duration.Input): any {
    return checkpoint(this, interval)
  }
  // ---- end of stateful operators ----
  // ---- event time (lib/EventTime.ts) ----
  withWatermark(
    eventTime: (a: A) => number,
    delay: Duration.Input,
    options?: EventTime.WatermarkOptions,
  ): EventTime.WatermarkedDStream<A> {
    return EventTime.withWatermark(this, eventTime, delay, options)
  }
  // ---- end of event time ----
  print(num?: number, options?: OutputOptions): void {
    print(this, num, options)
  }
  foreachBatch<E>(
    f: (batch: ReadonlyArray<A>, time: number) => OutputResult<never, E>,
    options?: OutputOptions,
  ): Output<E> {
    return foreachBatch(this, f, options)
  }
  foreachRDD<E>(
    f: (batch: ReadonlyArray<A>, time: number) => OutputResult<never, E>,
    options?: OutputOptions,
  ): Output<E> {
    return foreachBatch(this, f, options)
  }
  saveAsTextFiles(prefix: string, suffix?: string, options?: OutputOptions): void {
    saveAsTextFiles(this, prefix, suffix, options)
  }
  toStream(options?: ToStreamOptions): Stream.Stream<readonly [number, ReadonlyArray<A>]> {
    return toStream(this, options)
  }
}

installDStreamClass(<A>(node: Node<A>): DStream<A> => new DStreamImpl(node))

const pipeNode = <A, B>(
  self: DStream<A>,
  stage: (push: (b: B) => void) => (a: A) => void,
  kind: string,
  operator: string,
) => fromNode(PipeNode.make(self.node, stage, kind, operator))

const foldNode = <A, B>(
  self: DStream<A>,
  makeFold: (time: number) => Fold<A, B>,
  kind: string,
  operator: string,
): DStream<B> => fromNode(new FoldNode<A, B>(self.node, makeFold, kind, operator))

const batchNode = <B, R = never>(
  parents: ReadonlyArray<DStream<any>>,
  fn: (inputs: ReadonlyArray<Batch<any>>, time: number) => BatchResult<B, R>,
  kind: string,
  missing: "none" | string = "none",
): DStream<B, R> => {
  const first = parents[0]
  // the context provides its services (`R`) to every job: the node needs the platform's only
  const run = fn as (inputs: ReadonlyArray<Batch<any>>, time: number) => BatchResult<B>
  return fromNode<B, R>(new BatchNode<B>(first.node.ctx, parents.map((p) => p.node), run, kind, missing))
}

// ---- per-batch operators ----------------------------------------------------------------------

/**
 * Applies `f` to every element.
 *
 * @example
 * ```ts
 * lines.pipe(DStream.map((line) => line.length))
 * ```
 *
 * @since 0.1.0
 * @category mapping
 */
export const map: {
  <A, B>(f: (a: A) => B): (self: DStream<A>) => DStream<B>
  <A, B>(self: DStream<A>, f: (a: A) => B): DStream<B>
} = dual(
  2,
  <A, B>(self: DStream<A>, f: (a: A) => B): DStream<B> =>
    pipeNode<A, B>(self, (push) => (a) => push(f(a)), "MappedDStream", "map"),
)

/**
 * Applies `f` to every element and flattens the iterables it returns.
 *
 * @example
 * ```ts
 * lines.pipe(DStream.flatMap((line) => line.split(" ")))
 * ```
 *
 * @since 0.1.0
 * @category mapping
 */
export const flatMap: {
  <A, B>(f: (a: A) => Iterable<B>): (self: DStream<A>) => DStream<B>
  <A, B>(self: DStream<A>, f: (a: A) => Iterable<B>): DStream<B>
} = dual(2, <A, B>(self: DStream<A>, f: (a: A) => Iterable<B>): DStream<B> =>
  pipeNode<A, B>(
    self,
    (push) => (a) => {
      const bs = f(a)
      if (Array.isArray(bs)) {
        for (let i = 0; i < bs.length; i++) push(bs[i])
      } else {
        for (const b of bs) push(b)
      }
    },
    "FlatMappedDStream",
    "flatMap",
  ))

/**
 * Keeps the elements that satisfy the predicate (narrowing with a refinement).
 *
 * @example
 * ```ts
 * words.pipe(DStream.filter((w) => w.length > 0))
 * ```
 *
 * @since 0.1.0
 * @category filtering
 */
export const filter: {
  <A, B extends A>(refinement: (a: A) => a is B): (self: DStream<A>) => DStream<B>
  <A>(predicate: (a: A) => boolean): (self: DStream<A>) => DStream<A>
  <A, B extends A>(self: DStream<A>, refinement: (a: A) => a is B): DStream<B>
  <A>(self: DStream<A>, predicate: (a: A) => boolean): DStream<A>
} = dual(2, <A>(self: DStream<A>, p: (a: A) => boolean): DStream<A> =>
  pipeNode<A, A>(
    self,
    (push) => (a) => {
      if (p(a)) push(a)
    },
    "FilteredDStream",
    "filter",
  ))

/**
 * Maps every element to a key-value pair, so keyed operators apply.
 *
 * @example
 * ```ts
 * words.pipe(DStream.mapToPair((w) => [w, 1]))
 * ```
 *
 * @since 0.1.0
 * @category mapping
 */
export const mapToPair: {
  <A, K, V>(f: (a: A) => readonly [K, V]): (self: DStream<A>) => DStream<readonly [K, V]>
  <A, K, V>(self: DStream<A>, f: (a: A) => readonly [K, V]): DStream<readonly [K, V]>
} = dual(
  2,
  <A, K, V>(self: DStream<A>, f: (a: A) => readonly [K, V]): DStream<readonly [K, V]> =>
    pipeNode<A, readonly [K, V]>(self, (push) => (a) => push(f(a)), "MappedDStream", "mapToPair"),
)

/**
 * Pairs every element with its key: `[f(a), a]`.
 *
 * @example
 * ```ts
 * users.pipe(DStream.keyBy((u) => u.id))
 * ```
 *
 * @since 0.1.0
 * @category mapping
 */
export const keyBy: {
  <A, K>(f: (a: A) => K): (self: DStream<A>) => DStream<readonly [K, A]>
  <A, K>(self: DStream<A>, f: (a: A) => K): DStream<readonly [K, A]>
} = dual(
  2,
  <A, K>(self: DStream<A>, f: (a: A) => K): DStream<readonly [K, A]> =>
    pipeNode<A, readonly [K, A]>(self, (push) => (a) => push([f(a), a]), "MappedDStream", "keyBy"),
)

/**
 * Applies `f` to each whole batch (Spark's `mapPartitions`; a batch is one partition).
 *
 * @example
 * ```ts
 * nums.pipe(DStream.mapPartitions((batch) => [batch.reduce((a, b) => a + b, 0)]))
 * ```
 *
 * @since 0.1.0
 * @category mapping
 */
export const mapPartitions: {
  <A, B>(f: (batch: ReadonlyArray<A>) => Iterable<B>): (self: DStream<A>) => DStream<B>
  <A, B>(self: DStream<A>, f: (batch: ReadonlyArray<A>) => Iterable<B>): DStream<B>
} = dual(
  2,
  <A, B>(self: DStream<A>, f: (batch: ReadonlyArray<A>) => Iterable<B>): DStream<B> =>
    batchNode<B>([self], ([batch]) => {
      const out = f(batch as ReadonlyArray<A>)
      return Array.isArray(out) ? out : Array.from(out)
    }, "MapPartitionedDStream"),
)

/**
 * Turns each batch into a one-element batch holding the batch's array (Spark's `glom` with one
 * partition per batch).
 *
 * @example
 * ```ts
 * nums.pipe(DStream.glom) // DStream<ReadonlyArray<number>>
 * ```
 *
 * @since 0.1.0
 * @category mapping
 */
export const glom = <A>(self: DStream<A>): DStream<ReadonlyArray<A>> =>
  batchNode<ReadonlyArray<A>>([self], ([batch]) => [batch as ReadonlyArray<A>], "GlommedDStream")

/**
 * Elements of `self` then elements of `that`, per batch. Both streams must have the same slide.
 *
 * @example
 * ```ts
 * a.pipe(DStream.union(b))
 * ```
 *
 * @since 0.1.0
 * @category combining
 */
export const union: {
  <B>(that: DStream<B>): <A>(self: DStream<A>) => DStream<A | B>
  <A, B>(self: DStream<A>, that: DStream<B>): DStream<A | B>
} = dual(2, <A, B>(self: DStream<A>, that: DStream<B>): DStream<A | B> => unionAll<A | B>([self, that]))

/**
 * Union of many streams with the same slide, in the order given (Spark's `ssc.union`).
 *
 * @example
 * ```ts
 * DStream.unionAll([a, b, c])
 * ```
 *
 * @since 0.1.0
 * @category combining
 */
export const unionAll = <A>(streams: ReadonlyArray<DStream<A>>): DStream<A> => {
  if (streams.length === 0) throw new ValidationError({ message: "The list of DStreams to union is empty" })
  for (const s of streams) {
    if (!isDStream(s)) {
      throw new ValidationError({ message: `Cannot union a value that is not a DStream: ${String(s)}` })
    }
  }
  return batchNode<A>(
    streams,
    (batches) => concatBatches(batches as ReadonlyArray<Batch<A>>),
    "UnionDStream",
    "Could not generate a batch from a parent for unifying at time",
  )
}

/**
 * Number of elements in each batch: exactly one element per batch, `0` when it is empty.
 *
 * @example
 * ```ts
 * lines.pipe(DStream.count)
 * ```
 *
 * @since 0.1.0
 * @category aggregating
 */
export const count = <A>(self: DStream<A>): DStream<number> =>
  foldNode<A, number>(
    self,
    () => {
      let n = 0
      return {
        push: () => {
          n++
        },
        result: () => [n],
      }
    },
    "CountDStream",
    "count",
  )

/**
 * Occurrences of each distinct element per batch, as `[element, count]` pairs.
 *
 * @example
 * ```ts
 * words.pipe(DStream.countByValue)
 * ```
 *
 * @since 0.1.0
 * @category aggregating
 */
export const countByValue = <A>(self: DStream<A>): DStream<readonly [A, number]> =>
  foldNode<A, readonly [A, number]>(
    self,
    () => {
      const counts = new KeyMap<A, number>()
      return {
        push: (a) => counts.set(a, (counts.get(a) ?? 0) + 1),
        result: () => counts.entries(),
      }
    },
    "CountByValueDStream",
    "countByValue",
  )

/**
 * Reduces every non-empty batch to one element with `f`; an empty batch stays empty.
 *
 * @example
 * ```ts
 * nums.pipe(DStream.reduce((a, b) => a + b))
 * ```
 *
 * @since 0.1.0
 * @category aggregating
 */
export const reduce: {
  <A>(f: (a: A, b: A) => A): (self: DStream<A>) => DStream<A>
  <A>(self: DStream<A>, f: (a: A, b: A) => A): DStream<A>
} = dual(2, <A>(self: DStream<A>, f: (a: A, b: A) => A): DStream<A> =>
  foldNode<A, A>(
    self,
    () => {
      let empty = true
      let acc: A
      return {
        push: (a) => {
          if (empty) {
            acc = a
            empty = false
          } else {
            acc = f(acc, a)
          }
        },
        result: () => (empty ? [] : [acc]),
      }
    },
    "ReducedDStream",
    "reduce",
  ))

/**
 * Applies a batch-level function every batch; it receives the batch time and may return an
 * Effect (Spark's `transform`).
 *
 * @example
 * ```ts
 * nums.pipe(DStream.transform((batch, time) => batch.map((n) => [time, n] as const)))
 * ```
 *
 * @since 0.1.0
 * @category transforming
 */
export const transform: {
  <A, B, R = never>(
    f: (batch: ReadonlyArray<A>, time: number) => BatchResult<B, R>,
  ): (self: DStream<A, R>) => DStream<B, R>
  <A, B, R = never>(self: DStream<A, R>, f: (batch: ReadonlyArray<A>, time: number) => BatchResult<B, R>): DStream<B, R>
} = dual(
  2,
  <A, B, R>(self: DStream<A, R>, f: (batch: ReadonlyArray<A>, time: number) => BatchResult<B, R>): DStream<B, R> =>
    batchNode<B, R>(
      [self],
      ([batch], time) => f(batch as ReadonlyArray<A>, time),
      "TransformedDStream",
      "Could not generate a batch from the parent at time",
    ),
)

/**
 * Combines the batches of two streams of the same time with a batch-level function.
 *
 * @example
 * ```ts
 * a.pipe(DStream.transformWith(b, (xs, ys) => [...xs, ...ys]))
 * ```
 *
 * @since 0.1.0
 * @category transforming
 */
export const transformWith: {
  <A, B, C, R = never>(
    that: DStream<B>,
    f: (a: ReadonlyArray<A>, b: ReadonlyArray<B>, time: number) => BatchResult<C, R>,
  ): (self: DStream<A, R>) => DStream<C, R>
  <A, B, C, R = never>(
    self: DStream<A, R>,
    that: DStream<B>,
    f: (a: ReadonlyArray<A>, b: ReadonlyArray<B>, time: number) => BatchResult<C, R>,
  ): DStream<C, R>
} = dual(3, <A, B, C, R>(
  self: DStream<A, R>,
  that: DStream<B>,
  f: (a: ReadonlyArray<A>, b: ReadonlyArray<B>, time: number) => BatchResult<C, R>,
): DStream<C, R> =>
  batchNode<C, R>(
    [self, that],
    ([a, b], time) => f(a as ReadonlyArray<A>, b as ReadonlyArray<B>, time),
    "TransformedDStream",
    "Could not generate a batch from a parent at time",
  ))

/**
 * Batch-level function over many streams of the same slide (Spark's `ssc.transform`).
 *
 * @example
 * ```ts
 * DStream.transformAll([a, b], (batches, time) => batches.flat())
 * ```
 *
 * @since 0.1.0
 * @category transforming
 */
export const transformAll = <B>(
  streams: ReadonlyArray<DStream<unknown>>,
  f: (batches: ReadonlyArray<ReadonlyArray<unknown>>, time: number) => BatchResult<B>,
): DStream<B> => {
  if (streams.length === 0) throw new ValidationError({ message: "The list of DStreams to transform is empty" })
  return batchNode<B>(
    streams,
    (batches, time) => f(batches, time),
    "TransformedDStream",
    "Could not generate a batch from a parent at time",
  )
}

/**
 * Spark's `repartition(n)`. A batch here is one in-process array (one partition), so the
 * elements pass through unchanged and in order; `n` must be a positive integer.
 *
 * @example
 * ```ts
 * lines.pipe(DStream.repartition(4))
 * ```
 *
 * @since 0.1.0
 * @category transforming
 */
export const repartition: {
  (numPartitions: number): <A>(self: DStream<A>) => DStream<A>
  <A>(self: DStream<A>, numPartitions: number): DStream<A>
} = dual(2, <A>(self: DStream<A>, numPartitions: number): DStream<A> => {
  if (!Number.isInteger(numPartitions) || numPartitions <= 0) {
    throw new ValidationError({ message: `Number of partitions must be a positive integer: ${numPartitions}` })
  }
  return batchNode<A>([self], ([batch]) => batch as ReadonlyArray<A>, "RepartitionedDStream")
})

/**
 * A view of the stream that keeps its batches for at least `duration`, so `slice` can reach
 * back that far (Spark's `remember`).
 *
 * @example
 * ```ts
 * const recent = nums.pipe(DStream.remember("1 minute"))
 * ```
 *
 * @since 0.1.0
 * @category transforming
 */
export const remember: {
  (duration: Duration.Input): <A>(self: DStream<A>) => DStream<A>
  <A>(self: DStream<A>, duration: Duration.Input): DStream<A>
} = dual(2, <A>(self: DStream<A>, duration: Duration.Input): DStream<A> => {
  const ms = Time.millis(duration, "Remember duration")
  const node = new BatchNode<A>(self.node.ctx, [self.node], ([batch]) => batch as ReadonlyArray<A>, "RememberedDStream")
  node.minRememberMillis = ms
  return fromNode(node)
})

/**
 * The batches at all slide-aligned times in `[from, to]`, both inclusive, computed on demand
 * (Spark's `slice`). Unaligned bounds are floored to the slide grid. Fails if the context has
 * not started.
 *
 * @example
 * ```ts
 * const last = yield* stream.slice(time - 5000, time)
 * ```
 *
 * @since 0.1.0
 * @category transforming
 */
export const slice: {
  (
    from: number,
    to: number,
  ): <A>(self: DStream<A>) => Effect.Effect<Array<readonly [number, ReadonlyArray<A>]>, unknown, Env>
  <A>(
    self: DStream<A>,
    from: number,
    to: number,
  ): Effect.Effect<Array<readonly [number, ReadonlyArray<A>]>, unknown, Env>
} = dual(3, <A>(self: DStream<A>, from: number, to: number) =>
  Effect.suspend(() => {
    const node = self.node
    if (node.zeroTime === undefined) {
      return Effect.fail(new ValidationError({ message: `${node.kind} has not been initialized` }))
    }
    const zero = node.zeroTime
    const slide = node.slideMillis
    const alignedTo = Time.floor(to, slide, zero)
    const alignedFrom = Time.floor(from, slide, zero)
    const times: Array<number> = []
    for (let t = alignedFrom; t <= alignedTo; t += slide) if (t > zero) times.push(t)
    return Effect.map(
      Effect.forEach(times, (t) => Effect.map(node.getOrCompute(t), (b) => [t, b] as const)),
      (pairs) => pairs.filter((p): p is readonly [number, ReadonlyArray<A>] => p[1] !== undefined),
    )
  }))

// ---- keyed operators ----------------------------------------------------------------------------

/**
 * The per-key fold behind reduceByKey / groupByKey / combineByKey: one table lookup and one
 * store per pair.
 * @internal
 */
export const combineFold = <K, V, C>(
  create: (v: V) => C,
  merge: (c: C, v: V) => C,
): Fold<readonly [K, V], readonly [K, C]> => {
  // Fast path: a native Map while every key is a string or number; the structural KeyMap
  // takes over from the first other key.
  let fast: Map<K, C> | undefined = new Map()
  let table: KeyMap<K, C> | undefined
  // Whether the fast table holds an `undefined` combiner: until it does, a missing value means
  // a new key, without asking `has` (a third lookup for every key's first pair of a batch).
  let holdsUndefined = false
  return {
    push: (kv) => {
      const k = kv[0]
      if (fast !== undefined) {
        if (typeof k === "string" || typeof k === "number") {
          const c = fast.get(k)
          const next = c !== undefined || (holdsUndefined && fast.has(k)) ? merge(c as C, kv[1]) : create(kv[1])
          if (next === undefined) holdsUndefined = true
          fast.set(k, next)
          return
        }
        table = new KeyMap<K, C>()
        fast.forEach((c, key) => table!.set(key, c))
        fast = undefined
      }
      const c = table!.get(k)
      table!.set(k, c === undefined && !table!.has(k) ? create(kv[1]) : merge(c as C, kv[1]))
    },
    result: () => {
      if (fast === undefined) return table!.entries()
      // the Map's own entries (each a fresh [key, combiner] array) into an array of its size:
      // half the time of `forEach` pushing a new pair per key on V8
      const out = new Array<readonly [K, C]>(fast.size)
      let i = 0
      for (const entry of fast) out[i++] = entry
      return out
    },
  }
}

const identity = <A>(a: A): A => a

/**
 * Merges the values of each key with `f`, per batch (Spark's `reduceByKey`).
 *
 * @example
 * ```ts
 * pairs.pipe(DStream.reduceByKey((a: number, b: number) => a + b))
 * ```
 *
 * @since 0.1.0
 * @category keyed
 */
export const reduceByKey: {
  <V>(f: (a: V, b: V) => V): <K>(self: DStream<readonly [K, V]>) => DStream<readonly [K, V]>
  <K, V>(self: DStream<readonly [K, V]>, f: (a: V, b: V) => V): DStream<readonly [K, V]>
} = dual(
  2,
  <K, V>(self: DStream<readonly [K, V]>, f: (a: V, b: V) => V): DStream<readonly [K, V]> =>
    foldNode<readonly [K, V], readonly [K, V]>(
      self,
      () => combineFold<K, V, V>(identity, f),
      "ShuffledDStream",
      "reduceByKey",
    ),
)

/**
 * Collects each key's values per batch, in arrival order.
 *
 * @example
 * ```ts
 * pairs.pipe(DStream.groupByKey)
 * ```
 *
 * @since 0.1.0
 * @category keyed
 */
export const groupByKey = <K, V>(self: DStream<readonly [K, V]>): DStream<readonly [K, ReadonlyArray<V>]> =>
  foldNode<readonly [K, V], readonly [K, ReadonlyArray<V>]>(
    self,
    () =>
      combineFold<K, V, Array<V>>((v) => [v], (c, v) => {
        c.push(v)
        return c
      }),
    "ShuffledDStream",
    "groupByKey",
  )

/**
 * Spark's `combineByKey`: build a combiner from a key's first value, merge further values in.
 * (`mergeCombiners` is accepted for Spark compatibility; one partition per batch never needs it.)
 *
 * @example
 * ```ts
 * pairs.pipe(DStream.combineByKey((v: number) => [v, 1] as const, ([s, n], v) => [s + v, n + 1] as const, ([a, b], [c, d]) => [a + c, b + d] as const))
 * ```
 *
 * @since 0.1.0
 * @category keyed
 */
export const combineByKey: {
  <V, C>(
    createCombiner: (v: V) => C,
    mergeValue: (c: C, v: V) => C,
    mergeCombiners: (a: C, b: C) => C,
  ): <K>(self: DStream<readonly [K, V]>) => DStream<readonly [K, C]>
  <K, V, C>(
    self: DStream<readonly [K, V]>,
    createCombiner: (v: V) => C,
    mergeValue: (c: C, v: V) => C,
    mergeCombiners: (a: C, b: C) => C,
  ): DStream<readonly [K, C]>
} = dual(4, <K, V, C>(
  self: DStream<readonly [K, V]>,
  createCombiner: (v: V) => C,
  mergeValue: (c: C, v: V) => C,
  _mergeCombiners: (a: C, b: C) => C,
): DStream<readonly [K, C]> =>
  foldNode<readonly [K, V], readonly [K, C]>(
    self,
    () => combineFold<K, V, C>(createCombiner, mergeValue),
    "ShuffledDStream",
    "combineByKey",
  ))

/**
 * Applies `f` to every value, keeping the keys.
 *
 * @example
 * ```ts
 * pairs.pipe(DStream.mapValues((n: number) => n * 2))
 * ```
 *
 * @since 0.1.0
 * @category keyed
 */
export const mapValues: {
  <V, W>(f: (v: V) => W): <K>(self: DStream<readonly [K, V]>) => DStream<readonly [K, W]>
  <K, V, W>(self: DStream<readonly [K, V]>, f: (v: V) => W): DStream<readonly [K, W]>
} = dual(
  2,
  <K, V, W>(self: DStream<readonly [K, V]>, f: (v: V) => W): DStream<readonly [K, W]> =>
    pipeNode<readonly [K, V], readonly [K, W]>(
      self,
      (push) => (kv) => push([kv[0], f(kv[1])]),
      "MappedValuesDStream",
      "mapValues",
    ),
)

/**
 * Applies `f` to every value and flattens, keeping the keys.
 *
 * @example
 * ```ts
 * pairs.pipe(DStream.flatMapValues((s: string) => s.split(",")))
 * ```
 *
 * @since 0.1.0
 * @category keyed
 */
export const flatMapValues: {
  <V, W>(f: (v: V) => Iterable<W>): <K>(self: DStream<readonly [K, V]>) => DStream<readonly [K, W]>
  <K, V, W>(self: DStream<readonly [K, V]>, f: (v: V) => Iterable<W>): DStream<readonly [K, W]>
} = dual(
  2,
  <K, V, W>(self: DStream<readonly [K, V]>, f: (v: V) => Iterable<W>): DStream<readonly [K, W]> =>
    pipeNode<readonly [K, V], readonly [K, W]>(
      self,
      (push) => (kv) => {
        for (const w of f(kv[1])) push([kv[0], w])
      },
      "FlatMappedValuesDStream",
      "flatMapValues",
    ),
)

const groupSide = <K, V>(batch: ReadonlyArray<readonly [K, V]>): KeyMap<K, Array<V>> => {
  const table = new KeyMap<K, Array<V>>()
  for (let i = 0; i < batch.length; i++) {
    const [k, v] = batch[i]
    const vs = table.get(k)
    if (vs === undefined) table.set(k, [v])
    else vs.push(v)
  }
  return table
}

type JoinKind = "inner" | "left" | "right" | "full"

const joinBatches = <K, V, W>(
  left: ReadonlyArray<readonly [K, V]>,
  right: ReadonlyArray<readonly [K, W]>,
  kind: JoinKind,
): Array<readonly [K, readonly [unknown, unknown]]> => {
  const ls = groupSide(left)
  const rs = groupSide(right)
  const out: Array<readonly [K, readonly [unknown, unknown]]> = []
  const wrapL = kind === "right" || kind === "full"
  const wrapR = kind === "left" || kind === "full"
  ls.forEach((vs, k) => {
    const ws = rs.get(k)
    if (ws === undefined) {
      if (wrapR) { for (const v of vs) out.push([k, [wrapL ? Option.some(v) : v, Option.none()]]) }
      return
    }
    for (const v of vs) {
      for (const w of ws) out.push([k, [wrapL ? Option.some(v) : v, wrapR ? Option.some(w) : w]])
    }
  })
  if (wrapL) {
    rs.forEach((ws, k) => {
      if (ls.has(k)) return
      for (const w of ws) out.push([k, [Option.none(), wrapR ? Option.some(w) : w]])
    })
  }
  return out
}

const joinWith = (kind: JoinKind) => (self: DStream<readonly [any, any]>, that: DStream<readonly [any, any]>) =>
  batchNode<any>(
    [self, that],
    ([a, b]) =>
      joinBatches(
        a as ReadonlyArray<readonly [unknown, unknown]>,
        b as ReadonlyArray<readonly [unknown, unknown]>,
        kind,
      ),
    "JoinedDStream",
    "Could not generate a batch from a parent for joining at time",
  )

/**
 * Inner join of the batches of the same time: `[k, [v, w]]` for every matching pair.
 *
 * @example
 * ```ts
 * clicks.pipe(DStream.join(impressions))
 * ```
 *
 * @since 0.1.0
 * @category keyed
 */
export const join: {
  <K, W>(that: DStream<readonly [K, W]>): <V>(self: DStream<readonly [K, V]>) => DStream<readonly [K, readonly [V, W]]>
  <K, V, W>(self: DStream<readonly [K, V]>, that: DStream<readonly [K, W]>): DStream<readonly [K, readonly [V, W]]>
} = dual(2, joinWith("inner"))

/**
 * Left outer join: every left pair, with `Option.none()` when the key has no right value.
 *
 * @example
 * ```ts
 * orders.pipe(DStream.leftOuterJoin(payments))
 * ```
 *
 * @since 0.1.0
 * @category keyed
 */
export const leftOuterJoin: {
  <K, W>(
    that: DStream<readonly [K, W]>,
  ): <V>(self: DStream<readonly [K, V]>) => DStream<readonly [K, readonly [V, Option.Option<W>]]>
  <K, V, W>(
    self: DStream<readonly [K, V]>,
    that: DStream<readonly [K, W]>,
  ): DStream<readonly [K, readonly [V, Option.Option<W>]]>
} = dual(2, joinWith("left"))

/**
 * Right outer join: every right pair, with `Option.none()` when the key has no left value.
 *
 * @example
 * ```ts
 * orders.pipe(DStream.rightOuterJoin(payments))
 * ```
 *
 * @since 0.1.0
 * @category keyed
 */
export const rightOuterJoin: {
  <K, W>(
    that: DStream<readonly [K, W]>,
  ): <V>(self: DStream<readonly [K, V]>) => DStream<readonly [K, readonly [Option.Option<V>, W]]>
  <K, V, W>(
    self: DStream<readonly [K, V]>,
    that: DStream<readonly [K, W]>,
  ): DStream<readonly [K, readonly [Option.Option<V>, W]]>
} = dual(2, joinWith("right"))

/**
 * Full outer join: every key of either side; the missing side is `Option.none()`.
 *
 * @example
 * ```ts
 * a.pipe(DStream.fullOuterJoin(b))
 * ```
 *
 * @since 0.1.0
 * @category keyed
 */
export const fullOuterJoin: {
  <K, W>(
    that: DStream<readonly [K, W]>,
  ): <V>(self: DStream<readonly [K, V]>) => DStream<readonly [K, readonly [Option.Option<V>, Option.Option<W>]]>
  <K, V, W>(
    self: DStream<readonly [K, V]>,
    that: DStream<readonly [K, W]>,
  ): DStream<readonly [K, readonly [Option.Option<V>, Option.Option<W>]]>
} = dual(2, joinWith("full"))

/**
 * Groups both streams' values per key: `[k, [vs, ws]]`; a key on one side only gets an empty
 * array on the other.
 *
 * @example
 * ```ts
 * a.pipe(DStream.cogroup(b))
 * ```
 *
 * @since 0.1.0
 * @category keyed
 */
export const cogroup: {
  <K, W>(
    that: DStream<readonly [K, W]>,
  ): <V>(self: DStream<readonly [K, V]>) => DStream<readonly [K, readonly [ReadonlyArray<V>, ReadonlyArray<W>]]>
  <K, V, W>(
    self: DStream<readonly [K, V]>,
    that: DStream<readonly [K, W]>,
  ): DStream<readonly [K, readonly [ReadonlyArray<V>, ReadonlyArray<W>]]>
} = dual(
  2,
  <K, V, W>(self: DStream<readonly [K, V]>, that: DStream<readonly [K, W]>) =>
    batchNode<readonly [K, readonly [ReadonlyArray<V>, ReadonlyArray<W>]]>(
      [self, that],
      ([a, b]) => {
        const ls = groupSide(a as ReadonlyArray<readonly [K, V]>)
        const rs = groupSide(b as ReadonlyArray<readonly [K, W]>)
        const out: Array<readonly [K, readonly [ReadonlyArray<V>, ReadonlyArray<W>]]> = []
        ls.forEach((vs, k) => out.push([k, [vs, rs.get(k) ?? []]]))
        rs.forEach((ws, k) => {
          if (!ls.has(k)) out.push([k, [[], ws]])
        })
        return out
      },
      "CoGroupedDStream",
      "Could not generate a batch from a parent for cogrouping at time",
    ),
)

// ---- output operations ------------------------------------------------------------------------

/**
 * The output's result as an Effect. The context's services (`R`) are provided to every job at
 * run time with the platform's, so here the requirement is the platform's only.
 */
const toEffect = <R, E>(result: OutputResult<R, E>): Effect.Effect<void, unknown, Env> =>
  Effect.isEffect(result) ? Effect.asVoid(result as Effect.Effect<unknown, E, Env>) : Effect.void

/** The handle of an output registered as `node`. */
const outputHandle = <E>(node: OutputNode<any>, name: string): Output<E> => {
  const graphOutputs = (node.ctx as { readonly graph?: { readonly outputs: ReadonlyArray<unknown> } }).graph?.outputs
  const id = graphOutputs === undefined ? -1 : graphOutputs.indexOf(node)
  return {
    id,
    name,
    isFailure: (error: unknown): error is BatchJobError<E> =>
      error instanceof BatchJobError && error.origin === "output" && error.outputId === id,
  }
}

/**
 * Registers an output operation running `f` on every batch with its time; `f` may return an
 * Effect. A failure (or a run longer than the timeout) is handled by the failure policy: by
 * default it stops the context and surfaces in `awaitTermination`.
 *
 * @example
 * ```ts
 * counts.pipe(DStream.foreachBatch((batch, time) => Console.log(time, batch.length)))
 * ```
 *
 * @since 0.1.0
 * @category output
 */
export const foreachBatch: {
  <A, R = never, E = never>(
    f: (batch: ReadonlyArray<A>, time: number) => OutputResult<R, E>,
    options?: OutputOptions,
  ): (self: DStream<A, R>) => Output<E>
  <A, R = never, E = never>(
    self: DStream<A, R>,
    f: (batch: ReadonlyArray<A>, time: number) => OutputResult<R, E>,
    options?: OutputOptions,
  ): Output<E>
} = dual((args) => isDStream(args[0]), <A, R, E>(
  self: DStream<A, R>,
  f: (batch: ReadonlyArray<A>, time: number) => OutputResult<R, E>,
  options?: OutputOptions,
): Output<E> => {
  const node = new OutputNode<A>(
    self.node,
    (batch, time) => Effect.suspend(() => toEffect(f(batch, time))),
    "foreachBatch",
    outputSettings(options),
  )
  return outputHandle<E>(node, "foreachBatch")
})

/**
 * Alias of {@link foreachBatch} (Spark's name).
 *
 * @example
 * ```ts
 * counts.pipe(DStream.foreachRDD((batch) => console.log(batch)))
 * ```
 *
 * @since 0.1.0
 * @category output
 */
export const foreachRDD: typeof foreachBatch = foreachBatch

/**
 * Prints the first `num` (default 10) elements of every batch in Spark's format: 43 dashes,
 * `Time: <ms> ms`, 43 dashes, the elements, `...` when there are more, a blank line. The
 * header prints for empty batches too.
 *
 * @example
 * ```ts
 * counts.pipe(DStream.print())
 * ```
 *
 * @since 0.1.0
 * @category output
 */
export const print: {
  (num?: number, options?: OutputOptions): <A>(self: DStream<A>) => void
  <A>(self: DStream<A>, num?: number, options?: OutputOptions): void
} = dual((args) => isDStream(args[0]), <A>(self: DStream<A>, num = 10, options?: OutputOptions): void => {
  if (!Number.isInteger(num) || num < 0) {
    throw new ValidationError({ message: `Number of elements to print must be a non-negative integer: ${num}` })
  }
  new OutputNode<A>(
    self.node,
    (batch, time) => Console.log(formatPrintBlock(time, batch, num).slice(0, -1)),
    "print",
    outputSettings(options),
  )
})

/**
 * Spark's `rddToFileName`: `prefix-<ms>[.suffix]`, without the dash when the prefix is empty.
 *
 * @since 0.1.0
 * @category output
 */
export const batchFileName = (prefix: string, suffix: string | undefined, time: number): string => {
  let name = String(time)
  if (prefix.length > 0) name = `${prefix}-${name}`
  if (suffix !== undefined && suffix.length > 0) name = `${name}.${suffix}`
  return name
}

/**
 * Writes every batch (empty ones too) to the directory `prefix-<ms>[.suffix]` holding
 * `part-00000` and `_SUCCESS`. Each element is written whole, formatted as `print` does, and
 * followed by `\n`; as in Spark (which writes each record's `toString`), an element whose text
 * holds line breaks spans several lines, so map elements to an escaped form (e.g.
 * `JSON.stringify`) first when the file must hold one element per line. The directory is
 * written under a temporary name and renamed into place, so readers never see a partial batch;
 * a re-run batch (after recovery) replaces it.
 *
 * @example
 * ```ts
 * counts.pipe(DStream.saveAsTextFiles("out/counts", "txt"))
 * ```
 *
 * @since 0.1.0
 * @category output
 */
export const saveAsTextFiles: {
  (prefix: string, suffix?: string, options?: OutputOptions): <A>(self: DStream<A>) => void
  <A>(self: DStream<A>, prefix: string, suffix?: string, options?: OutputOptions): void
} = dual((args) => isDStream(args[0]), <A>(
  self: DStream<A>,
  prefix: string,
  suffix?: string,
  options?: OutputOptions,
): void => {
  const node = new OutputNode<A>(
    self.node,
    (batch, time) =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const path = yield* Path.Path
        const target = batchFileName(prefix, suffix, time)
        const dir = path.dirname(target)
        yield* fs.makeDirectory(dir, { recursive: true })
        const tmp = path.join(dir, `.${path.basename(target)}.tmp-${Date.now()}-${Math.random().toString(36).slice(2)}`)
        yield* fs.makeDirectory(tmp)
        let text = ""
        for (let i = 0; i < batch.length; i++) text += formatLine(batch[i]) + "\n"
        yield* fs.writeFileString(path.join(tmp, "part-00000"), text)
        yield* fs.writeFileString(path.join(tmp, "_SUCCESS"), "")
        if (yield* fs.exists(target)) yield* fs.remove(target, { recursive: true })
        yield* fs.rename(tmp, target)
      }),
    "saveAsTextFiles",
    outputSettings(options),
  )
  node.fileSystemUser = `saveAsTextFiles("${prefix}")`
})

const formatLine = (u: unknown): string => formatElement(u)

/**
 * The stream's batches as an Effect `Stream` of `[time, batch]`, for composition with other
 * Effect code. Registers an output operation, so call it before `start`. A bounded buffer
 * (default 16 batches) applies backpressure: a batch's job waits while the consumer is
 * behind. The stream ends when the context stops.
 *
 * @example
 * ```ts
 * const results = counts.pipe(DStream.toStream())
 * yield* ssc.start
 * yield* results.pipe(Stream.take(3), Stream.runCollect)
 * ```
 *
 * @since 0.1.0
 * @category output
 */
export const toStream: {
  (
    options?: ToStreamOptions,
  ): <A>(self: DStream<A>) => Stream.Stream<readonly [number, ReadonlyArray<A>]>
  <A>(self: DStream<A>, options?: ToStreamOptions): Stream.Stream<readonly [number, ReadonlyArray<A>]>
} = dual((args) => isDStream(args[0]), <A>(self: DStream<A>, options?: ToStreamOptions) => {
  const capacity = options?.capacity ?? 16
  const queue = Effect.runSync(Queue.bounded<readonly [number, ReadonlyArray<A>], Cause.Done>(capacity))
  const node = new OutputNode<A>(
    self.node,
    (batch, time) => Queue.offer(queue, [time, batch]),
    "toStream",
    outputSettings(options),
  )
  node.ctx.onStop(() => Queue.end(queue))
  return Stream.fromQueue(queue)
})

// ---- stateful operators (keyed state; see lib/State.ts) ------------------------------------------

class MapWithStateDStreamImpl<K, S, T> extends DStreamImpl<T> implements MapWithStateDStream<K, S, T> {
  constructor(readonly stateNode: MapWithStateNode<K, any, S, T>) {
    super(stateNode)
  }
  stateSnapshots(): DStream<readonly [K, S]> {
    return fromNode(new StateSnapshotsNode<K, S>(this.stateNode))
  }
}

/**
 * Spark's `updateStateByKey`: keeps a state per key across batches. Every batch, `update` is
 * called for every key with state or data (with empty `values` when the key has no data) and
 * returns the new state, or `Option.none()` to remove the key; the batch is the whole state.
 * Also with an options object whose `update` gets the batch time and key (Spark 2.2's
 * overload). Requires `ssc.checkpoint(directory)`.
 *
 * @example
 * ```ts
 * const counts = pairs.pipe(DStream.updateStateByKey((values: ReadonlyArray<number>, state: Option.Option<number>) =>
 *   Option.some(values.reduce((a, b) => a + b, Option.getOrElse(state, () => 0)))))
 * ```
 *
 * @since 0.1.0
 * @category state
 */
export const updateStateByKey: {
  <V, S, K = unknown>(
    update: (values: ReadonlyArray<V>, state: Option.Option<S>) => Option.Option<S>,
    options?: UpdateStateOptions<K, S>,
  ): (self: DStream<readonly [K, V]>) => DStream<readonly [K, S]>
  <K, V, S>(options: UpdateStateWithTime<K, V, S>): (self: DStream<readonly [K, V]>) => DStream<readonly [K, S]>
  <K, V, S>(
    self: DStream<readonly [K, V]>,
    update: (values: ReadonlyArray<V>, state: Option.Option<S>) => Option.Option<S>,
    options?: UpdateStateOptions<K, S>,
  ): DStream<readonly [K, S]>
  <K, V, S>(self: DStream<readonly [K, V]>, options: UpdateStateWithTime<K, V, S>): DStream<readonly [K, S]>
} = dual(
  (args) => isDStream(args[0]),
  <K, V, S>(
    self: DStream<readonly [K, V]>,
    update: ((values: ReadonlyArray<V>, state: Option.Option<S>) => Option.Option<S>) | UpdateStateWithTime<K, V, S>,
    options?: UpdateStateOptions<K, S>,
  ): DStream<readonly [K, S]> => {
    const opts: UpdateStateOptions<K, S> | undefined = typeof update === "function" ? options : update
    const fn = typeof update === "function"
      ? (_t: number, _k: K, values: ReadonlyArray<V>, state: Option.Option<S>) => update(values, state)
      : update.update
    const initial = opts?.initialState === undefined ? undefined : Array.from(opts.initialState)
    const codecs = makeCodecs<K, S>({ key: opts?.schemas?.key, state: opts?.schemas?.state })
    return fromNode(new UpdateStateNode<K, V, S>(self.node, fn, initial, codecs, opts?.name))
  },
)

/**
 * Spark's `mapWithState`: keeps a state per key; the spec's function is called once per record
 * of each batch with the key's `State` (and once more, with `isTimingOut()`, for a key idle
 * longer than the spec's timeout), and the batch is what it emits. Per-batch work is
 * proportional to the records, not to the number of keys in the state. Requires
 * `ssc.checkpoint(directory)`.
 *
 * @example
 * ```ts
 * const spec = StateSpec.function((key: string, one: Option.Option<number>, state: State.State<number>) => {
 *   state.update(Option.getOrElse(one, () => 0) + Option.getOrElse(state.getOption(), () => 0))
 *   return [key, state.get()] as const
 * })
 * const running = pairs.pipe(DStream.mapWithState(spec))
 * ```
 *
 * @since 0.1.0
 * @category state
 */
export const mapWithState: {
  <K, V, S, T>(spec: StateSpec<K, V, S, T>): (self: DStream<readonly [K, V]>) => MapWithStateDStream<K, S, T>
  <K, V, S, T>(self: DStream<readonly [K, V]>, spec: StateSpec<K, V, S, T>): MapWithStateDStream<K, S, T>
} = dual(
  2,
  <K, V, S, T>(self: DStream<readonly [K, V]>, spec: StateSpec<K, V, S, T>): MapWithStateDStream<K, S, T> =>
    new MapWithStateDStreamImpl<K, S, T>(
      new MapWithStateNode<K, V, S, T>(
        self.node,
        spec.fn,
        spec.initial,
        spec.timeoutMillis,
        makeCodecs(spec.schemas),
        spec.checkpointName,
        spec.total,
      ),
    ),
)

/**
 * The whole state of a `mapWithState` stream after each batch (Spark's `stateSnapshots`).
 *
 * @example
 * ```ts
 * const state = DStream.stateSnapshots(pairs.mapWithState(spec))
 * ```
 *
 * @since 0.1.0
 * @category state
 */
export const stateSnapshots = <K, S, T>(self: MapWithStateDStream<K, S, T>): DStream<readonly [K, S]> =>
  self.stateSnapshots()

/**
 * Sets how often this stream's data is checkpointed (Spark's `DStream.checkpoint(interval)`);
 * must be a multiple of its slide. Returns the same stream. Only before the context starts.
 *
 * @example
 * ```ts
 * const counts = pairs.updateStateByKey(update).checkpoint("5 seconds")
 * ```
 *
 * @since 0.1.0
 * @category state
 */
export const checkpoint: {
  (interval: Duration.Input): <Self extends DStream<unknown>>(self: Self) => Self
  <Self extends DStream<unknown>>(self: Self, interval: Duration.Input): Self
} = dual(2, <Self extends DStream<unknown>>(self: Self, interval: Duration.Input): Self => {
  if (self.node.ctx.lifecycle() !== "INITIALIZED") {
    throw new IllegalStateError({
      message: "Cannot change the checkpoint interval of a DStream after the streaming context has started",
    })
  }
  self.node.checkpointMillis = Time.millis(interval, "Checkpoint interval")
  return self
})
