/**
 * Window nodes: Spark's `WindowedDStream` (the union of the parent's batches in the window)
 * and `ReducedWindowedDStream` (an incremental per-key window reduce with an inverse
 * function). A window at valid time `t` covers the parent batches with times in
 * `(t − window, t]`; windows are aligned to zero time, so the first ones are partial.
 * @internal
 */
import { Effect } from "effect"
import { IllegalStateError, ValidationError } from "../Errors.ts"
import * as Time from "../Time.ts"
import { KeyMap } from "./keyMap.ts"
import { type Batch, concatBatches, Node, type NodeEnv } from "./node.ts"

/**
 * Checks that the window and slide durations are multiples of the parent's slide; throws a
 * `ValidationError` naming both durations otherwise. Returns the slide.
 * @internal
 */
export const validateWindow = (
  kind: string,
  windowMillis: number,
  slideMillis: number,
  parentSlideMillis: number,
): number => {
  if (!Time.isMultipleOf(windowMillis, parentSlideMillis)) {
    throw new ValidationError({
      message: `Cannot create ${kind}: the window duration (${
        Time.format(windowMillis)
      }) is not a multiple of the parent DStream's slide duration (${Time.format(parentSlideMillis)})`,
    })
  }
  if (!Time.isMultipleOf(slideMillis, parentSlideMillis)) {
    throw new ValidationError({
      message: `Cannot create ${kind}: the slide duration (${
        Time.format(slideMillis)
      }) is not a multiple of the parent DStream's slide duration (${Time.format(parentSlideMillis)})`,
    })
  }
  return slideMillis
}

/**
 * The node's batches at its slide-aligned times in `[from, to]` (Spark's `slice`), in time
 * order, skipping times at or before zero time and times without a batch. Batches already
 * computed are read straight from the memo, so a slide over a long window costs no Effect per
 * batch.
 * @internal
 */
export const sliceBatches = <A>(
  node: Node<A>,
  from: number,
  to: number,
): Effect.Effect<Array<Batch<A>>, unknown, NodeEnv> => {
  const zero = node.zeroTime!
  const slide = node.slideMillis
  const start = Time.floor(from, slide, zero)
  const end = Time.floor(to, slide, zero)
  const found: Array<Batch<A> | undefined> = []
  let missing: Array<[index: number, time: number]> | undefined
  for (let t = start; t <= end; t += slide) {
    if (t <= zero) continue
    const cached = node.generated.get(t)
    if (cached === undefined) (missing ??= []).push([found.length, t])
    found.push(cached)
  }
  if (missing === undefined) return Effect.succeed(found as Array<Batch<A>>)
  return Effect.map(
    Effect.forEach(missing, ([index, t]) =>
      Effect.map(node.getOrCompute(t), (batch) => {
        found[index] = batch
      })),
    () => found.filter((b): b is Batch<A> => b !== undefined),
  )
}

/**
 * Spark's `WindowedDStream`: at each valid time `t` (a multiple of its own slide after zero
 * time) the concatenation, in time order, of the parent's batches in `(t − window, t]`; an
 * empty batch when there are none. Asks its parent to remember `remember + window`.
 * @internal
 */
export class WindowNode<A> extends Node<A> {
  readonly kind = "WindowedDStream"

  constructor(readonly parent: Node<A>, readonly windowMillis: number, slideMillis: number) {
    super(parent.ctx, [parent], validateWindow("WindowedDStream", windowMillis, slideMillis, parent.slideMillis))
  }

  override parentRememberMillis(): number {
    return this.rememberMillis! + this.windowMillis
  }

  compute(t: number): Effect.Effect<Batch<A>, unknown, NodeEnv> {
    return Effect.map(
      sliceBatches(this.parent, t - this.windowMillis + this.parent.slideMillis, t),
      (batches) => concatBatches(batches),
    )
  }
}

/** Per-key reduce of a run of already-reduced batches, in time order. */
const reduceBatches = <K, V>(
  batches: ReadonlyArray<Batch<readonly [K, V]>>,
  f: (a: V, b: V) => V,
): KeyMap<K, V> | undefined => {
  if (batches.length === 0) return undefined
  const acc = new KeyMap<K, V>()
  for (const batch of batches) {
    for (let i = 0; i < batch.length; i++) {
      const [k, v] = batch[i]
      acc.set(k, acc.has(k) ? f(acc.get(k) as V, v) : v)
    }
  }
  return acc
}

const showKey = (k: unknown): string => {
  try {
    return JSON.stringify(k) ?? String(k)
  } catch {
    return String(k)
  }
}

