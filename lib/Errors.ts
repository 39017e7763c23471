/**
 * Typed errors of effect-dstream. Expected failures are `Data.TaggedError`s carrying the
 * facts as fields; their messages follow Spark's wording where Spark has one.
 *
 * @module
 */
import { Data } from "effect"
import type { TaggedErrorClass } from "./_internal/taggedError.ts"

/** @internal */
export const IllegalStateErrorBase: TaggedErrorClass<"IllegalStateError", {
  readonly message: string
}> = Data.TaggedError("IllegalStateError")

/**
 * An operation is not allowed in the context's current state (Spark's `IllegalStateException`),
 * e.g. starting a stopped context or adding a DStream after `start`.
 *
 * @since 0.1.0
 * @category errors
 */
export class IllegalStateError extends IllegalStateErrorBase {}

/** @internal */
export const ValidationErrorBase: TaggedErrorClass<"ValidationError", {
  readonly message: string
}> = Data.TaggedError("ValidationError")

/**
 * A pipeline or argument failed validation (Spark's `requirement failed: …`), e.g. a window
 * that is not a multiple of its parent's slide, or a start with no output operation.
 *
 * @since 0.1.0
 * @category errors
 */
export class ValidationError extends ValidationErrorBase {}

/** @internal */
export const BatchJobErrorBase: TaggedErrorClass<"BatchJobError", {
  /** Batch time in epoch milliseconds. */
  readonly batchTime: number
  /** Registration index of the failed output operation, or -1 for graph computation. */
  readonly outputId: number
  readonly cause: unknown
  /**
   * What failed: `"output"` — the output's own function failed with its typed error (`cause`);
   * `"defect"` — it threw or died; `"timeout"` — it ran past its timeout; `"computation"` —
   * computing the batch (an operator, an input) or writing its checkpoint failed.
   */
  readonly origin?: "output" | "defect" | "timeout" | "computation" | undefined
}> = Data.TaggedError("BatchJobError")

/**
 * A batch could not be computed or one of its output operations failed. Surfaces in
 * `awaitTermination` and stops the context (under the default failure policy). `E` is the
 * error type of the output's function: the `Output` handle's `isFailure` narrows a
 * `BatchJobError` to `BatchJobError<E>` when the output's own function failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class BatchJobError<out E = unknown> extends BatchJobErrorBase {
  /** What failed: with `origin: "output"`, the output function's own error (typed `E`). */
  declare readonly cause: E
  /** `Batch <time> ms failed in <output operation n | graph computation>: <cause>`. */
  override get message(): string {
    const where = this.outputId >= 0 ? `output operation ${this.outputId}` : "graph computation"
    return `Batch ${this.batchTime} ms failed in ${where}: ${describeCause(this.cause)}`
  }
}

/** @internal */
export const ReceiverErrorBase: TaggedErrorClass<"ReceiverError", {
  /** Name of the receiver, e.g. `socket localhost:9999`. */
  readonly receiver: string
  readonly message: string
  readonly cause?: unknown
  /** Set by `store.restart(message, cause, delay)`: wait this long instead of the schedule's delay. */
  readonly restartDelayMillis?: number | undefined
}> = Data.TaggedError("ReceiverError")

/** @internal */
export const OutputTimeoutErrorBase: TaggedErrorClass<"OutputTimeoutError", {
  readonly batchTime: number
  /** Registration index of the output operation. */
  readonly outputId: number
  /** `print`, `foreachBatch`, `saveAsTextFiles`, `toStream`, … */
  readonly output: string
  readonly timeoutMillis: number
}> = Data.TaggedError("OutputTimeoutError")

/**
 * An output operation did not complete within its timeout (the context's `outputTimeout` or the
 * output's own `timeout`). It was interrupted and counts as a failed output under the failure
 * policy.
 *
 * @since 0.1.0
 * @category errors
 */
export class OutputTimeoutError extends OutputTimeoutErrorBase {
  /** Which output timed out, in which batch, after how long. */
  override get message(): string {
    return `Output operation ${this.outputId} ("${this.output}") of batch ${this.batchTime} ms timed out after ${this.timeoutMillis} ms`
  }
}

/** @internal */
export const UnprocessedRecordsErrorBase: TaggedErrorClass<"UnprocessedRecordsError", {
  /** Records received but not processed, and not kept in a write-ahead log. */
  readonly records: number
  /** Why the stop did not wait for them. */
  readonly reason: "timeout" | "forced"
  /** The graceful stop's bound (for `"timeout"`). */
  readonly timeoutMillis?: number | undefined
}> = Data.TaggedError("UnprocessedRecordsError")

/**
 * A stop ended with received records that were not processed and are not kept anywhere: the
 * graceful stop hit its timeout, or a second signal forced the stop. (Records kept in a
 * write-ahead log are not counted: they are processed after a restart.)
 *
 * @since 0.1.0
 * @category errors
 */
export class UnprocessedRecordsError extends UnprocessedRecordsErrorBase {
  /** How many records were not processed, and why. */
  override get message(): string {
    const why = this.reason === "timeout"
      ? `Graceful stop timed out after ${this.timeoutMillis} ms`
      : "Stop forced before the graceful stop finished"
    const records = this.records === 1 ? "1 received record was" : `${this.records} received records were`
    return `${why}: ${records} not processed`
  }
}

/**
 * A receiver failed (connect error, end of data, bad input, a throwing user function). The
 * supervisor reports it as a listener event and restarts the receiver per its policy.
 *
 * @since 0.1.0
 * @category errors
 */
export class ReceiverError extends ReceiverErrorBase {}

/** @internal */
export const LineTooLongErrorBase: TaggedErrorClass<"LineTooLongError", {
  readonly source: string
  readonly limit: number
}> = Data.TaggedError("LineTooLongError")

/**
 * A line received from a socket (or read from a file) exceeded the configured limit. The
 * receiver rejects it instead of buffering without bound.
 *
 * @since 0.1.0
 * @category errors
 */
export class LineTooLongError extends LineTooLongErrorBase {
  /** `Line from <source> exceeds the limit of <limit> bytes`. */
  override get message(): string {
    return `Line from ${this.source} exceeds the limit of ${this.limit} bytes`
  }
}

/** @internal */
export const MalformedInputErrorBase: TaggedErrorClass<"MalformedInputError", {
  readonly source: string
  /** Invalid sequences in the reported chunk (or file). */
  readonly count: number
  /** Byte offset of the first invalid sequence, when the source is a file. */
  readonly offset?: number | undefined
}> = Data.TaggedError("MalformedInputError")

/**
 * Bytes received from a socket or read from a file were not valid UTF-8, reported as a
 * receiver-error event. A socket receiver replaces the invalid sequences with U+FFFD and keeps
 * receiving; a text file stream skips the file (`source` is its path, `offset` the byte
 * offset of its first invalid sequence).
 *
 * @since 0.1.0
 * @category errors
 */
export class MalformedInputError extends MalformedInputErrorBase {
  /** `Invalid UTF-8 from <source>: <count> malformed sequence(s) replaced with U+FFFD`. */
  override get message(): string {
    return this.offset === undefined
      ? `Invalid UTF-8 from ${this.source}: ${this.count} malformed sequence(s) replaced with U+FFFD`
      : `Invalid UTF-8 in ${this.source} at byte ${this.offset}: ${this.count} malformed sequence(s)`
  }
}

/** @internal */
export const describeCause = (cause: unknown): string => {
  if (cause instanceof Error) return cause.message
  if (typeof cause === "string") return cause
  try {
    return JSON.stringify(cause) ?? String(cause)
  } catch {
    return String(cause)
  }
}
