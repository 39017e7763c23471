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
 * Kafka: {@link fromKafka} replays bounded offset ranges (from the earliest offsets, explicit
 * offsets or a timestamp, to the end seen at start or explicit offsets); {@link kafkaThenLive}
 * is a direct stream that {@link start} runs from a past position under the virtual clock until
 * it has caught up with the end offsets seen at start, then at real-time pace, live, with the
 * same pipeline and state.
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
import * as BatchClock from "./BatchClock.ts"
import * as Checkpoint from "./Checkpoint.ts"
import * as DStream from "./DStream.ts"
import * as Kafka from "./Kafka.ts"
import { ValidationError } from "./Errors.ts"
import * as StreamingContext from "./StreamingContext.ts"
import * as Time from "./Time.ts"
import * as Checkpointing from "./_internal/checkpointing.ts"
import type { NodeContext, NodeEnv } from "./_internal/node.ts"
import {
  catchUpInputs,
  type Cut,
  ReplayClock,
  ReplayError,
  ReplayInputNode,
  replayInputs,
  type Source,
} from "./_internal/replay.ts"
import { readTextLines } from "../receivers/file.ts"
import { type KafkaInputNode, keyFormat, toFormat } from "../receivers/kafka.ts"
import { catchUp, rangeStream } from "../receivers/kafka_replay.ts"

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

/**
 * Where Kafka history starts: each partition's earliest offset still kept; explicit offsets
 * (partitions not listed start at their earliest); or, per partition, the first offset whose
 * record timestamp is at or after `timestamp` (epoch ms, the broker's offset-for-time lookup).
 *
 * @since 0.1.0
 * @category models
 */
export type KafkaStart =
  | "earliest"
  | { readonly offsets: ReadonlyArray<Kafka.TopicPartitionOffset> }
  | { readonly timestamp: number }

/**
 * Options of {@link fromKafka}: the client options, the topics, the formats and the range.
 *
 * @since 0.1.0
 * @category models
 */
export interface KafkaHistoryOptions<K, V> extends Kafka.ClientOptions {
  /** The topics to replay (every partition of each). */
  readonly topics: ReadonlyArray<string>
  /** The value's format: a string-encoded Schema, `Kafka.json(schema)` or `Kafka.bytes`. */
  readonly value: Kafka.FormatInput<V>
  /** The key's format (default UTF-8 text); keys are `null` when absent. */
  readonly key?: Kafka.FormatInput<K> | undefined
  /** Where the history starts. */
  readonly from: KafkaStart
  /**
   * Where it ends (exclusive): `"end"` (default), each partition's end offset when the replay
   * starts (records produced later are not replayed); or explicit offsets (partitions not
   * listed end at their end offset at start).
   */
  readonly until?: "end" | { readonly offsets: ReadonlyArray<Kafka.TopicPartitionOffset> } | undefined
  /**
   * Not used any more: the reader sends Fetch requests to each partition's leader and joins no
   * group (it used to join this one; nothing was committed). Kept so existing options still type-check.
   */
  readonly groupId?: string | undefined
  /** Not used any more (the reader's fetches wait at most 100 ms for data). Kept so existing options still type-check. */
  readonly maxWaitTimeInMs?: number | undefined
  /** Records buffered per partition before its fetching pauses (default 10 000). */
  readonly maxBufferedPerPartition?: number | undefined
}

const checkStart = (from: unknown, what: string): KafkaStart => {
  if (from === "earliest") return from
  if (typeof from === "object" && from !== null) {
    if ("timestamp" in from) {
      const ts = (from as { timestamp: unknown }).timestamp
      if (typeof ts === "number" && Number.isFinite(ts) && ts >= 0) return from as KafkaStart
      throw new ValidationError({ message: `${what} timestamp must be epoch milliseconds: ${JSON.stringify(ts)}` })
    }
    if ("offsets" in from && Array.isArray((from as { offsets: unknown }).offsets)) return from as KafkaStart
  }
  throw new ValidationError({
    message: `${what} must be "earliest", { offsets } or { timestamp }: ${JSON.stringify(from) ?? String(from)}`,
  })
}

