/**
 * Windowed operators (Spark's window operations). A window at a valid batch time `t` holds the
 * parent's batches with times in `(t − windowDuration, t]`, so the first windows are partial.
 * A windowed stream produces a batch only at times where `t − zeroTime` is a multiple of its
 * slide (default: the parent's slide); at other batch times it has no batch at all, so its
 * outputs do not run. Window and slide must be multiples of the parent's slide (checked when
 * the operator is called); a window shorter than the slide is allowed and skips the gaps.
 *
 * The `invF` forms (`reduceByKeyAndWindow` with an inverse, `reduceByWindow` with an inverse,
 * `countByWindow`, `countByValueAndWindow`) are incremental: each slide adds the batches that
 * entered the window and subtracts, with the inverse function, those that left, so a batch
 * costs in proportion to that data, not to the window length.
 *
 * Every operator is also a fluent method on `DStream`.
 *
 * @module
 */
import type { Duration } from "effect"
import { dual } from "effect/Function"
import { type DStream, fromNode, type InverseOptions, isDStream } from "./_internal/dstream.ts"
import * as Time from "./Time.ts"
import { ReducedWindowNode, validateWindow, WindowNode } from "./_internal/window.ts"

export type {
  /**
   * Options of the incremental {@link reduceByKeyAndWindow}.
   *
   * @since 0.1.0
   * @category models
   */
  InverseOptions,
} from "./_internal/dstream.ts"

const durations = (
  self: DStream<unknown>,
  windowDuration: Duration.Input,
  slideDuration: Duration.Input | undefined,
): readonly [window: number, slide: number] => [
  Time.millis(windowDuration, "Window duration"),
  slideDuration === undefined ? self.node.slideMillis : Time.millis(slideDuration, "Slide duration"),
]

const plainWindow = <A>(self: DStream<A>, windowMillis: number, slideMillis: number): DStream<A> =>
  fromNode(new WindowNode(self.node, windowMillis, slideMillis))

const inverseWindow = <K, V>(
  self: DStream<readonly [K, V]>,
  f: (a: V, b: V) => V,
  invF: (a: V, b: V) => V,
  windowMillis: number,
  slideMillis: number,
  filter: ((kv: readonly [K, V]) => boolean) | undefined,
): DStream<readonly [K, V]> => {
  validateWindow("ReducedWindowedDStream", windowMillis, slideMillis, self.node.slideMillis)
  const reduced = self.reduceByKey(f)
  return fromNode(new ReducedWindowNode<K, V>(reduced.node, windowMillis, slideMillis, f, invF, filter))
}

