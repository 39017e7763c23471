/**
 * Event time: watermarks, event-time windows (tumbling, sliding, session) and late data, with
 * Structured Streaming's rules.
 *
 * - `stream.withWatermark(eventTime, delay)` marks each record's event time (epoch ms). After
 *   every batch the watermark becomes `max(event time seen) − delay`, never decreasing; it is
 *   applied from the next batch, kept in checkpoints and restored on recovery.
 * - On a keyed watermarked stream, `reduceByEventWindow`, `aggregateByEventWindow` and
 *   `countByEventWindow` aggregate per key and window. Windows are any durations, not tied to
 *   the batch interval. A window is final once `watermark ≥ window end` (a session's end is its
 *   last event + gap); its state is dropped then.
 * - `"append"` mode emits each window once, when it is final; `"update"` mode emits, every
 *   batch, the windows that batch changed.
 * - A record whose window is already final (its end ≤ the watermark in effect) is late: it goes
 *   to the `late()` side stream with its window and the watermark, and is counted in
 *   `progress()`; it never disappears silently.
 *
 * @example
 * ```ts
 * import { EventTime } from "effect-dstream"
 *
 * const counts = events
 *   .withWatermark((e) => e.time, "10 seconds")
 *   .keyBy((e) => e.word)
 *   .countByEventWindow(EventTime.tumbling("1 minute"))
 * counts.print()
 * counts.late().print()
 * ```
 *
 * @module
 */
import { Duration } from "effect"
import { dual } from "effect/Function"
import * as DStream from "./_internal/dstream.ts"
import type {
  AggregateOptions,
  EventWindowDStream,
  LateRecord,
  WatermarkedDStream,
  WatermarkOptions,
  WindowOptions,
  WindowProgress,
  WindowSpec,
} from "./_internal/dstream.ts"
import { ValidationError } from "./Errors.ts"
import * as Time from "./Time.ts"
import {
  type Aggregation,
  EventWindowNode,
  LateRecordsNode,
  ProgressNode,
  WatermarkNode,
} from "./_internal/eventTime.ts"
import { PipeNode } from "./_internal/node.ts"
import { makeCodecs } from "./_internal/state.ts"

export {
  /**
   * A record's event time is not finite epoch milliseconds. Fails the batch.
   *
   * @since 0.1.0
   * @category errors
   */
  EventTimeError,
} from "./_internal/eventTime.ts"

// ---- models (declared with the DStream interface, whose methods mention them) ----------------

export type {
  AggregateOptions,
  EventWindowDStream,
  LateRecord,
  OutputMode,
  WatermarkedDStream,
  WatermarkOptions,
  WindowOptions,
  WindowProgress,
  WindowResult,
  WindowSpec,
} from "./_internal/dstream.ts"

// ---- windows ----------------------------------------------------------------------------------

const nonNegativeMillis = (input: Duration.Input, what: string): number => {
  let ms: number
  try {
    ms = Duration.toMillis(Duration.fromInputUnsafe(input))
  } catch {
    throw new ValidationError({ message: `${what} is not a valid duration: ${JSON.stringify(input)}` })
  }
  if (!Number.isFinite(ms) || ms < 0 || Math.round(ms) !== ms) {
    throw new ValidationError({
      message: `${what} must be zero or a positive whole number of milliseconds: ${JSON.stringify(input)}`,
    })
  }
  return ms
}