/**
 * Replays a bounded range of Kafka topics: for each partition the records from `from` up to
 * `until`, read partition by partition (Fetch requests to each leader, no consumer group),
 * merged across partitions in timestamp order (ties: topic and partition in the order read,
 * then offset), so a replay gives the same batches every time. Elements are
 * `Kafka.KafkaRecord`s, as the direct stream gives. A record that does not decode, an offset
 * outside what a partition holds, or unreachable brokers fail the replay with a
 * {@link ReplayError}.
 *
 * @example
 * ```ts
 * const records = Replay.input(ssc, Replay.fromKafka({
 *   brokers: ["127.0.0.1:9092"], topics: ["clicks"], value: Schema.String,
 *   from: { timestamp: Date.parse("2026-11-01T00:00:00Z") }, until: "end",
 * }), { recordsPerBatch: 10_000 })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromKafka = <V, K = string>(
  options: KafkaHistoryOptions<K, V>,
): ReplaySource<Kafka.KafkaRecord<K, V>> => {
  const from = checkStart(options.from, "Replay.fromKafka: from")
  const topics = options.topics
  if (!Array.isArray(topics) || topics.length === 0 || topics.some((t) => typeof t !== "string" || t === "")) {
    throw new ValidationError({
      message: `Replay.fromKafka needs one or more topic names: ${JSON.stringify(topics) ?? String(topics)}`,
    })
  }
  const until = options.until ?? "end"
  if (until !== "end" && !(typeof until === "object" && until !== null && Array.isArray(until.offsets))) {
    throw new ValidationError({
      message: `Replay.fromKafka: until must be "end" or { offsets }: ${JSON.stringify(until) ?? String(until)}`,
    })
  }
  const stream = Stream.suspend(() =>
    rangeStream<K, V>({
      client: options,
      topics,
      from,
      until,
      key: keyFormat(options.key),
      value: toFormat(options.value),
      maxBufferedPerPartition: options.maxBufferedPerPartition ?? 10_000,
    })
  )
  return { source: { _tag: "Stream", stream }, description: `Kafka ${topics.map((t) => `"${t}"`).join(", ")}` }
}

/**
 * Options of {@link kafkaThenLive}: those of `Kafka.KafkaDirectStream.make` (topics or assigned
 * partitions; not a pattern, not `offsets`) and where the history starts.
 *
 * @since 0.1.0
 * @category models
 */
export type KafkaThenLiveOptions<K, V> = Kafka.DirectStreamOptions<K, V> & {
  /** Where the replayed history starts (a checkpoint, when the context recovered from one, wins). */
  readonly from: KafkaStart
}

/**
 * A Kafka direct stream that starts in the past and goes live: with {@link start}, the context
 * runs under the virtual clock from `from` as fast as the batches complete, until its batches
 * have taken every partition up to the end offsets observed at start; then the batch clock
 * switches to the real clock and the same pipeline, with the same state, goes on live (the
 * Kappa architecture's redeployment). It is the direct stream of `Kafka.KafkaDirectStream.make`
 * in every other way: offset ranges, commits, checkpoints, dead letters.
 *
 * @example
 * ```ts
 * const clicks = Replay.kafkaThenLive(ssc, {
 *   brokers, groupId: "clicks-v2", topics: ["clicks"], value: Schema.String, from: { timestamp: since },
 * })
 * buildPipeline(clicks)
 * yield* Replay.start(ssc) // history first, then live
 * yield* ssc.awaitTermination
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const kafkaThenLive = <V, K = string, R = never>(
  ssc: StreamingContext.StreamingContext<R>,
  options: KafkaThenLiveOptions<K, V>,
): Kafka.KafkaDirectStream<K, V, R> => {
  const from = checkStart(options.from, "Replay.kafkaThenLive: from")
  if (options.offsets !== undefined || options.assign?.some((p) => p.offset !== undefined)) {
    throw new ValidationError({
      message: "Replay.kafkaThenLive starts where `from` says: give no `offsets` (use from: { offsets })",
    })
  }
  if (options.pattern !== undefined) {
    throw new ValidationError({ message: "Replay.kafkaThenLive needs topics or assigned partitions, not a pattern" })
  }
  const stream = Kafka.directStream<V, K, R>(ssc, options)
  const topics = options.topics ?? [...new Set(options.assign!.map((p) => p.topic))]
  const node = stream.node as unknown as KafkaInputNode<K, V>
  const ctx = ssc as unknown as NodeContext
  const list = catchUpInputs.get(ctx) ?? []
  list.push(catchUp(node, topics, from))
  catchUpInputs.set(ctx, list)
  return stream
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

/**
 * Why a replay could not start: the context's own start errors, or (Kafka) the history's
 * offsets could not be resolved.
 *
 * @since 0.1.0
 * @category errors
 */
export type StartError = StreamingContext.StartError | ReplayError

/** The time of the newest checkpoint in `store` if it holds a replay's position. */
const replayCheckpointTime = (
  store: Checkpoint.CheckpointStoreShape,
  directory: string,
  live: boolean,
): Effect.Effect<number | undefined, Checkpoint.CheckpointError> =>
  Effect.gen(function* () {
    const latest = yield* Checkpoint.readLatest(store)
    if (latest._tag === "None") return undefined
    const payload = yield* Effect.try({
      try: () => Checkpointing.payloadOf(latest.value, directory),
      catch: (e) => e as Checkpoint.CheckpointError,
    })
    // a replay input's position, or (replay then live) a Kafka stream's offsets
    const resumes = (key: string) => key.startsWith("replay-") || (live && key.startsWith("DirectKafkaInputDStream#"))
    return Object.keys(payload.nodes).some(resumes) ? latest.value.time : undefined
  })

/**
 * Where a resumed replay continues: the checkpoints of `directory`, in the `CheckpointStore`
 * service or else in files, read with the context's FileSystem and Path (without either, there
 * is nothing to read, and `start` fails naming the checkpoint directory).
 */
