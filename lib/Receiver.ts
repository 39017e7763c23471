/**
 * The receiver contract: a source of records that runs as a scoped Effect resource
 * (acquire = Spark's `onStart`, release = `onStop`) and hands records to the engine with
 * `store`. The engine runs each receiver in its own supervised fiber and restarts it with a
 * `Schedule` when it fails or ends.
 *
 * @module
 */
import { Context, Duration, Effect, Schedule, Stream } from "effect"
import type { Scope } from "effect"
import type * as Socket from "effect/socket/Socket"
import { ReceiverError } from "./Errors.ts"
import type { PIDOptions } from "./RateEstimator.ts"

/**
 * What a {@link SocketConnector} does: a TCP client socket to `host:port`, connecting when it
 * is run, within `openTimeout`.
 *
 * @since 0.1.0
 * @category models
 */
export interface SocketConnectorShape {
  /** A socket to `host:port`; opening it fails with a `SocketOpenError` after `openTimeout`. */
  readonly connect: (options: {
    readonly host: string
    readonly port: number
    readonly openTimeout: Duration.Input
  }) => Effect.Effect<Socket.Socket>
}

/** @internal */
export const SocketConnectorBase: Context.ServiceClass<
  SocketConnector,
  "effect-dstream/Receiver/SocketConnector",
  SocketConnectorShape
> = Context.Service<SocketConnector, SocketConnectorShape>()("effect-dstream/Receiver/SocketConnector")

/**
 * Opens the TCP connections of `socketTextStream` and `socketStream`: the platform's part of
 * the socket sources. `Runtime.layer` provides Node's (it runs on Node, Deno and Bun).
 *
 * @example
 * ```ts
 * program.pipe(Effect.provide(Runtime.layer)) // FileSystem, Path, the SocketConnector, …
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class SocketConnector extends SocketConnectorBase {}

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
 * Where a receiver's blocks live until their batch runs (Spark's `StorageLevel`):
 * `"memory"` keeps them in memory and makes `store` wait while `maxBufferedRecords` records
 * are held; `"memoryAndDisk"` writes blocks beyond that budget to files instead, so `store`
 * does not wait for memory and the heap stays bounded.
 *
 * @since 0.1.0
 * @category models
 */
export type StorageLevel = "memory" | "memoryAndDisk"

/**
 * Block, rate and storage settings of receivers (Spark's `spark.streaming.blockInterval`,
 * `receiver.maxRate`, `backpressure.*`, storage level and `receiver.writeAheadLog.enable`).
 * Set them for every receiver of a context (`StreamingContext.make({ receivers })`) or on one
 * receiver (its own settings win).
 *
 * @since 0.1.0
 * @category models
 */
export interface ReceiverSettings {
  /** How often stored records are cut into a block (default 200 ms). */
  readonly blockInterval?: Duration.Input | undefined
  /** Upper bound on records stored per second (default unlimited). */
  readonly maxRate?: number | undefined
  /** Adapt the rate to the processing speed with Spark's PID estimator (default off). */
  readonly backpressure?: boolean | PIDOptions | undefined
  /** With backpressure, the rate before the first estimate (default `maxRate`). */
  readonly initialRate?: number | undefined
  /**
   * Records a receiver may hold in memory: stored and not yet processed (default 1,000,000).
   * With `"memory"` storage `store` waits while the buffer is full.
   */
  readonly maxBufferedRecords?: number | undefined
  /** Where blocks live (default `"memory"`). */
  readonly storage?: StorageLevel | undefined
  /** Directory for spilled blocks (default: a temporary directory removed at stop). */
  readonly spillDirectory?: string | undefined
  /**
   * Write every block to a write-ahead log under the checkpoint directory
   * (`<checkpointDir>/receivedData/<streamId>/`) before it counts as stored, so `getOrCreate`
   * replays what was stored but not processed (default off; needs `ssc.checkpoint(dir)`).
   * Each `store` / `store.all` call then makes one block and returns once it is on disk: store
   * arrays, not single records. `rollingInterval`: how often a new log segment is started
   * (Spark's `writeAheadLog.rollingIntervalSecs`, default 60 s); segments whose batches are
   * all checkpointed are deleted.
   */
  readonly writeAheadLog?: boolean | { readonly rollingInterval?: Duration.Input | undefined } | undefined
}