/**
 * Spark's `ReducedWindowedDStream` (incremental window reduce). Its parent is the per-batch
 * `reduceByKey` of the user's stream, remembered for `remember + window`. At time `t`:
 *
 * - the previous window's value (this node at `t − slide`, empty before the first window),
 * - minus (with `invF`) the reduced batches that left the window,
 * - plus (with `f`) the reduced batches that entered it,
 * - then `filter`, if given, drops pairs (Spark's `filterFunc`).
 *
 * Without a filter a key whose value returns to the inverse's zero stays, as `[k, 0]`, as in
 * Spark. Per-batch work is proportional to the data entering and leaving plus the number of
 * keys in the window (the output batch), never to the window length: the previous window's
 * table is reused in place when the windows are computed in order.
 *
 * Spark slices the leaving and entering batches as `[prevBegin, curBegin − p]` and
 * `[prevEnd + p, curEnd]`; when the window is shorter than the slide those ranges overlap on
 * the gap between windows, which double-counts keys seen only in the gap. Here the ranges are
 * clamped to the previous and the current window, which changes nothing when window ≥ slide.
 *
 * Not marked `mustCheckpoint` (no checkpoint directory is required): the previous window's
 * value stays in the memo, whose default remember duration (the slide) keeps it until the
 * next window. If it is missing although a previous window existed (a rebuilt graph), the
 * window is reduced from its batches once, without the keys Spark would keep at zero.
 * @internal
 */
export class ReducedWindowNode<K, V> extends Node<readonly [K, V]> {
  readonly kind = "ReducedWindowedDStream"
  /** The previous window's table, owned by this node, while it matches `generated`. */
  private last: { readonly time: number; readonly table: KeyMap<K, V> } | undefined

  constructor(
    readonly reduced: Node<readonly [K, V]>,
    readonly windowMillis: number,
    slideMillis: number,
    readonly f: (a: V, b: V) => V,
    readonly invF: (a: V, b: V) => V,
    readonly filter: ((kv: readonly [K, V]) => boolean) | undefined,
  ) {
    super(
      reduced.ctx,
      [reduced],
      validateWindow("ReducedWindowedDStream", windowMillis, slideMillis, reduced.slideMillis),
    )
  }

  override parentRememberMillis(): number {
    return this.rememberMillis! + this.windowMillis
  }

  compute(t: number): Effect.Effect<Batch<readonly [K, V]>, unknown, NodeEnv> {
    const p = this.reduced.slideMillis
    const curBegin = t - this.windowMillis + p
    const prevEnd = t - this.slideMillis
    const prevBegin = curBegin - this.slideMillis
    const previousKnown = prevEnd <= this.zeroTime! || this.generated.has(prevEnd) || this.last?.time === prevEnd
    if (!previousKnown) {
      // The previous window was never computed here (e.g. the graph was rebuilt after a
      // restart): reduce the whole current window once instead of recursing back to zero time.
      return Effect.flatMap(
        sliceBatches(this.reduced, curBegin, t),
        (entering) => this.merge(t, prevEnd, undefined, [], entering),
      )
    }
    return Effect.flatMap(
      this.getOrCompute(prevEnd),
      (previous) =>
        Effect.flatMap(
          sliceBatches(this.reduced, prevBegin, Math.min(curBegin - p, prevEnd)),
          (leaving) =>
            Effect.flatMap(sliceBatches(this.reduced, Math.max(prevEnd + p, curBegin), t), (entering) =>
              this.merge(t, prevEnd, previous, leaving, entering)),
        ),
    )
  }

  private merge(
    t: number,
    prevEnd: number | undefined,
    previous: Batch<readonly [K, V]> | undefined,
    leaving: ReadonlyArray<Batch<readonly [K, V]>>,
    entering: ReadonlyArray<Batch<readonly [K, V]>>,
  ): Effect.Effect<Batch<readonly [K, V]>, IllegalStateError> {
    let table: KeyMap<K, V>
    if (previous !== undefined && this.last !== undefined && this.last.time === prevEnd) {
      table = this.last.table
    } else {
      table = new KeyMap<K, V>()
      if (previous !== undefined) {
        for (let i = 0; i < previous.length; i++) table.set(previous[i][0], previous[i][1])
      }
    }
    // The table is mutated below: it belongs to no window until this one is complete.
    this.last = undefined
    const { f, invF, filter } = this
    const old = reduceBatches(leaving, f)
    const added = reduceBatches(entering, f)
    let orphan: { key: K } | undefined
    old?.forEach((o, k) => {
      if (table.has(k)) table.set(k, invF(table.get(k) as V, o))
      else if (orphan === undefined && (added === undefined || !added.has(k))) orphan = { key: k }
    })
    if (orphan !== undefined) {
      return Effect.fail(
        new IllegalStateError({
          message: `Cannot compute ReducedWindowedDStream at ${Time.format(t)}: key ${
            showKey(orphan.key)
          } left the window, but the previous window has no value for it and no new values arrived; a filter must only drop keys whose value returned to the zero of the inverse function`,
        }),
      )
    }
    added?.forEach((n, k) => {
      table.set(k, table.has(k) ? f(table.get(k) as V, n) : n)
    })
    const out: Array<readonly [K, V]> = []
    let dropped: Array<K> | undefined
    table.forEach((v, k) => {
      const kv = [k, v] as const
      if (filter === undefined || filter(kv)) out.push(kv)
      else (dropped ??= []).push(k)
    })
    if (dropped !== undefined) { for (const k of dropped) table.delete(k) }
    this.last = { time: t, table }
    return Effect.succeed(out)
  }
}
