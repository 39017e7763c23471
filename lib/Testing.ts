/**
 * Deterministic pipeline tests, the way Spark's `TestSuiteBase` drives them: input batches are
 * fed one per batch time, the batch clock is advanced with Effect's `TestClock`, and every
 * output batch is collected with its time.
 *
 * @example
 * ```ts
 * import { Testing } from "effect-dstream"
 *
 * const out = yield* Testing.runOperation(
 *   [["a", "b"], ["a"]],
 *   (s) => s.mapToPair((w) => [w, 1]).reduceByKey((a, b) => a + b),
 * )
 * // [[["a", 1], ["b", 1]], [["a", 1]]]
 * ```
 *
 * @module
 */
import { Clock, type Duration, Effect } from "effect"
import { TestClock } from "effect/testing"
import * as BatchClock from "./BatchClock.ts"
import * as Checkpoint from "./Checkpoint.ts"
import * as DStream from "./DStream.ts"
import type { BatchJobError, IllegalStateError, ValidationError } from "./Errors.ts"
import * as StreamingContext from "./StreamingContext.ts"
import * as Time from "./Time.ts"
import { type Batch, InputNode, type NodeContext } from "./_internal/node.ts"

/**
 * Spark's `TestInputStream`: the batch at the k-th batch time is `batches[k - 1]`; a `null`
 * entry means no batch at that time; past the end, batches are empty.
 * @internal
 */
class TestInputNode<A> extends InputNode<A> {
  readonly kind = "TestInputStream"
  readonly name = "test input"
  constructor(ctx: NodeContext, readonly batches: ReadonlyArray<ReadonlyArray<A> | null>) {
    super(ctx)
  }
  compute(t: number): Effect.Effect<Batch<A> | undefined> {
    return Effect.sync(() => {
      const index = (t - this.zeroTime!) / this.slideMillis - 1
      const batch = index < this.batches.length ? this.batches[index] : []
      if (batch === null) return undefined
      this.record(t, batch.length)
      return batch
    })
  }
}

/**
 * A test input stream over the given batches (Spark's `TestInputStream`); `null` entries give
 * no batch at that time.
 *
 * @example
 * ```ts
 * const nums = Testing.input(ssc, [[1, 2], [3], null, [4]])
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const input = <A>(
  ssc: StreamingContext.StreamingContext,
  batches: ReadonlyArray<ReadonlyArray<A> | null>,
): DStream.DStream<A> => DStream.fromNode(new TestInputNode<A>(ssc as unknown as NodeContext, batches))

/**
 * Options of {@link run}.
 *
 * @since 0.1.0
 * @category testing
 */
export interface RunOptions {
  /** Batch interval; default `"1 second"`. */
  readonly batchInterval?: Duration.Input | undefined
  /** How many batch times to advance. */
  readonly numBatches: number
  /**
   * Set a checkpoint directory before start (stateful operators need one). Checkpoints go to
   * the environment's `CheckpointStore`, else to a fresh in-memory one.
   */
  readonly checkpoint?: string | undefined
}

