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
}> = Data.TaggedError("BatchJobError")

/**
 * A batch could not be computed or one of its output operations failed. Surfaces in
 * `awaitTermination` and stops the context.
 *
 * @since 0.1.0
 * @category errors
 */
export class BatchJobError extends BatchJobErrorBase {
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
  /** Invalid sequences in the reported chunk. */
  readonly count: number
}> = Data.TaggedError("MalformedInputError")

/**
 * Bytes received from a socket (or read from a file) were not valid UTF-8. The invalid
 * sequences are replaced with U+FFFD and receiving continues; the receiver reports this error
 * as a receiver-error event.
 *
 * @since 0.1.0
 * @category errors
 */
export class MalformedInputError extends MalformedInputErrorBase {
  /** `Invalid UTF-8 from <source>: <count> malformed sequence(s) replaced with U+FFFD`. */
  override get message(): string {
    return `Invalid UTF-8 from ${this.source}: ${this.count} malformed sequence(s) replaced with U+FFFD`
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
