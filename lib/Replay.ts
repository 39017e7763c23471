/**
 * Replay: run the same pipeline over bounded history — an array, an Effect `Stream` or a
 * directory of text files — as fast as the machine allows, instead of waiting for wall-clock
 * batch times (the Kappa architecture's reprocessing).
 *
 * A replay input hands out the next records at each batch time, cut by record count or by
 * event-time span. {@link start} (or {@link run}) starts the context under a virtual clock
 * (Effect's `TestClock`) and moves it one batch interval on as soon as the previous batch has
 * completed; when every replay input is exhausted it stops the context, so the run ends. A
 * replay checkpoints its position: recovered with `getOrCreate`, it continues after the records
 * its checkpoint covers. Nothing else changes: the
 * batch clock, the operators, checkpoints and outputs are those of a live run, so an
 * event-time pipeline gives the same windows over the same records (see the README's "Event
 * time and replay" for when exactly).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Replay, StreamingContext } from "effect-dstream"
 *
 * const program = Effect.gen(function* () {
 *   const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
 *   ssc.checkpoint("/tmp/replay-checkpoint")
 *   const lines = Replay.input(ssc, Replay.fromDirectory("./history"), { recordsPerBatch: 10_000 })
 *   buildPipeline(lines) // the same function the live job uses on ssc.textFileStream(...)
 *   yield* Replay.start(ssc) // instead of ssc.start
 *   yield* ssc.awaitTermination // returns once the history is processed
 * })
 * ```
 *
 * @module
 */
import { Clock, Deferred, Duration, Effect, FileSystem, Option, Path, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as BatchClock from "./BatchClock.ts"
import * as Checkpoint from "./Checkpoint.ts"
import * as DStream from "./DStream.ts"
import { ValidationError } from "./Errors.ts"
import * as StreamingContext from "./StreamingContext.ts"
import * as Time from "./Time.ts"
import * as Checkpointing from "./_internal/checkpointing.ts"
import type { NodeContext, NodeEnv } from "./_internal/node.ts"
import { type Cut, ReplayError, ReplayInputNode, replayInputs, type Source } from "./_internal/replay.ts"
import { readTextLines } from "../receivers/file.ts"

export {
  /**
   * Reading the replayed history failed, or a record's event time is not a number.
   *
   * @since 0.1.0
   * @category errors
   */
  ReplayError,
} from "./_internal/replay.ts"

/**
 * Bounded history to replay.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReplaySource<A> {
  /** @internal */
  readonly source: Source<A>
  /** What the source replays, for messages. */
  readonly description: string
  /** The constructor, when the source reads files (so needs the program's FileSystem and Path). @internal */
  readonly fileSystemUser?: string | undefined
}

/**
 * How replayed records are cut into batches: a fixed number of records per batch, or the
 * records of one event-time span per batch (records in source order; a record at or after the
 * span's end starts the next batch; spans without records are skipped).
 *
 * @since 0.1.0
 * @category models
 */
export type BatchCut<A> =
  | { readonly recordsPerBatch: number }
  | { readonly eventTime: (a: A) => number; readonly span: Duration.Input }

