/**
 * Backpressure's rate estimator (Spark's `PIDRateEstimator`): from each completed batch's
 * size and delays it computes the ingestion rate (records per second) a receiver should be
 * held to so that batches finish within the batch interval.
 *
 * @module
 */
import { ValidationError } from "./Errors.ts"

/**
 * The PID controller's gains and floor, with Spark's defaults
 * (`spark.streaming.backpressure.pid.*`).
 *
 * @since 0.1.0
 * @category models
 */
export interface PIDOptions {
  /** Weight of the current error (default 1.0). */
  readonly proportional?: number | undefined
  /** Weight of the accumulated error, i.e. the scheduling delay (default 0.2). */
  readonly integral?: number | undefined
  /** Weight of the error's rate of change (default 0.0). */
  readonly derivative?: number | undefined
  /** The estimate never goes below this many records per second (default 100). */
  readonly minRate?: number | undefined
}

/**
 * A stateful rate estimator: feed it every completed batch, in order.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateEstimator {
  /**
   * The new rate bound in records/s, or `undefined` when there is no estimate: on the first
   * call, when `time` is not later than the previous call's, or when the batch had no records
   * or no processing delay.
   */
  readonly compute: (
    time: number,
    numElements: number,
    processingDelayMillis: number,
    schedulingDelayMillis: number,
  ) => number | undefined
}

/**
 * Spark's defaults for the PID estimator.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPIDOptions: Required<PIDOptions> = {
  proportional: 1.0,
  integral: 0.2,
  derivative: 0.0,
  minRate: 100,
}

/**
 * Spark's `PIDRateEstimator` for a batch interval, with Spark's range checks (a
 * `ValidationError` is thrown for a non-positive batch interval or minimum rate, or a
 * negative gain).
 *
 * @example
 * ```ts
 * const pid = RateEstimator.pid(1000)
 * pid.compute(1000, 5000, 800, 0) // undefined: the first batch only sets the baseline
 * pid.compute(2000, 5000, 1000, 0) // 5000
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const pid = (batchIntervalMillis: number, options?: PIDOptions): RateEstimator => {
  const proportional = options?.proportional ?? defaultPIDOptions.proportional
  const integral = options?.integral ?? defaultPIDOptions.integral
  const derivative = options?.derivative ?? defaultPIDOptions.derivative
  const minRate = options?.minRate ?? defaultPIDOptions.minRate
  const ensure = (ok: boolean, message: string) => {
    if (!ok) throw new ValidationError({ message })
  }
  ensure(batchIntervalMillis > 0, `Specified batch interval ${batchIntervalMillis} in PIDRateEstimator is invalid`)
  ensure(proportional >= 0, `Proportional term ${proportional} in PIDRateEstimator should be >= 0`)
  ensure(integral >= 0, `Integral term ${integral} in PIDRateEstimator should be >= 0`)
  ensure(derivative >= 0, `Derivative term ${derivative} in PIDRateEstimator should be >= 0`)
  ensure(minRate > 0, `Minimum rate in PIDRateEstimator should be > 0`)

  let firstRun = true
  let latestTime = -1
  let latestRate = -1
  let latestError = -1

  const compute = (
    time: number,
    numElements: number,
    processingDelay: number,
    schedulingDelay: number,
  ): number | undefined => {
    if (!(time > latestTime && numElements > 0 && processingDelay > 0)) return undefined
    // in seconds, should be close to the batch interval
    const delaySinceUpdate = (time - latestTime) / 1000
    // records/s processed in the last batch
    const processingRate = numElements / processingDelay * 1000
    // positive when we ingest faster than we process
    const error = latestRate - processingRate
    // records that piled up during the scheduling delay, per batch interval
    const historicalError = schedulingDelay * processingRate / batchIntervalMillis
    const dError = (error - latestError) / delaySinceUpdate
    const newRate = Math.max(
      latestRate - proportional * error - integral * historicalError - derivative * dError,
      minRate,
    )
    latestTime = time
    if (firstRun) {
      latestRate = processingRate
      latestError = 0
      firstRun = false
      return undefined
    }
    latestRate = newRate
    latestError = error
    return newRate
  }
  return { compute }
}
