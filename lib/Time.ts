/**
 * Batch times and durations. A batch time is epoch milliseconds (Spark's `Time`), printed as
 * `"<ms> ms"`; durations are accepted as any `Duration.Input` ("1 second", 500, …).
 *
 * @module
 */
import { Duration } from "effect"
import { ValidationError } from "./Errors.ts"

/**
 * A batch time in epoch milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export type Time = number

/**
 * Converts a `Duration.Input` to whole milliseconds; throws a `ValidationError` naming the
 * input when it is not a positive finite duration.
 *
 * @example
 * ```ts
 * Time.millis("2 seconds") // 2000
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const millis = (input: Duration.Input, what = "Duration"): number => {
  let ms: number
  try {
    ms = Duration.toMillis(Duration.fromInputUnsafe(input))
  } catch {
    throw new ValidationError({ message: `${what} is not a valid duration: ${JSON.stringify(input)}` })
  }
  if (!Number.isFinite(ms) || ms <= 0 || Math.round(ms) !== ms) {
    throw new ValidationError({
      message: `${what} must be a positive whole number of milliseconds: ${JSON.stringify(input)}`,
    })
  }
  return ms
}

/**
 * Formats a time or duration the way Spark prints it: `"1000 ms"`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (ms: number): string => `${ms} ms`

/**
 * `true` when `ms` is a whole multiple of `of` (Spark's `Duration.isMultipleOf`).
 *
 * @since 0.1.0
 * @category predicates
 */
export const isMultipleOf = (ms: number, of: number): boolean => ms % of === 0

/**
 * Floors `t` to the slide grid anchored at `zero` (Spark's `Time.floor(slide, zeroTime)`).
 *
 * @since 0.1.0
 * @category math
 */
export const floor = (t: number, slide: number, zero: number): number => zero + Math.floor((t - zero) / slide) * slide