/**
 * Fixed, non-overlapping windows `[k·size + offset, (k+1)·size + offset)` of event time.
 *
 * @example
 * ```ts
 * EventTime.tumbling("1 minute")
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const tumbling = (size: Duration.Input, offset: Duration.Input = 0): WindowSpec => {
  const ms = Time.millis(size, "Window size")
  return {
    _tag: "Tumbling",
    assigner: { _tag: "Sliding", size: ms, slide: ms, offset: nonNegativeMillis(offset, "Window offset") % ms },
  }
}

/**
 * Overlapping windows of `size` starting every `slide` (a record is in `size / slide` windows).
 *
 * @example
 * ```ts
 * EventTime.sliding("10 minutes", "5 minutes")
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const sliding = (size: Duration.Input, slide: Duration.Input, offset: Duration.Input = 0): WindowSpec => {
  const sizeMs = Time.millis(size, "Window size")
  const slideMs = Time.millis(slide, "Window slide")
  if (slideMs > sizeMs) {
    throw new ValidationError({
      message: `The window slide (${Time.format(slideMs)}) is longer than the window size (${
        Time.format(sizeMs)
      }); records between windows would be lost`,
    })
  }
  return {
    _tag: "Sliding",
    assigner: {
      _tag: "Sliding",
      size: sizeMs,
      slide: slideMs,
      offset: nonNegativeMillis(offset, "Window offset") % slideMs,
    },
  }
}

/**
 * Session windows: a key's records closer than `gap` to each other form one session
 * `[first event, last event + gap)`; sessions merge when their gaps overlap.
 *
 * @example
 * ```ts
 * EventTime.session("30 minutes")
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const session = (gap: Duration.Input): WindowSpec => ({
  _tag: "Session",
  assigner: { _tag: "Session", gap: Time.millis(gap, "Session gap") },
})

// ---- watermarked streams ----------------------------------------------------------------------

interface Internals {
  readonly watermark: WatermarkNode<any>
  readonly eventTime: (a: any) => number
}

const internals = new WeakMap<object, Internals>()

const internalsOf = (self: DStream.DStream<unknown>): Internals => {
  const i = internals.get(self)
  if (i === undefined) {
    throw new ValidationError({
      message: "Event-time windows need a stream with a watermark: call withWatermark(eventTime, delay) first",
    })
  }
  return i
}

/**
 * `true` for streams returned by `withWatermark` (and their `keyBy` / `filter`).
 *
 * @since 0.1.0
 * @category guards
 */
export const isWatermarked = (u: unknown): u is WatermarkedDStream<unknown> =>
  typeof u === "object" && u !== null && internals.has(u)

const makeWatermarked = <A>(stream: DStream.DStream<A>, i: Internals): WatermarkedDStream<A> => {
  const methods = {
    keyBy<K>(f: (a: A) => K): WatermarkedDStream<readonly [K, A]> {
      return keyBy(result, f)
    },
    filter(predicate: (a: A) => boolean): WatermarkedDStream<A> {
      return makeWatermarked(DStream.fromNode<A>(stream.node).filter(predicate), i)
    },
    reduceByEventWindow<K, V>(
      this: WatermarkedDStream<readonly [K, V]>,
      window: WindowSpec,
      f: (a: V, b: V) => V,
      options?: WindowOptions<K, V>,
    ): EventWindowDStream<K, V, readonly [K, V]> {
      return reduceByWindow(this, window, f, options)
    },
    aggregateByEventWindow<K, V, C>(
      this: WatermarkedDStream<readonly [K, V]>,
      window: WindowSpec,
      initial: C,
      add: (acc: C, v: V) => C,
      options?: AggregateOptions<K, C>,
    ): EventWindowDStream<K, C, readonly [K, V]> {
      return aggregateByWindow(this, window, initial, add, options)
    },
    countByEventWindow<K, V>(
      this: WatermarkedDStream<readonly [K, V]>,
      window: WindowSpec,
      options?: WindowOptions<K, number>,
    ): EventWindowDStream<K, number, readonly [K, V]> {
      return countByWindow(this, window, options)
    },
  }
  const result: WatermarkedDStream<A> = Object.assign(stream, methods)
  internals.set(result, i)
  return result
}

/**
 * Marks each record's event time (epoch milliseconds) and tracks the watermark: after every
 * batch it becomes `max(event time seen) − delay` (never decreasing) and applies from the next
 * batch. It is kept in checkpoints and restored on recovery.
 *
 * @example
 * ```ts
 * events.pipe(EventTime.withWatermark((e: Event) => e.time, "10 seconds"))
 * ```
 *
 * @since 0.1.0
 * @category event time
 */