const resumeTime = (
  ssc: StreamingContext.StreamingContext,
  directory: string,
  live: boolean,
): Effect.Effect<number | undefined, Checkpoint.CheckpointError> =>
  Effect.gen(function* () {
    const given = yield* Effect.serviceOption(Checkpoint.CheckpointStore)
    const platform = yield* StreamingContext.platformOfContext(ssc)
    const store = Option.isSome(given)
      ? given.value
      : platform !== undefined
      ? yield* Effect.provideContext(Checkpointing.storeFor(directory), platform)
      : undefined
    return store === undefined ? undefined : yield* replayCheckpointTime(store, directory, live)
  })

/**
 * The replay driver: starts `ssc` under a virtual clock (reporting the outcome to `started`),
 * then moves the clock one batch interval on after each completed batch. Once every replay
 * input is exhausted it stops the context; with catch-up inputs (`kafkaThenLive`), once those
 * have caught up with the end of their history its clock goes on at real-time pace instead
 * (from the virtual time reached: batch times stay one interval apart), and the run goes on live.
 */
const drive = (
  ssc: StreamingContext.StreamingContext,
  started: Deferred.Deferred<void, StartError>,
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const ctx = ssc as unknown as NodeContext
    const inputs = replayInputs.get(ctx) ?? []
    const catchUps = catchUpInputs.get(ctx) ?? []
    if (inputs.length === 0 && catchUps.length === 0) {
      return yield* Deferred.fail(
        started,
        new ValidationError({
          message:
            "Cannot replay: the context has no replay input; create one with Replay.input(ssc, source, cut) or Replay.kafkaThenLive(ssc, options)",
        }),
      )
    }
    const clock = new ReplayClock(yield* Clock.clockWith(Effect.succeed))
    const interval = Duration.toMillis(ssc.batchInterval)
    yield* Effect.gen(function* () {
      // Resuming a replay (getOrCreate found its checkpoint): the virtual clock continues from
      // the checkpoint's batch, so the batches after it get the records after those it covers.
      const directory = ssc.checkpointDirectory
      let resumed = false
      if (directory !== undefined) {
        const found = yield* Effect.result(resumeTime(ssc, directory, catchUps.length > 0))
        if (found._tag === "Failure") return yield* Deferred.fail(started, found.failure)
        if (found.success !== undefined) {
          clock.setTime(found.success)
          resumed = true
        }
      }
      // Going live later: the virtual timeline starts at the real time, so batch times stay epoch times.
      if (catchUps.length > 0 && !resumed) clock.setTime(clock.real.currentTimeMillisUnsafe())
      for (const input of catchUps) {
        const prepared = yield* Effect.result(input.prepare(resumed))
        if (prepared._tag === "Failure") {
          const e = prepared.failure
          return yield* Deferred.fail(
            started,
            e instanceof ReplayError
              ? e
              : e instanceof ValidationError
              ? e
              : new ReplayError({ message: `Cannot start the replay: ${describeError(e)}`, cause: e }),
          )
        }
      }
      let t = BatchClock.firstBatchTime(yield* Clock.currentTimeMillis, interval)
      const start = yield* Effect.result(ssc.start)
      if (start._tag === "Failure") return yield* Deferred.fail(started, start.failure)
      yield* Deferred.succeed(started, undefined)
      // After the batch that takes the last records, one more batch (without records) applies
      // the final watermark, as Structured Streaming's no-data batch does (bounded replays).
      let extra = 1
      const live = catchUps.length > 0
      const done = yield* Effect.gen(function* () {
        for (;;) {
          // Catching up: wait (on the real clock, briefly) for fetched records before cutting a
          // batch, rather than spinning through empty batches while the consumer fetches.
          for (let waited = 0; waited < 1000 && !catchUps.every((i) => i.caughtUp() || i.hasRecords()); waited += 10) {
            yield* clock.real.sleep(Duration.millis(10))
          }
          clock.adjust(interval)
          yield* ssc.awaitBatch(t)
          if ((yield* ssc.state) === "STOPPED") return false
          if (inputs.every((i) => i.exhausted)) {
            if (live ? catchUps.every((i) => i.caughtUp()) : extra-- === 0) return true
          }
          t += interval
        }
      }).pipe(Effect.onInterrupt(() => ssc.stop()))
      if (!live || !done) return yield* ssc.stop()
      // Caught up: from here the clock runs at real-time pace (the next batch comes one
      // interval after this one, in real time), and the context goes on live.
      clock.goLive()
      yield* Effect.logInfo(
        `Replay caught up after the batch of ${Time.format(t)} (${
          catchUps.map((i) => i.describe()).join("; ")
        }): continuing live at real-time pace, batch times ${
          clock.offsetMillis >= 0 ? `${clock.offsetMillis} ms ahead of` : `${-clock.offsetMillis} ms behind`
        } the wall clock`,
      )
    }).pipe(Effect.provideService(Clock.Clock, clock))
  })

const describeError = (e: unknown): string => (e instanceof Error ? e.message : String(e))

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
