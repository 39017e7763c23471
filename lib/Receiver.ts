/**
 * The receiver contract: a source of records that runs as a scoped Effect resource
 * (acquire = Spark's `onStart`, release = `onStop`) and hands records to the engine with
 * `store`. The engine runs each receiver in its own supervised fiber and restarts it with a
 * `Schedule` when it fails or ends.
 *
 * @module
 */
import { Duration, Effect, Schedule } from "effect"
import type { Scope } from "effect"
import { ReceiverError } from "./Errors.ts"

/**
 * Handed to a receiver's `run`: call it to store one record (`yield* store(line)`), or use
 * its members to store many, report errors, restart, or ask whether the receiver is stopping.
 *
 * @since 0.1.0
 * @category models
 */
export interface Store<A> {
  /** Store one record; it belongs to the batch whose time comes next. */
  (record: A): Effect.Effect<void>
  /** Store many records at once (cheaper than one by one). */
  readonly all: (records: ReadonlyArray<A>) => Effect.Effect<void>
  /** Report a non-fatal error: published as a receiver-error event, receiving continues. */
  readonly reportError: (message: string, cause?: unknown) => Effect.Effect<void>
  /**
   * Ask the supervisor to restart the receiver: its scope is closed (Spark's `onStop`), then
   * after `delay` (default: the receiver's restart schedule) `run` is called again.
   */
  readonly restart: (message: string, cause?: unknown, delay?: Duration.Input) => Effect.Effect<never, ReceiverError>
  /** `true` once the context is stopping the receiver. */
  readonly isStopped: Effect.Effect<boolean>
  /** Name of the receiver, for messages. */
  readonly name: string
  /** Input stream id (0, 1, 2, … in creation order). */
  readonly streamId: number
}

/**
 * A receiver: a name and a scoped `run` that loops, storing records, until it fails, ends or
 * is interrupted. Ending or failing leads to a restart after the restart schedule's delay.
 *
 * @since 0.1.0
 * @category models
 */
export interface Receiver<A> {
  readonly name: string
  readonly run: (store: Store<A>) => Effect.Effect<void, unknown, Scope.Scope>
  /** Delay policy between restarts. Default: Spark's `spark.streaming.receiverRestartDelay`, 2 s. */
  readonly restartSchedule?: Schedule.Schedule<unknown, unknown> | undefined
}

/**
 * Spark's default receiver restart delay (`spark.streaming.receiverRestartDelay`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultRestartDelay: Duration.Duration = Duration.seconds(2)

/**
 * Builds a receiver from a name and a scoped `run`.
 *
 * @example
 * ```ts
 * const numbers = Receiver.make<number>({
 *   name: "numbers",
 *   run: (store) => Effect.forever(Effect.andThen(Effect.sleep("10 millis"), store(1))),
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A>(options: {
  readonly name: string
  readonly run: (store: Store<A>) => Effect.Effect<void, unknown, Scope.Scope>
  readonly restartSchedule?: Schedule.Schedule<unknown, unknown> | undefined
}): Receiver<A> => options

/** @internal */
export const restartFailure = (
  receiver: string,
  message: string,
  cause?: unknown,
  delay?: Duration.Input,
): Effect.Effect<never, ReceiverError> =>
  Effect.fail(
    new ReceiverError({
      receiver,
      message,
      cause,
      restartDelayMillis: delay === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(delay)),
    }),
  )

/** @internal */
export const defaultRestartSchedule: Schedule.Schedule<unknown, unknown> = Schedule.spaced(defaultRestartDelay)