export const withWatermark: {
  <A>(
    eventTime: (a: A) => number,
    delay: Duration.Input,
    options?: WatermarkOptions,
  ): (self: DStream.DStream<A>) => WatermarkedDStream<A>
  <A>(
    self: DStream.DStream<A>,
    eventTime: (a: A) => number,
    delay: Duration.Input,
    options?: WatermarkOptions,
  ): WatermarkedDStream<A>
} = dual(
  (args) => DStream.isDStream(args[0]),
  <A>(
    self: DStream.DStream<A>,
    eventTime: (a: A) => number,
    delay: Duration.Input,
    options?: WatermarkOptions,
  ): WatermarkedDStream<A> => {
    if (typeof eventTime !== "function") {
      throw new ValidationError({ message: "withWatermark needs an event-time function: (record) => epoch millis" })
    }
    const idle = options?.idleAdvance === undefined ? undefined : Time.millis(options.idleAdvance, "Idle advance")
    const node = new WatermarkNode<A>(self.node, eventTime, nonNegativeMillis(delay, "Watermark delay"), idle)
    return makeWatermarked(DStream.fromNode(node), { watermark: node, eventTime })
  },
)

/**
 * Keys every record of a watermarked stream by `f` (`[f(a), a]`), keeping its event time.
 *
 * @example
 * ```ts
 * watermarked.pipe(EventTime.keyBy((e: Event) => e.user))
 * ```
 *
 * @since 0.1.0
 * @category event time
 */
export const keyBy: {
  <A, K>(f: (a: A) => K): (self: WatermarkedDStream<A>) => WatermarkedDStream<readonly [K, A]>
  <A, K>(self: WatermarkedDStream<A>, f: (a: A) => K): WatermarkedDStream<readonly [K, A]>
} = dual(2, <A, K>(self: WatermarkedDStream<A>, f: (a: A) => K): WatermarkedDStream<readonly [K, A]> => {
  const i = internalsOf(self)
  const node = PipeNode.make<A, readonly [K, A]>(self.node, (push) => (a) => push([f(a), a]), "KeyedDStream")
  const eventTime = i.eventTime
  return makeWatermarked(DStream.fromNode(node), {
    watermark: i.watermark,
    eventTime: (kv: readonly [K, A]) => eventTime(kv[1]),
  })
})

// ---- window operators -------------------------------------------------------------------------

const windowOperator = <K, V, C, R>(
  self: WatermarkedDStream<readonly [K, V]>,
  window: WindowSpec,
  aggregation: Aggregation<V, C, R>,
  options: WindowOptions<K, C> | undefined,
  what: string,
): EventWindowDStream<K, R, readonly [K, V]> => {
  const i = internalsOf(self)
  if (window.assigner._tag === "Session" && aggregation.merge === undefined) {
    throw new ValidationError({
      message: `${what} over session windows needs a merge function: pass { merge: (a, b) => … } in its options`,
    })
  }
  const mode = options?.mode ?? "append"
  if (mode !== "append" && mode !== "update") {
    throw new ValidationError({ message: `Unknown output mode: "${String(mode)}"; use "append" or "update"` })
  }
  const codecs = makeCodecs<K, C>({ key: options?.schemas?.key, state: options?.schemas?.accumulator })
  const node = new EventWindowNode<K, V, C, R>(
    self.node,
    i.watermark,
    i.eventTime,
    window.assigner,
    aggregation,
    mode,
    codecs,
    options?.name,
  )
  return Object.assign(DStream.fromNode(node), {
    late: (): DStream.DStream<LateRecord<readonly [K, V]>> => DStream.fromNode(new LateRecordsNode(node)),
    progress: (): DStream.DStream<WindowProgress> => DStream.fromNode(new ProgressNode(node)),
  })
}

const isWindowSpec = (u: unknown): u is WindowSpec => typeof u === "object" && u !== null && "assigner" in u

