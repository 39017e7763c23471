/**
 * The batch clock: Spark's `RecurringTimer` on Effect's `Clock`. The first batch is at the
 * next multiple of the interval after "now", the zero time is one interval before it, and
 * batch k is at `zero + k·interval`. A late tick still fires with its own time — ticks are
 * never skipped or merged — so `TestClock.adjust(interval)` advances exactly one batch.
 *
 * @module
 */
import { Clock, Effect, Stream } from "effect"

/**
 * The first batch time: the next multiple of `interval` strictly after `now`.
 *
 * @example
 * ```ts
 * BatchClock.firstBatchTime(12_000, 2_000) // 14_000 (zero time 12_000)
 * ```
 *
 * @since 0.1.0
 * @category time
 */
export const firstBatchTime = (now: number, interval: number): number => (Math.floor(now / interval) + 1) * interval

/**
 * Sleeps until the clock reads at least `time` (returns at once when it already does).
 *
 * @since 0.1.0
 * @category time
 */
export const sleepUntil = (time: number): Effect.Effect<void> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => now < time ? Effect.sleep(time - now) : Effect.void)

/**
 * The batch times `first, first + interval, …` as a stream, each emitted once the clock
 * reaches it. When processing falls behind, the missed times are emitted one after another,
 * each with its own time.
 *
 * @example
 * ```ts
 * BatchClock.ticks(1000, 1000).pipe(Stream.take(3)) // 1000, 2000, 3000 as the clock passes them
 * ```
 *
 * @since 0.1.0
 * @category time
 */
export const ticks = (first: number, interval: number): Stream.Stream<number> =>
  Stream.iterate(first, (t) => t + interval).pipe(Stream.mapEffect((t) => Effect.as(sleepUntil(t), t)))