/**
 * Turns a block of records into bytes and back, for spilled blocks and the write-ahead log.
 *
 * @since 0.1.0
 * @category models
 */
export interface Serializer<A> {
  /** A block of records as bytes. */
  readonly encode: (records: ReadonlyArray<A>) => Uint8Array
  /** The records of a block that `encode` wrote. */
  readonly decode: (bytes: Uint8Array) => ReadonlyArray<A>
}

/**
 * The default serializer: a block is one JSON array.
 *
 * @since 0.1.0
 * @category constructors
 */
export const jsonSerializer: Serializer<any> = {
  encode: (records) => new TextEncoder().encode(JSON.stringify(records)),
  decode: (bytes) => JSON.parse(new TextDecoder().decode(bytes)),
}

/**
 * A receiver: a name and a scoped `run` that loops, storing records, until it fails, ends or
 * is interrupted. Ending or failing leads to a restart after the restart schedule's delay.
 *
 * @since 0.1.0
 * @category models
 */
export interface Receiver<A, R = never> extends ReceiverSettings {
  /** Names the receiver in events and errors, e.g. `socket localhost:9999`. */
  readonly name: string
  /**
   * Receives records and hands them to `store`; its scope closes when the receiver stops. It may
   * use the services of its context (`StreamingContext.make<R>`).
   */
  readonly run: (store: Store<A>) => Effect.Effect<void, unknown, Scope.Scope | R>
  /** Delay policy between restarts. Default: Spark's `spark.streaming.receiverRestartDelay`, 2 s. */
  readonly restartSchedule?: Schedule.Schedule<unknown, unknown> | undefined
  /** How blocks are written to disk (spill, write-ahead log); default {@link jsonSerializer}. */
  readonly serializer?: Serializer<A> | undefined
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
 *   maxRate: 50,
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A, R = never>(options: Receiver<A, R>): Receiver<A, R> => options

/**
 * Options of {@link fromStream}.
 *
 * @since 0.1.0
 * @category models
 */
export interface FromStreamOptions extends ReceiverSettings {
  /** Name for events and logs (default `"fromStream"`). */
  readonly name?: string | undefined
  /** Delay policy between restarts after a failure (default: Spark's 2 s). */
  readonly restartSchedule?: Schedule.Schedule<unknown, unknown> | undefined
}

/**
 * A receiver fed by an Effect `Stream`: records arriving between two ticks go to the next
 * batch (the stream's chunks are stored as they come, with the receiver's rate limits and
 * backpressure). When the stream fails, the failure is a receiver error and the stream is run
 * again from its start after the restart schedule (Spark's receiver restart rules: a source
 * that cannot resume re-delivers, so make it resume — e.g. from a committed position — if
 * duplicates matter). When a finite stream ends, that input is over: it gives empty batches
 * from then on and is not restarted.
 *
 * @example
 * ```ts
 * const ticks = Stream.fromSchedule(Schedule.spaced("100 millis"))
 * ssc.receiverStream(Receiver.fromStream(ticks, { name: "ticks" })).count().print()
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromStream = <A, E, R = never>(
  stream: Stream.Stream<A, E, R>,
  options?: FromStreamOptions,
): Receiver<A, R> => {
  const { name, ...settings } = options ?? {}
  return {
    ...settings,
    name: name ?? "fromStream",
    // a finite stream ends the input: wait (until the context stops) instead of returning,
    // which the supervisor would take for a receiver that stopped on its own and restart
    run: (store) => Effect.andThen(Stream.runForEachArray(stream, store.all), Effect.never),
  }
}

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
