/**
 * Tracing spans for batches and output operations: the scheduler wraps each batch's run in
 * `batchSpan` and each output job in `outputSpan`, so a user's tracer (an OpenTelemetry layer,
 * Effect's own) sees one `dstream.batch` span per batch with one `dstream.output` child per
 * output operation. Without a tracer layer (the current tracer is Effect's `nativeTracer`,
 * which exports nothing) no span is made at all: nobody could see one, and two spans per batch,
 * with their attributes and stack traces, were a good part of a small batch's fixed cost. Spans
 * capture no stack trace: it would point into the scheduler, not at user code.
 * @internal
 */
import { Effect, Tracer } from "effect"

/** `true` when the running fiber's tracer exports spans somewhere (it is not Effect's native one). */
const tracing: Effect.Effect<boolean> = Effect.map(Effect.tracer, (tracer) => tracer !== Tracer.nativeTracer)

/** Attributes of a batch span. @internal */
export interface BatchSpanAttributes {
  /** The batch time (ms since the epoch). */
  readonly batchTime: number
  /**
   * Records of all inputs in the batch, or a function read when the span ends (inputs such as
   * queue streams count their records while the batch computes).
   */
  readonly records: number | (() => number)
}

/** Attributes of an output operation's span. @internal */
export interface OutputSpanAttributes {
  readonly batchTime: number
  /** Registration index of the output operation. */
  readonly outputId: number
  /** `print`, `foreachBatch`, … */
  readonly name: string
}

/** Runs `batch` in a `dstream.batch` span. @internal */
export const batchSpan = <A, E, R>(
  batch: Effect.Effect<A, E, R>,
  attributes: BatchSpanAttributes,
): Effect.Effect<A, E, R> =>
  Effect.flatMap(tracing, (on) => {
    if (!on) return batch
    const records = attributes.records
    const traced = typeof records === "number" ? batch : Effect.onExit(
      batch,
      () => Effect.annotateCurrentSpan("dstream.batch.records", records()),
    )
    return Effect.withSpan(traced, "dstream.batch", {
      attributes: {
        "dstream.batch.time": attributes.batchTime,
        "dstream.batch.time_iso": new Date(attributes.batchTime).toISOString(),
        ...(typeof records === "number" ? { "dstream.batch.records": records } : {}),
      },
      captureStackTrace: false,
    })
  })

/** Runs an output job in a `dstream.output` span, a child of the current batch span. @internal */
export const outputSpan = <A, E, R>(
  job: Effect.Effect<A, E, R>,
  attributes: OutputSpanAttributes,
): Effect.Effect<A, E, R> =>
  Effect.flatMap(tracing, (on) =>
    on
      ? Effect.withSpan(job, `dstream.output ${attributes.name}`, {
        attributes: {
          "dstream.batch.time": attributes.batchTime,
          "dstream.output.id": attributes.outputId,
          "dstream.output.name": attributes.name,
        },
        captureStackTrace: false,
      })
      : job)