/**
 * Builds a pipeline on a fresh context, starts it under `TestClock`, advances `numBatches`
 * batch intervals one at a time (waiting for each batch to complete), stops the context and
 * returns every output batch with its time. A failed batch fails the run with its error.
 *
 * @example
 * ```ts
 * const out = yield* Testing.runWithTimes((ssc) => Testing.input(ssc, [[1], [2]]).map((n) => n * 10), { numBatches: 2 })
 * // [[1000, [10]], [2000, [20]]]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const runWithTimes = <B>(
  build: (ssc: StreamingContext.StreamingContext) => DStream.DStream<B> | Effect.Effect<DStream.DStream<B>>,
  options: RunOptions,
): Effect.Effect<
  Array<readonly [number, ReadonlyArray<B>]>,
  BatchJobError | IllegalStateError | ValidationError | Checkpoint.CheckpointError
> =>
  Effect.gen(function* () {
    const batchInterval = options.batchInterval ?? "1 second"
    const batchMillis = Time.millis(batchInterval)
    const ssc = yield* StreamingContext.make({ batchInterval })
    if (options.checkpoint !== undefined) ssc.checkpoint(options.checkpoint)
    const built = build(ssc)
    const output = Effect.isEffect(built) ? yield* built : built
    const collected: Array<readonly [number, ReadonlyArray<B>]> = []
    output.foreachBatch((batch, time) => {
      collected.push([time, batch])
    })
    const now = yield* Clock.currentTimeMillis
    const first = BatchClock.firstBatchTime(now, batchMillis)
    // Checkpoints go to an in-memory store unless the caller provides one.
    yield* Effect.flatMap(
      Effect.serviceOption(Checkpoint.CheckpointStore),
      (store) => store._tag === "Some" ? ssc.start : Effect.provide(ssc.start, Checkpoint.layerMemory),
    )
    for (let k = 0; k < options.numBatches; k++) {
      yield* TestClock.adjust(batchMillis)
      yield* ssc.awaitBatch(first + k * batchMillis)
      if ((yield* ssc.state) === "STOPPED") yield* ssc.awaitTermination
    }
    yield* ssc.stop()
    return collected
  }).pipe(Effect.provide(TestClock.layer()))

/**
 * Like {@link runWithTimes}, returning only the output batches.
 *
 * @example
 * ```ts
 * const out = yield* Testing.run((ssc) => Testing.input(ssc, [[1], [2]]).count(), { numBatches: 3 })
 * // [[1], [1], [0]]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const run = <B>(
  build: (ssc: StreamingContext.StreamingContext) => DStream.DStream<B> | Effect.Effect<DStream.DStream<B>>,
  options: RunOptions,
): Effect.Effect<
  Array<ReadonlyArray<B>>,
  BatchJobError | IllegalStateError | ValidationError | Checkpoint.CheckpointError
> => Effect.map(runWithTimes(build, options), (out) => out.map(([, batch]) => batch))

/**
 * Spark's `testOperation(input, operation, expectedOutput)`: one input stream, one operation;
 * runs as many batches as there are inputs unless `numBatches` says otherwise.
 *
 * @example
 * ```ts
 * const out = yield* Testing.runOperation([[1, 2], [3]], (s) => s.map((n) => n + 1))
 * // [[2, 3], [4]]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const runOperation = <A, B>(
  batches: ReadonlyArray<ReadonlyArray<A> | null>,
  operation: (input: DStream.DStream<A>) => DStream.DStream<B>,
  options?: Partial<RunOptions>,
): Effect.Effect<
  Array<ReadonlyArray<B>>,
  BatchJobError | IllegalStateError | ValidationError | Checkpoint.CheckpointError
> => run((ssc) => operation(input(ssc, batches)), { numBatches: batches.length, ...options })

/**
 * Spark's two-input `testOperation`: two input streams combined by one operation.
 *
 * @example
 * ```ts
 * const out = yield* Testing.runOperation2([[["a", 1]]], [[["a", "x"]]], (l, r) => l.join(r))
 * // [[["a", [1, "x"]]]]
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const runOperation2 = <A, B, C>(
  batches1: ReadonlyArray<ReadonlyArray<A> | null>,
  batches2: ReadonlyArray<ReadonlyArray<B> | null>,
  operation: (a: DStream.DStream<A>, b: DStream.DStream<B>) => DStream.DStream<C>,
  options?: Partial<RunOptions>,
): Effect.Effect<
  Array<ReadonlyArray<C>>,
  BatchJobError | IllegalStateError | ValidationError | Checkpoint.CheckpointError
> =>
  run((ssc) => operation(input(ssc, batches1), input(ssc, batches2)), {
    numBatches: Math.max(batches1.length, batches2.length),
    ...options,
  })