/**
 * Replays the records of an array or iterable, in order.
 *
 * @example
 * ```ts
 * Replay.fromIterable([{ word: "a", time: 1000 }, { word: "b", time: 1500 }])
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromIterable = <A>(records: Iterable<A>): ReplaySource<A> => ({
  source: { _tag: "Array", records: Array.isArray(records) ? records : Array.from(records) },
  description: "records",
})

/**
 * Replays the elements of a finite Effect `Stream` (it may read files, a database, Kafka…).
 * A failure of the stream fails the batch that needed its records with a {@link ReplayError}.
 *
 * @example
 * ```ts
 * Replay.fromStream(Stream.range(1, 1_000_000))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromStream = <A, E>(
  stream: Stream.Stream<A, E, FileSystem.FileSystem | Path.Path>,
): ReplaySource<A> => ({ source: { _tag: "Stream", stream }, description: "stream" })

/**
 * Replays the lines of the text files in `directory` (UTF-8, as `textFileStream` reads them),
 * file by file in the order they arrived (modification time, then name). Hidden files (`.`)
 * are skipped, like the file stream does.
 *
 * @example
 * ```ts
 * Replay.fromDirectory("./history")
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromDirectory = (
  directory: string,
  options?: { readonly filter?: ((name: string) => boolean) | undefined },
): ReplaySource<string> => {
  const listed: Effect.Effect<Array<string>, ReplayError, NodeEnv> = Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const names = yield* fs.readDirectory(directory)
    const files: Array<{ readonly file: string; readonly name: string; readonly mtime: number }> = []
    for (const name of names) {
      if (name.startsWith(".") || (options?.filter !== undefined && !options.filter(name))) continue
      const file = path.join(directory, name)
      const info = yield* fs.stat(file)
      if (info.type !== "File") continue
      files.push({ file, name, mtime: Option.match(info.mtime, { onNone: () => 0, onSome: (d) => d.getTime() }) })
    }
    files.sort((a, b) => a.mtime - b.mtime || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    return files.map((f) => f.file)
  }).pipe(
    Effect.mapError((cause) =>
      new ReplayError({ message: `Cannot replay directory "${directory}": ${cause.message}`, cause })
    ),
  )
  const stream = Stream.unwrap(
    Effect.map(listed, (files) =>
      Stream.fromIterable(files).pipe(
        Stream.mapEffect((file) => readTextLines([file])),
        Stream.flattenIterable,
      )),
  )
  return {
    source: { _tag: "Stream", stream },
    description: `directory "${directory}"`,
    fileSystemUser: `Replay.fromDirectory("${directory}")`,
  }
}

const cutOf = <A>(cut: BatchCut<A>): Cut<A> => {
  if ("recordsPerBatch" in cut) {
    const n = cut.recordsPerBatch
    if (!Number.isInteger(n) || n < 1) {
      throw new ValidationError({ message: `Records per batch must be a positive whole number: ${JSON.stringify(n)}` })
    }
    return { _tag: "Count", records: n }
  }
  if (typeof cut.eventTime !== "function") {
    throw new ValidationError({ message: "A replay cut by event time needs an event-time function" })
  }
  return { _tag: "Span", eventTime: cut.eventTime, spanMillis: Time.millis(cut.span, "Replay span") }
}

/**
 * A replay input stream on `ssc`: at each batch time it takes the next records of `source`,
 * cut as `cut` says. Run the context with {@link run} to go as fast as the machine allows (with
 * `ssc.start` it hands out one cut per wall-clock batch).
 *
 * @example
 * ```ts
 * const events = Replay.input(ssc, Replay.fromIterable(history), { eventTime: (e) => e.time, span: "1 minute" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const input = <A>(
  ssc: StreamingContext.StreamingContext,
  source: ReplaySource<A>,
  cut: BatchCut<A>,
): DStream.DStream<A> => {
  const node = new ReplayInputNode<A>(
    ssc as unknown as NodeContext,
    source.source,
    cutOf(cut),
    `replay of ${source.description}`,
  )
  node.fileSystemUser = source.fileSystemUser
  return DStream.fromNode(node)
}

type StartError = StreamingContext.StartError

/** The time of the newest checkpoint in `store` if it holds a replay's position. */
const replayCheckpointTime = (
  store: Checkpoint.CheckpointStoreShape,
  directory: string,
): Effect.Effect<number | undefined, Checkpoint.CheckpointError> =>
  Effect.gen(function* () {
    const latest = yield* Checkpoint.readLatest(store)
    if (latest._tag === "None") return undefined
    const payload = yield* Effect.try({
      try: () => Checkpointing.payloadOf(latest.value, directory),
      catch: (e) => e as Checkpoint.CheckpointError,
    })
    return Object.keys(payload.nodes).some((key) => key.startsWith("replay-")) ? latest.value.time : undefined
  })

/**
 * Where a resumed replay continues: the checkpoints of `directory`, in the `CheckpointStore`
 * service or else in files, read with the context's FileSystem and Path (without either, there
 * is nothing to read, and `start` fails naming the checkpoint directory).
 */
