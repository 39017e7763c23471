/**
 * TCP socket receivers: Spark's `socketStream` (bytes through a converter) and
 * `socketTextStream` (UTF-8 lines). Each run opens one connection, stores what it decodes in
 * arrays, and fails with a `ReceiverError` when the connection cannot be opened, breaks, or
 * reaches end of data, so the supervisor reconnects per the restart schedule.
 *
 * @module
 */
import { Duration, Effect, Option, Schedule, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import { LineTooLongError, MalformedInputError, ReceiverError } from "../lib/Errors.ts"
import {
  type Receiver,
  type ReceiverSettings,
  SocketConnector,
  type SocketConnectorShape,
  type Store,
} from "../lib/Receiver.ts"
import { PackedLines, packedLinesOf } from "../lib/_internal/inputs.ts"
import { defaultMaxLineBytes, linesOf, type LinesText, splitUtf8Lines } from "./_lines.ts"

/**
 * Options of the socket receivers.
 *
 * @since 0.1.0
 * @category models
 */
export interface SocketOptions extends ReceiverSettings {
  /** Give up connecting after this long (default {@link defaultOpenTimeout}). */
  readonly openTimeout?: Duration.Input | undefined
  /** Delays between reconnects (default {@link defaultSocketRestartSchedule}). */
  readonly restartSchedule?: Schedule.Schedule<unknown, unknown> | undefined
}

/**
 * Default connect timeout of the socket receivers: 10 seconds.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultOpenTimeout: Duration.Duration = Duration.seconds(10)

/**
 * Default reconnect policy of the socket receivers: exponential backoff starting at 100 ms
 * and doubling (100, 200, 400, 800, 1600 ms), capped at 2 s (Spark's fixed restart delay).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultSocketRestartSchedule: Schedule.Schedule<unknown, unknown> = Schedule.min([
  Schedule.exponential(Duration.millis(100)),
  Schedule.spaced(Duration.seconds(2)),
])

const endOfData = "Socket data stream had no more data"
const receiveFailure = "Error receiving data"

/** The connection's bytes; a clean end of data ends the stream, everything else fails it. */
const connect = (
  connector: SocketConnectorShape,
  name: string,
  host: string,
  port: number,
  openTimeout: Duration.Input,
): Stream.Stream<Uint8Array, ReceiverError> =>
  Stream.unwrap(Effect.map(connector.connect({ host, port, openTimeout }), Socket.toStream)).pipe(
    Stream.catch((error: Socket.SocketError) => {
      const reason = error.reason
      if (reason._tag === "SocketCloseError" && reason.code === 1000) return Stream.empty
      const message = reason._tag === "SocketOpenError" ? `Error connecting to ${host}:${port}` : receiveFailure
      const cause = "cause" in reason && reason.cause !== undefined ? reason.cause : error
      return Stream.fail(new ReceiverError({ receiver: name, message, cause }))
    }),
  )

const toReceiverError = (name: string) => (error: unknown): ReceiverError => {
  if (error instanceof ReceiverError) return error
  if (error instanceof LineTooLongError) {
    return new ReceiverError({
      receiver: name,
      message: `${receiveFailure}: a line exceeds the limit of ${error.limit} bytes`,
      cause: error,
    })
  }
  return new ReceiverError({ receiver: name, message: receiveFailure, cause: error })
}

/**
 * Spark's `socketStream`: connects to `host:port` and turns the connection's bytes into
 * records with `decode`, storing each decoded chunk with one `store.all`.
 *
 * A run fails with a `ReceiverError` (and the supervisor reconnects after the restart
 * schedule's delay): `Error connecting to <host>:<port>` when the connection cannot be opened
 * or times out; `Socket data stream had no more data` when the peer closes the connection
 * (after the records decoded up to then are stored); `Error receiving data` on a read error
 * or when `decode` fails or throws. The bytes stream `decode` receives ends on a clean end of
 * data, so it can flush a final record.
 *
 * @example
 * ```ts
 * const numbers = socketReceiver("localhost", 9999, (bytes) =>
 *   bytes.pipe(Stream.mapArray((chunks) => chunks.map((chunk) => chunk.length))))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const socketReceiver = <A>(
  host: string,
  port: number,
  decode: (bytes: Stream.Stream<Uint8Array, ReceiverError>, store: Store<A>) => Stream.Stream<A, unknown>,
  options?: SocketOptions,
): Receiver<A> => {
  const name = `socket ${host}:${port}`
  const openTimeout = options?.openTimeout ?? defaultOpenTimeout
  const fail = toReceiverError(name)
  // The program's connector (Runtime.layer's is Node's); `start` checks that there is one.
  const run = (store: Store<A>): Effect.Effect<void, ReceiverError> =>
    Effect.flatMap(
      Effect.serviceOption(SocketConnector),
      (connector) =>
        Option.isNone(connector)
          ? Effect.fail(
            new ReceiverError({ receiver: name, message: "No SocketConnector to open the connection with" }),
          )
          : Stream.runForEachArray(
            Stream.suspend(() => decode(connect(connector.value, name, host, port, openTimeout), store)),
            store.all,
          ).pipe(
            Effect.catchDefect((defect) => Effect.fail(defect)),
            Effect.mapError(fail),
            Effect.andThen(Effect.fail(new ReceiverError({ receiver: name, message: endOfData }))),
          ),
    )
  return {
    ...options,
    name,
    run,
    restartSchedule: options?.restartSchedule ?? defaultSocketRestartSchedule,
  }
}

/** Where a receiver node's store takes lines as their bytes until the batch is cut (or `undefined`). */
const packedSink = (store: Store<string>): ((lines: LinesText) => Effect.Effect<void>) | undefined => {
  const take = packedLinesOf(store)
  return take === undefined ? undefined : (lines) => take(new PackedLines(lines.runs, lines.count, linesOf))
}

/**
 * Spark's `socketTextStream`: connects to `host:port` and stores the connection's UTF-8
 * lines (split on `\n`, `\r\n` or `\r`, terminators removed; invalid bytes become U+FFFD).
 * When the peer closes the connection, the final unterminated line is stored before the run
 * fails with `Socket data stream had no more data`. A line longer than `maxLineBytes`
 * (default 1 MiB) fails the run with a `ReceiverError` caused by a `LineTooLongError`, after
 * storing the lines before it. See {@link socketReceiver} for the other failures.
 *
 * @example
 * ```ts
 * const lines = socketTextReceiver("localhost", 9999, { maxLineBytes: 64 * 1024 })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const socketTextReceiver = (
  host: string,
  port: number,
  options?: SocketOptions & { readonly maxLineBytes?: number | undefined },
): Receiver<string> =>
  socketReceiver(
    host,
    port,
    (bytes, store) => {
      const source = `socket ${host}:${port}`
      return splitUtf8Lines({
        source,
        maxLineBytes: options?.maxLineBytes ?? defaultMaxLineBytes,
        onMalformed: (count) => {
          const error = new MalformedInputError({ source, count })
          return store.reportError(error.message, error)
        },
        // a receiver node's store keeps each chunk's lines as one text until the batch is cut
        packed: packedSink(store),
      })(bytes)
    },
    options,
  )