/**
 * Reduces each key's values per event-time window with `f` (associative; also used to merge
 * sessions). Requires `ssc.checkpoint(directory)`, like every keyed state.
 *
 * @example
 * ```ts
 * pairs.pipe(EventTime.reduceByWindow(EventTime.tumbling("1 minute"), (a: number, b: number) => a + b))
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const reduceByWindow: {
  <K, V>(
    window: WindowSpec,
    f: (a: V, b: V) => V,
    options?: WindowOptions<K, V>,
  ): (self: WatermarkedDStream<readonly [K, V]>) => EventWindowDStream<K, V, readonly [K, V]>
  <K, V>(
    self: WatermarkedDStream<readonly [K, V]>,
    window: WindowSpec,
    f: (a: V, b: V) => V,
    options?: WindowOptions<K, V>,
  ): EventWindowDStream<K, V, readonly [K, V]>
} = dual(
  (args) => !isWindowSpec(args[0]),
  <K, V>(
    self: WatermarkedDStream<readonly [K, V]>,
    window: WindowSpec,
    f: (a: V, b: V) => V,
    options?: WindowOptions<K, V>,
  ): EventWindowDStream<K, V, readonly [K, V]> =>
    windowOperator<K, V, V, V>(
      self,
      window,
      {
        first: (v) => v,
        add: f,
        merge: f,
        finish: (c) => c,
      },
      options,
      "reduceByEventWindow",
    ),
)

/**
 * Folds each key's values per event-time window: `add(initial, v1)`, then `add(acc, v2)`, …
 * (`add` must return a new accumulator, not mutate `initial`). Session windows also need
 * `options.merge`.
 *
 * @example
 * ```ts
 * pairs.pipe(EventTime.aggregateByWindow(EventTime.sliding("10 minutes", "5 minutes"), 0, (n, e: Event) => n + e.bytes))
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const aggregateByWindow: {
  <K, V, C>(
    window: WindowSpec,
    initial: C,
    add: (acc: C, v: V) => C,
    options?: AggregateOptions<K, C>,
  ): (self: WatermarkedDStream<readonly [K, V]>) => EventWindowDStream<K, C, readonly [K, V]>
  <K, V, C>(
    self: WatermarkedDStream<readonly [K, V]>,
    window: WindowSpec,
    initial: C,
    add: (acc: C, v: V) => C,
    options?: AggregateOptions<K, C>,
  ): EventWindowDStream<K, C, readonly [K, V]>
} = dual(
  (args) => !isWindowSpec(args[0]),
  <K, V, C>(
    self: WatermarkedDStream<readonly [K, V]>,
    window: WindowSpec,
    initial: C,
    add: (acc: C, v: V) => C,
    options?: AggregateOptions<K, C>,
  ): EventWindowDStream<K, C, readonly [K, V]> =>
    windowOperator<K, V, C, C>(
      self,
      window,
      {
        first: (v) => add(initial, v),
        add,
        merge: options?.merge,
        finish: (c) => c,
      },
      options,
      "aggregateByEventWindow",
    ),
)

const one = () => 1
const inc = (n: number) => n + 1
const plus = (a: number, b: number) => a + b
const same = (n: number) => n

/**
 * Counts each key's records per event-time window.
 *
 * @example
 * ```ts
 * pairs.pipe(EventTime.countByWindow(EventTime.session("30 minutes"), { mode: "update" }))
 * ```
 *
 * @since 0.1.0
 * @category windowing
 */
export const countByWindow: {
  <K>(
    window: WindowSpec,
    options?: WindowOptions<K, number>,
  ): <V>(self: WatermarkedDStream<readonly [K, V]>) => EventWindowDStream<K, number, readonly [K, V]>
  <K, V>(
    self: WatermarkedDStream<readonly [K, V]>,
    window: WindowSpec,
    options?: WindowOptions<K, number>,
  ): EventWindowDStream<K, number, readonly [K, V]>
} = dual(
  (args) => !isWindowSpec(args[0]),
  <K, V>(
    self: WatermarkedDStream<readonly [K, V]>,
    window: WindowSpec,
    options?: WindowOptions<K, number>,
  ): EventWindowDStream<K, number, readonly [K, V]> =>
    windowOperator<K, V, number, number>(
      self,
      window,
      { first: one, add: inc, merge: plus, finish: same },
      options,
      "countByEventWindow",
    ),
)

/**
 * The records an event-time window operator dropped as late, per batch.
 *
 * @example
 * ```ts
 * counts.pipe(EventTime.late).print()
 * ```
 *
 * @since 0.1.0
 * @category event time
 */
export const late = <K, R, In>(self: EventWindowDStream<K, R, In>): DStream.DStream<LateRecord<In>> => self.late()

/**
 * One {@link WindowProgress} per batch of an event-time window operator (watermark, late
 * records, emitted and open windows).
 *
 * @example
 * ```ts
 * counts.pipe(EventTime.progress).print()
 * ```
 *
 * @since 0.1.0
 * @category event time
 */
export const progress = <K, R, In>(self: EventWindowDStream<K, R, In>): DStream.DStream<WindowProgress> =>
  self.progress()