/**
 * The batches of the last `windowDuration`, every `slideDuration` (default: the parent's
 * slide), concatenated in time order (Spark's `window`).
 *
 * @example
 * ```ts
 * // at 2 s: batches 1–2; at 4 s: batches 1–4; at 6 s: batches 3–6 (1-second batches)
 * nums.pipe(Window.window("4 seconds", "2 seconds"))
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const window: {
  (windowDuration: Duration.Input, slideDuration?: Duration.Input): <A>(self: DStream<A>) => DStream<A>
  <A>(self: DStream<A>, windowDuration: Duration.Input, slideDuration?: Duration.Input): DStream<A>
} = dual(
  (args) => isDStream(args[0]),
  <A>(self: DStream<A>, windowDuration: Duration.Input, slideDuration?: Duration.Input): DStream<A> => {
    const [w, s] = durations(self, windowDuration, slideDuration)
    return plainWindow(self, w, s)
  },
)

/**
 * Reduces every window to one element with `f`; an empty window gives an empty batch (Spark's
 * `reduceByWindow`). With an inverse function `invF` (`invF(f(a, b), b) = a`) the window is
 * maintained incrementally; that form, like Spark's, keeps emitting the inverse's zero once
 * the window is empty again.
 *
 * @example
 * ```ts
 * nums.pipe(Window.reduceByWindow((a, b) => a + b, "30 seconds", "10 seconds"))
 * nums.pipe(Window.reduceByWindow((a, b) => a + b, (a, b) => a - b, "10 minutes", "1 second"))
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const reduceByWindow: {
  <A>(
    f: (a: A, b: A) => A,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): (self: DStream<A>) => DStream<A>
  <A>(
    f: (a: A, b: A) => A,
    invF: (a: A, b: A) => A,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): (self: DStream<A>) => DStream<A>
  <A>(
    self: DStream<A>,
    f: (a: A, b: A) => A,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): DStream<A>
  <A>(
    self: DStream<A>,
    f: (a: A, b: A) => A,
    invF: (a: A, b: A) => A,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): DStream<A>
} = dual(
  (args) => isDStream(args[0]),
  <A>(self: DStream<A>, f: (a: A, b: A) => A, ...rest: ReadonlyArray<any>): DStream<A> => {
    if (typeof rest[0] === "function") {
      const invF = rest[0] as (a: A, b: A) => A
      const [w, s] = durations(self, rest[1], rest[2])
      const keyed = self.map((a): readonly [0, A] => [0, a])
      return inverseWindow<0, A>(keyed, f, invF, w, s, undefined).map((kv) => kv[1])
    }
    const [w, s] = durations(self, rest[0], rest[1])
    validateWindow("WindowedDStream", w, s, self.node.slideMillis)
    return plainWindow(self.reduce(f), w, s).reduce(f)
  },
)

/**
 * Number of elements in each window (Spark's `countByWindow`). Incremental, like Spark's: no
 * batch before the first element ever arrives, then one count per window, `0` for an empty
 * window.
 *
 * @example
 * ```ts
 * events.pipe(Window.countByWindow("1 minute", "10 seconds"))
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const countByWindow: {
  (windowDuration: Duration.Input, slideDuration?: Duration.Input): <A>(self: DStream<A>) => DStream<number>
  <A>(self: DStream<A>, windowDuration: Duration.Input, slideDuration?: Duration.Input): DStream<number>
} = dual(
  (args) => isDStream(args[0]),
  <A>(self: DStream<A>, windowDuration: Duration.Input, slideDuration?: Duration.Input): DStream<number> =>
    reduceByWindow(
      self.map(() => 1),
      (a: number, b: number) => a + b,
      (a: number, b: number) => a - b,
      windowDuration,
      slideDuration,
    ),
)

/**
 * Occurrences of each distinct element in each window, as `[element, count]` pairs (Spark's
 * `countByValueAndWindow`). Incremental; elements whose count drops to 0 are dropped.
 *
 * @example
 * ```ts
 * words.pipe(Window.countByValueAndWindow("30 seconds", "10 seconds"))
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const countByValueAndWindow: {
  (
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): <A>(self: DStream<A>) => DStream<readonly [A, number]>
  <A>(self: DStream<A>, windowDuration: Duration.Input, slideDuration?: Duration.Input): DStream<readonly [A, number]>
} = dual(
  (args) => isDStream(args[0]),
  <A>(
    self: DStream<A>,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): DStream<readonly [A, number]> => {
    const [w, s] = durations(self, windowDuration, slideDuration)
    const pairs = self.map((a): readonly [A, number] => [a, 1])
    return inverseWindow<A, number>(pairs, (a, b) => a + b, (a, b) => a - b, w, s, (kv) => kv[1] !== 0)
  },
)

/**
 * Merges the values of each key over the window with `f` (Spark's `reduceByKeyAndWindow`).
 *
 * The plain form recomputes each window from its per-batch reductions; keys without data in
 * the window disappear. The incremental form takes an inverse function `invF`
 * (`invF(f(a, b), b) = a`): each slide applies `f` to the batches entering the window and
 * `invF` to those leaving it, so a batch costs in proportion to that data plus the keys in the
 * window, not to the window length. Like Spark, it keeps keys whose value returned to the
 * inverse's zero (e.g. `["a", 0]`) unless `options.filter` drops them.
 *
 * @example
 * ```ts
 * pairs.pipe(Window.reduceByKeyAndWindow((a: number, b: number) => a + b, "30 seconds", "10 seconds"))
 * pairs.reduceByKeyAndWindow((a, b) => a + b, (a, b) => a - b, "10 minutes", "1 second", {
 *   filter: ([, n]) => n > 0,
 * })
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const reduceByKeyAndWindow: {
  <V>(
    f: (a: V, b: V) => V,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): <K>(self: DStream<readonly [K, V]>) => DStream<readonly [K, V]>
  <V>(
    f: (a: V, b: V) => V,
    invF: (a: V, b: V) => V,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): <K>(self: DStream<readonly [K, V]>) => DStream<readonly [K, V]>
  <K, V>(
    f: (a: V, b: V) => V,
    invF: (a: V, b: V) => V,
    windowDuration: Duration.Input,
    slideDuration: Duration.Input | undefined,
    options: InverseOptions<K, V>,
  ): (self: DStream<readonly [K, V]>) => DStream<readonly [K, V]>
  <K, V>(
    self: DStream<readonly [K, V]>,
    f: (a: V, b: V) => V,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): DStream<readonly [K, V]>
  <K, V>(
    self: DStream<readonly [K, V]>,
    f: (a: V, b: V) => V,
    invF: (a: V, b: V) => V,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
    options?: InverseOptions<K, V>,
  ): DStream<readonly [K, V]>
} = dual(
  (args) => isDStream(args[0]),
  <K, V>(
    self: DStream<readonly [K, V]>,
    f: (a: V, b: V) => V,
    ...rest: ReadonlyArray<any>
  ): DStream<readonly [K, V]> => {
    if (typeof rest[0] === "function") {
      const [w, s] = durations(self, rest[1], rest[2])
      const options = rest[3] as InverseOptions<K, V> | undefined
      return inverseWindow(self, f, rest[0], w, s, options?.filter)
    }
    const [w, s] = durations(self, rest[0], rest[1])
    validateWindow("WindowedDStream", w, s, self.node.slideMillis)
    return plainWindow(self.reduceByKey(f), w, s).reduceByKey(f)
  },
)

/**
 * Collects each key's values over the window, in time order (Spark's `groupByKeyAndWindow`).
 *
 * @example
 * ```ts
 * pairs.pipe(Window.groupByKeyAndWindow("2 seconds", "1 second"))
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const groupByKeyAndWindow: {
  (
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): <K, V>(self: DStream<readonly [K, V]>) => DStream<readonly [K, ReadonlyArray<V>]>
  <K, V>(
    self: DStream<readonly [K, V]>,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): DStream<readonly [K, ReadonlyArray<V>]>
} = dual(
  (args) => isDStream(args[0]),
  <K, V>(
    self: DStream<readonly [K, V]>,
    windowDuration: Duration.Input,
    slideDuration?: Duration.Input,
  ): DStream<readonly [K, ReadonlyArray<V>]> => {
    const [w, s] = durations(self, windowDuration, slideDuration)
    validateWindow("WindowedDStream", w, s, self.node.slideMillis)
    const windowed = plainWindow(self.groupByKey(), w, s)
    return windowed.combineByKey(
      // Copy first: the per-batch groups are remembered and shared by later windows.
      (vs: ReadonlyArray<V>): ReadonlyArray<V> => vs.slice(),
      (c: ReadonlyArray<V>, vs: ReadonlyArray<V>): ReadonlyArray<V> => {
        const out = c as Array<V>
        for (let i = 0; i < vs.length; i++) out.push(vs[i])
        return out
      },
      (a, b) => [...a, ...b],
    )
  },
)