const resumeTime = (
  ssc: StreamingContext.StreamingContext,
  directory: string,
): Effect.Effect<number | undefined, Checkpoint.CheckpointError> =>
  Effect.gen(function* () {
    const given = yield* Effect.serviceOption(Checkpoint.CheckpointStore)
    const platform = yield* StreamingContext.platformOfContext(ssc)
    const store = Option.isSome(given)
      ? given.value
      : platform !== undefined
      ? yield* Effect.provideContext(Checkpointing.storeFor(directory), platform)
      : undefined
    return store === undefined ? undefined : yield* replayCheckpointTime(store, directory)
  })

/**
 * The replay driver: starts `ssc` under a virtual clock (reporting the outcome to `started`),
 * then moves the clock one batch interval on after each completed batch, and stops the
 * context once every replay input is exhausted.
 */
const drive = (
  ssc: StreamingContext.StreamingContext,
  started: Deferred.Deferred<void, StartError>,
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const inputs = replayInputs.get(ssc as unknown as NodeContext)
    if (inputs === undefined || inputs.length === 0) {
      return yield* Deferred.fail(
        started,
        new ValidationError({
          message: "Cannot replay: the context has no replay input; create one with Replay.input(ssc, source, cut)",
        }),
      )
    }
    const interval = Duration.toMillis(ssc.batchInterval)
    // Resuming a replay (getOrCreate found its checkpoint): the virtual clock continues from
    // the checkpoint's batch, so the batches after it get the records after those it covers.
    const directory = ssc.checkpointDirectory
    if (directory !== undefined) {
      const resumed = yield* Effect.result(resumeTime(ssc, directory))
      if (resumed._tag === "Failure") return yield* Deferred.fail(started, resumed.failure)
      if (resumed.success !== undefined) yield* TestClock.setTime(resumed.success)
    }
    let t = BatchClock.firstBatchTime(yield* Clock.currentTimeMillis, interval)
    const start = yield* Effect.result(ssc.start)
    if (start._tag === "Failure") return yield* Deferred.fail(started, start.failure)
    yield* Deferred.succeed(started, undefined)
    // After the batch that takes the last records, one more batch (without records) applies
    // the final watermark, as Structured Streaming's no-data batch does.
    let extra = 1
    yield* Effect.gen(function* () {
      for (;;) {
        yield* TestClock.adjust(interval)
        yield* ssc.awaitBatch(t)
        if ((yield* ssc.state) === "STOPPED") return
        if (inputs.every((i) => i.exhausted) && extra-- === 0) return
        t += interval
      }
    }).pipe(Effect.onInterrupt(() => ssc.stop()))
    yield* ssc.stop()
  }).pipe(Effect.provide(TestClock.layer({ warningDelay: "1 day" })))

/**
 * Starts `ssc` under a virtual clock and runs its batches back to back in the background: the
 * clock moves one batch interval on as soon as the previous batch has completed. When every
 * replay input is exhausted (and one more batch without records has applied the last
 * watermark), the context stops, so `ssc.awaitTermination` returns (or fails, if a batch
 * failed). Use it in place of `ssc.start`; fails as `start` does.
 *
 * @example
 * ```ts
 * yield* Replay.start(ssc)
 * yield* ssc.awaitTermination // returns when the history is done
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const start = (ssc: StreamingContext.StreamingContext): Effect.Effect<void, StartError> =>
  Effect.gen(function* () {
    const started = yield* Deferred.make<void, StartError>()
    yield* Effect.forkDetach(drive(ssc, started))
    yield* Deferred.await(started)
  })

/**
 * {@link start} followed by `ssc.awaitTermination`: replays the history and returns when it is
 * done; a failed batch fails it. Interrupting it stops the context.
 *
 * @example
 * ```ts
 * yield* Replay.run(ssc)
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  ssc: StreamingContext.StreamingContext,
): Effect.Effect<void, StreamingContext.TerminationError | StartError> =>
  Effect.andThen(start(ssc), ssc.awaitTermination).pipe(Effect.onInterrupt(() => ssc.stop()))
