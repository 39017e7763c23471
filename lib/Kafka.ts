/**
 * Kafka for DStreams: Spark's direct stream (`KafkaUtils.createDirectStream`, no receiver) and
 * a Kafka sink, on kafkajs.
 *
 * Every batch owns one explicit {@link OffsetRange} per assigned topic-partition; records are
 * decoded with `Schema` (text, JSON of a schema, bytes) and records that fail to decode go to
 * the {@link KafkaDirectStream.deadLetters} stream (and optionally a dead-letter topic) instead
 * of crashing the stream or disappearing. Offsets are committed to Kafka only after a batch's
 * output operations completed: automatically (`commit: "afterOutputs"`, the default) or the
 * ranges you pass to `commitAsync` (`commit: "manual"`).
 *
 * With a checkpoint directory the stream takes part in graph checkpoints (Spark's
 * `DirectKafkaInputDStreamCheckpointData`): each checkpoint records the offset ranges of the
 * batches cut after it, a context recovered with `getOrCreate` re-runs them with exactly those
 * ranges (fetched again), and offsets are committed only up to what a written checkpoint
 * covers, so stateful operators see every record exactly once across crashes.
 *
 * Outputs are **at least once**: a crash between an output and its commit (or checkpoint), or
 * a rebalance, replays records. For effectively-once results make outputs idempotent (upserts
 * keyed by topic/partition/offset) or store the offsets with the results in one transaction and
 * start from them with `assign` + `offsets`. A broker that stays unreachable fails the stream
 * with {@link KafkaUnreachableError} after `unreachableTimeout`.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Kafka, Runtime, StreamingContext } from "effect-dstream"
 *
 * Runtime.runMain(Effect.gen(function* () {
 *   const ssc = yield* StreamingContext.make({ batchInterval: "2 seconds" })
 *   const stream = Kafka.KafkaDirectStream.make(ssc, {
 *     brokers: ["127.0.0.1:9092"], groupId: "spark_kafka", topics: ["spark02"],
 *     autoOffsetReset: "latest", value: Schema.String, commit: "manual",
 *   })
 *   stream.foreachBatch((records, _time, meta) => Effect.gen(function* () {
 *     for (const r of records) console.log(r.value)
 *     yield* stream.commitAsync(meta.offsetRanges)
 *   }))
 *   yield* ssc.start
 *   yield* ssc.awaitTermination
 * }))
 * ```
 *
 * @module
 */
import { type Duration, Effect, Result, Schema } from "effect"
import type * as KafkaJS from "kafkajs"
import * as DStream from "./DStream.ts"
import type { StreamingContext } from "./StreamingContext.ts"
import * as Time from "./Time.ts"
import { InputNode, type Node, type NodeContext, OutputNode } from "./_internal/node.ts"
import { ValidationError } from "./Errors.ts"
import { BatchTransactions, KafkaTransactionError as KafkaTransactionError_ } from "./_internal/kafkaTransactions.ts"
import type { KafkaClient, OutgoingRecord } from "./_internal/kafkaClient.ts"
import { ScaleInputNode } from "./_internal/repartition.ts"
import {
  type BatchMeta as BatchMeta_,
  type ClientOptions as ClientOptions_,
  type DeadLetter as DeadLetter_,
  DeadLetterNode,
  type Format as Format_,
  type FormatInput as FormatInput_,
  type Headers as Headers_,
  KafkaInputNode,
  type KafkaRecord as KafkaRecord_,
  KafkaUnreachableError as KafkaUnreachableError_,
  keyFormat,
  LazyProducer,
  type LogBridge,
  OffsetRange as OffsetRange_,
  type Strategy,
  textFormat,
  toFormat,
  type TopicPartitionOffset as TopicPartitionOffset_,
} from "../receivers/kafka.ts"
import { kafkajsClient } from "../receivers/kafkajs_client.ts"

/**
 * Spark's `OffsetRange`: the offsets `[fromOffset, untilOffset)` of one topic-partition in one
 * batch. `toString()` prints `OffsetRange(topic: 't', partition: 0, range: [0 -> 100])`.
 *
 * @example
 * ```ts
 * const r = new Kafka.OffsetRange("t", 0, 0, 100)
 * r.count() // 100
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export const OffsetRange: typeof OffsetRange_ = OffsetRange_
/**
 * The offsets of one topic-partition in one batch (instances of {@link OffsetRange}).
 *
 * @since 0.1.0
 * @category models
 */
export type OffsetRange = OffsetRange_

/**
 * The direct stream gave up: after a failure, no request to the brokers succeeded for its
 * `unreachableTimeout`. Names the brokers, the timeout and the last failure; it is the cause of
 * the `BatchJobError` that stops the context.
 *
 * @example
 * ```ts
 * ssc.awaitTermination.pipe(Effect.catchTag("BatchJobError", (e) =>
 *   e.cause instanceof Kafka.KafkaUnreachableError ? Effect.logError(e.cause.brokers) : Effect.fail(e)))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export const KafkaUnreachableError: typeof KafkaUnreachableError_ = KafkaUnreachableError_
/**
 * The error the direct stream fails with when its brokers stay unreachable (instances of
 * {@link KafkaUnreachableError}).
 *
 * @since 0.1.0
 * @category errors
 */
export type KafkaUnreachableError = KafkaUnreachableError_

/**
 * A decoded record: topic, partition, offset, timestamp, key (`null` when absent), value, headers.
 *
 * @since 0.1.0
 * @category models
 */
export type KafkaRecord<K, V> = KafkaRecord_<K, V>

/**
 * A record that failed to decode: where it was, its raw bytes and the parse error.
 *
 * @since 0.1.0
 * @category models
 */
export type DeadLetter = DeadLetter_

/**
 * What an output of the direct stream learns about its batch: the offset ranges and the
 * batch's dead letters.
 *
 * @since 0.1.0
 * @category models
 */
export type BatchMeta = BatchMeta_

/**
 * Record headers as kafkajs delivers them.
 *
 * @since 0.1.0
 * @category models
 */
export type Headers = Headers_

/**
 * How a key or value is read from bytes and written back.
 *
 * @since 0.1.0
 * @category models
 */
export type Format<A> = Format_<A>

/**
 * A {@link Format}, or any `Schema` whose encoded side is a string (read from UTF-8), e.g.
 * `Schema.String`, `Schema.NumberFromString`, `Schema.fromJsonString(MySchema)`.
 *
 * @since 0.1.0
 * @category models
 */
export type FormatInput<A> = FormatInput_<A>

/**
 * Kafka client options passed through to kafkajs: brokers, client id, SSL, SASL, timeouts,
 * retry, log level.
 *
 * @since 0.1.0
 * @category models
 */
export type ClientOptions = ClientOptions_

/**
 * A topic-partition and an offset.
 *
 * @since 0.1.0
 * @category models
 */
export type TopicPartitionOffset = TopicPartitionOffset_

/**
 * A topic-partition.
 *
 * @since 0.1.0
 * @category models
 */
export interface TopicPartition {
  /** The topic's name. */
  readonly topic: string
  /** The partition's number. */
  readonly partition: number
}

// ---- formats ------------------------------------------------------------------------------------

/**
 * Raw bytes, unchanged (a `null` value stays `null`).
 *
 * @example
 * ```ts
 * Kafka.KafkaDirectStream.make(ssc, { ...common, value: Kafka.bytes })
 * ```
 *
 * @since 0.1.0
 * @category formats
 */
export const bytes: Format<Uint8Array | null> = {
  _tag: "KafkaFormat",
  name: "bytes",
  decode: (b) => Result.succeed(b),
  encode: (b) => b,
  // no `Result` per record: bytes always "decode"
  decodeDirect: (b) => b,
}

/**
 * JSON text decoded with `schema` (`Schema.fromJsonString(schema)`).
 *
 * @example
 * ```ts
 * const Order = Schema.Struct({ id: Schema.String, amount: Schema.Number })
 * Kafka.KafkaDirectStream.make(ssc, { ...common, value: Kafka.json(Order) })
 * ```
 *
 * @since 0.1.0
 * @category formats
 */
export const json = <S extends Schema.Top & { readonly DecodingServices: never; readonly EncodingServices: never }>(
  schema: S,
): Format<S["Type"]> => textFormat(Schema.fromJsonString(schema), "json")

/**
 * UTF-8 text decoded with a string-encoded schema (what a plain schema option means).
 *
 * @example
 * ```ts
 * Kafka.text(Schema.NumberFromString)
 * ```
 *
 * @since 0.1.0
 * @category formats
 */
export const text = <A>(schema: Schema.Codec<A, string, never, never>): Format<A> => textFormat(schema)

// ---- the direct stream ----------------------------------------------------------------------

/**
 * Which partitions to consume (Spark's `ConsumerStrategies`): exactly one of `topics`
 * (Subscribe), `pattern` (SubscribePattern, matched against the topics that exist at start)
 * or `assign` (Assign: these partitions on every member, no sharing; an `offset` starts there).
 *
 * @since 0.1.0
 * @category models
 */
export type ConsumerStrategy =
  | { readonly topics: ReadonlyArray<string>; readonly pattern?: never; readonly assign?: never }
  | { readonly pattern: RegExp; readonly topics?: never; readonly assign?: never }
  | {
    readonly assign: ReadonlyArray<{ readonly topic: string; readonly partition: number; readonly offset?: number }>
    readonly topics?: never
    readonly pattern?: never
  }

/**
 * Options of {@link KafkaDirectStream.make}.
 *
 * @since 0.1.0
 * @category models
 */
export type DirectStreamOptions<K, V> = ClientOptions & ConsumerStrategy & {
  readonly groupId: string
  /** Where to start without a committed offset (default `"latest"`). */
  readonly autoOffsetReset?: "earliest" | "latest" | undefined
  /** Explicit starting offsets (override committed offsets). */
  readonly offsets?: ReadonlyArray<TopicPartitionOffset> | undefined
  /** The value's format: a string-encoded Schema, `Kafka.json(schema)` or `Kafka.bytes`. */
  readonly value: FormatInput<V>
  /** The key's format (default UTF-8 text); keys are `null` when absent. */
  readonly key?: FormatInput<K> | undefined
  /** Spark's `maxRatePerPartition`: records/s per partition (0 = unlimited); a batch takes rate × interval. */
  readonly maxRatePerPartition?: number | undefined
  /** Records buffered between kafkajs and the batches before kafkajs is held (default 100 000). */
  readonly maxBufferedRecords?: number | undefined
  /**
   * `"afterOutputs"` (default): each batch's ranges are committed once all its outputs
   * succeeded. `"manual"`: only what you pass to `commitAsync`, after the batch completes.
   */
  readonly commit?: "afterOutputs" | "manual" | undefined
  /** Also write every dead letter (raw key and value, error headers) to this topic. */
  readonly deadLetterTopic?: string | undefined
  readonly sessionTimeout?: number | undefined
  readonly heartbeatInterval?: number | undefined
  readonly rebalanceTimeout?: number | undefined
  readonly maxWaitTimeInMs?: number | undefined
  readonly maxBytesPerPartition?: number | undefined
  /**
   * After a failure (connection refused, broker gone, requests timing out), how long no request
   * to any broker may succeed before the stream fails with {@link KafkaUnreachableError}
   * (default 60 seconds). Meanwhile every failed connection attempt and consumer crash is a
   * `ReceiverError` listener event, and kafkajs's own log lines go through Effect's logger,
   * rate-limited.
   */
  readonly unreachableTimeout?: Duration.Input | undefined
}

/**
 * A direct stream: a DStream of typed records that also knows each batch's offset ranges,
 * its dead letters, and can commit offsets.
 *
 * @since 0.1.0
 * @category models
 */
export interface KafkaDirectStream<K, V, in R = never> extends DStream.DStream<KafkaRecord<K, V>, R> {
  /**
   * Runs `f` on every batch with its time and its {@link BatchMeta} (offset ranges, dead
   * letters); `f` may use the context's services, and its error type is kept by the handle.
   */
  foreachBatch<E = never>(
    f: (records: ReadonlyArray<KafkaRecord<K, V>>, time: number, meta: BatchMeta) => DStream.OutputResult<R, E>,
    options?: DStream.OutputOptions,
  ): DStream.Output<E>
  /** Alias of `foreachBatch` (Spark's name). */
  foreachRDD<E = never>(
    f: (records: ReadonlyArray<KafkaRecord<K, V>>, time: number, meta: BatchMeta) => DStream.OutputResult<R, E>,
    options?: DStream.OutputOptions,
  ): DStream.Output<E>
  /** Records that failed to decode, per batch. */
  readonly deadLetters: DStream.DStream<DeadLetter, R>
  /** The offset ranges of the batch at `time` (Spark's `HasOffsetRanges`). */
  offsetRanges(time: number): ReadonlyArray<OffsetRange>
  /**
   * Spark's `CanCommitOffsets.commitAsync`: queues the ranges; the highest `untilOffset` per
   * partition is committed after the current batch's outputs complete, never before.
   */
  commitAsync(ranges: ReadonlyArray<OffsetRange>): Effect.Effect<void>
  /** The partitions currently assigned to this member. */
  readonly assignment: Effect.Effect<ReadonlyArray<TopicPartition>>
  /** The offsets this stream has committed, per partition. */
  readonly committedOffsets: Effect.Effect<ReadonlyArray<TopicPartitionOffset>>
}

/**
 * Creates a direct stream (Spark's `KafkaUtils.createDirectStream`). The consumer connects
 * and joins the group when the context starts and leaves it when the context stops.
 * Auto-commit is off; see {@link DirectStreamOptions.commit}.
 *
 * @example
 * ```ts
 * const stream = Kafka.directStream(ssc, {
 *   brokers: ["127.0.0.1:9092"], groupId: "g", topics: ["events"], value: Schema.String,
 * })
 * stream.map((r) => r.value).print()
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const directStream = <V, K = string, R = never>(
  ssc: StreamingContext<R>,
  options: DirectStreamOptions<K, V>,
): KafkaDirectStream<K, V, R> => directStreamWith(ssc, options, (log) => kafkajsClient(options, log))

/**
 * {@link directStream} on a given Kafka client (the in-memory model of the tests, another
 * client library); `client` may be a function of the stream's log bridge, through which the
 * client's own log lines reach Effect's logger. The client settings of `options` (brokers, TLS)
 * are then used only in messages.
 * @internal
 */
export const directStreamWith = <V, K = string, R = never>(
  ssc: StreamingContext<R>,
  options: DirectStreamOptions<K, V>,
  client: KafkaClient | ((log: LogBridge) => KafkaClient),
): KafkaDirectStream<K, V, R> => {
  const kafka = typeof client === "function" ? client : () => client
  const ctx = ssc as unknown as NodeContext
  const strategy: Strategy = options.assign !== undefined
    ? { _tag: "Assign", partitions: options.assign.map((p) => ({ topic: p.topic, partition: p.partition })) }
    : options.pattern !== undefined
    ? { _tag: "SubscribePattern", pattern: options.pattern }
    : { _tag: "Subscribe", topics: options.topics! }
  const starts: Array<TopicPartitionOffset> = [...(options.offsets ?? [])]
  for (const p of options.assign ?? []) {
    if (p.offset !== undefined) starts.push({ topic: p.topic, partition: p.partition, offset: p.offset })
  }
  const sessionTimeout = options.sessionTimeout ?? 30_000
  const node = new KafkaInputNode<K, V>(
    ctx,
    {
      brokers: options.brokers,
      kafka,
      groupId: options.groupId,
      strategy,
      autoOffsetReset: options.autoOffsetReset ?? "latest",
      startingOffsets: starts,
      key: keyFormat(options.key),
      value: toFormat(options.value),
      maxRatePerPartition: options.maxRatePerPartition ?? 0,
      maxBufferedRecords: options.maxBufferedRecords ?? 100_000,
      commitMode: options.commit ?? "afterOutputs",
      sessionTimeout,
      heartbeatInterval: options.heartbeatInterval ?? Math.max(100, Math.floor(sessionTimeout / 10)),
      rebalanceTimeout: options.rebalanceTimeout ?? Math.max(60_000, sessionTimeout),
      maxWaitTimeInMs: options.maxWaitTimeInMs ?? 500,
      maxBytesPerPartition: options.maxBytesPerPartition,
      unreachableTimeout: options.unreachableTimeout === undefined
        ? 60_000
        : Time.millis(options.unreachableTimeout, "Kafka unreachableTimeout"),
    },
  )
  const base = DStream.fromNode(node)
  const deadLetters = DStream.fromNode(new DeadLetterNode(node))
  if (options.deadLetterTopic !== undefined) {
    const topic = options.deadLetterTopic
    const producer = new LazyProducer(kafka, {}, ctx)
    new OutputNode<DeadLetter>(deadLetters.node, (batch) => {
      if (batch.length === 0) return Effect.void
      return producer.send(batch.map((d) => ({
        topic,
        key: d.key,
        value: d.value,
        headers: {
          "dlq.topic": d.topic,
          "dlq.partition": String(d.partition),
          "dlq.offset": String(d.offset),
          "dlq.part": d.part,
          "dlq.error": d.error.replace(/\s*\n\s*/g, " "),
        },
      })))
    }, "deadLetterTopic")
  }
  const withMeta = <E>(
    f: (records: ReadonlyArray<KafkaRecord<K, V>>, time: number, meta: BatchMeta) => DStream.OutputResult<R, E>,
    options?: DStream.OutputOptions,
  ): DStream.Output<E> =>
    DStream.foreachBatch(
      base as DStream.DStream<KafkaRecord<K, V>, R>,
      (records, time) => f(records, time, node.meta(time)),
      options,
    )
  const stream = Object.assign(base, {
    foreachBatch: withMeta,
    foreachRDD: withMeta,
    deadLetters,
    offsetRanges: (time: number) => node.offsetRanges(time),
    commitAsync: (ranges: ReadonlyArray<OffsetRange>) => Effect.sync(() => node.commitAsync(ranges)),
    assignment: Effect.sync(() => node.assignment()),
    committedOffsets: Effect.sync(() => [...node.committed.values()]),
  })
  // `R` exists in types only: the context provides its services to every job at run time
  return stream as unknown as KafkaDirectStream<K, V, R>
}

/**
 * The issue's spelling: `KafkaDirectStream.make(ssc, options)` is {@link directStream}.
 *
 * @example
 * ```ts
 * const { KafkaDirectStream } = Kafka
 * const stream = KafkaDirectStream.make(ssc, { brokers, groupId, topics: ["t"], value: Schema.String })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const KafkaDirectStream = { make: directStream } as const

// ---- the sink -----------------------------------------------------------------------------------

/**
 * Options of {@link writeToKafka}: the client, the topic, and kafkajs producer settings.
 *
 * @since 0.1.0
 * @category models
 */
export interface SinkOptions extends ClientOptions {
  /** The topic the batches are written to. */
  readonly topic: string
  /** kafkajs `acks` (default -1: all in-sync replicas). */
  readonly acks?: number | undefined
  /** kafkajs `compression` (default: none). */
  readonly compression?: KafkaJS.CompressionTypes | undefined
  /** Passed to `kafka.producer(...)`. */
  readonly producer?: KafkaJS.ProducerConfig | undefined
  /**
   * Exactly-once Kafka → Kafka (default `false`): each batch is written in one Kafka transaction
   * together with the batch's input offsets (`sendOffsetsToTransaction` for the direct stream's
   * group), committed once every output of the batch succeeded; the direct stream then commits
   * nothing itself and reads `read_committed`. The stream must come from exactly one direct
   * stream on the same brokers (its client writes the transactions: `producer`, `acks` and
   * `compression` do not apply), without windows or state on the way and without a checkpoint
   * directory. See the README's "Exactly-once
   * Kafka to Kafka" for what this guarantees.
   */
  readonly exactlyOnce?: boolean | undefined
  /**
   * With `exactlyOnce`: the prefix of the transactional ids (default: the direct stream's group
   * id); each id is `<prefix>|<topic>:<partitions>` of the batch's input partitions.
   */
  readonly transactionalIdPrefix?: string | undefined
}

/**
 * A batch of an exactly-once sink could not be written: a write failed (its transaction is
 * aborted), or the transaction was fenced by a newer writer of the same input partitions, or
 * failed to commit. Names the batch time and the reason; it is the cause of the `BatchJobError`
 * that stops the context.
 *
 * @example
 * ```ts
 * ssc.awaitTermination.pipe(Effect.catchTag("BatchJobError", (e) =>
 *   e.cause instanceof Kafka.KafkaTransactionError ? Effect.logError(e.cause.reason) : Effect.fail(e)))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export const KafkaTransactionError: typeof KafkaTransactionError_ = KafkaTransactionError_
/**
 * The error an exactly-once batch fails with (instances of {@link KafkaTransactionError}).
 *
 * @since 0.1.0
 * @category errors
 */
export type KafkaTransactionError = KafkaTransactionError_

/**
 * Writes every batch to a Kafka topic through a producer that connects on the first batch and
 * disconnects when the context stops. Plain elements are values; with a `key` format the
 * elements are `[key, value]` pairs. A failed send fails the batch (and stops the context).
 *
 * @example
 * ```ts
 * counts.map(([w, n]) => `${w}:${n}`).pipe((s) => Kafka.writeToKafka(s, { brokers, topic: "out", value: Schema.String }))
 * pairs.pipe((s) => Kafka.writeToKafka(s, { brokers, topic: "out", key: Schema.String, value: Kafka.json(Schema.Number) }))
 * ```
 *
 * @since 0.1.0
 * @category output
 */
export function writeToKafka<K, V>(
  self: DStream.DStream<readonly [K, V]>,
  options: SinkOptions & { readonly key: FormatInput<K>; readonly value: FormatInput<V> },
): void
/** Writes plain elements as the records' values, without keys. */
export function writeToKafka<V>(
  self: DStream.DStream<V>,
  options: SinkOptions & { readonly key?: undefined; readonly value: FormatInput<V> },
): void
export function writeToKafka(
  self: DStream.DStream<any>,
  options: SinkOptions & { readonly key?: FormatInput<any> | undefined; readonly value: FormatInput<any> },
): void {
  const value = toFormat(options.value)
  const key = options.key === undefined ? undefined : toFormat(options.key)
  if (options.exactlyOnce === true) return writeExactlyOnce(self, options, key, value)
  const ctx = self.node.ctx
  const producer = new LazyProducer(
    (log) => kafkajsClient(options, log, { producer: options.producer }, "effect-dstream-producer"),
    {
      ...(options.acks !== undefined ? { acks: options.acks === 0 || options.acks === 1 ? options.acks : -1 } : {}),
      ...(options.compression !== undefined ? { compression: compressionNames[options.compression] } : {}),
    },
    ctx,
  )
  const topic = options.topic
  new OutputNode<any>(self.node, (batch) => {
    if (batch.length === 0) return Effect.void
    return Effect.flatMap(
      Effect.try({
        try: () => toRecords(batch, topic, key, value),
        catch: (e) => e,
      }),
      (records) => producer.send(records),
    )
  }, "writeToKafka")
}

/** A batch's outputs as records of `topic`: values, or `[key, value]` pairs when a key format is given. */
const toRecords = (
  batch: ReadonlyArray<any>,
  topic: string,
  key: Format<any> | undefined,
  value: Format<any>,
): Array<OutgoingRecord> =>
  batch.map((a): OutgoingRecord =>
    key === undefined
      ? { topic, key: null, value: value.encode(a) }
      : { topic, key: key.encode(a[0]), value: value.encode(a[1]) }
  )

/**
 * Operators that carry records from one batch into a later batch's output. The batch's
 * transaction commits the batch's input offsets, so after a restart what they held is gone:
 * refused in exactly-once mode. (State whose changes enlist in the batch's transaction, as the
 * scale-out changelog is meant to, would make state exactly-once too; a node that does so sets
 * `enlistsInTransactions` and is allowed.)
 */
const crossBatchKinds = new Set([
  "WindowedDStream",
  "ReducedWindowedDStream",
  "EventTimeWindowDStream",
  "StateDStream",
  "MapWithStateDStream",
])

/** The inputs `node` reads from, and the operators on the way that keep records across batches. */
const lineageOf = (node: Node<any>): { inputs: Array<InputNode<any>>; crossBatch: Array<string> } => {
  const seen = new Set<Node<any>>()
  const inputs: Array<InputNode<any>> = []
  const crossBatch: Array<string> = []
  const visit = (n: Node<any>) => {
    if (seen.has(n)) return
    seen.add(n)
    if (n instanceof InputNode) inputs.push(n)
    if (crossBatchKinds.has(n.kind) && (n as { enlistsInTransactions?: boolean }).enlistsInTransactions !== true) {
      crossBatch.push(n.kind)
    }
    for (const p of n.parents) visit(p)
  }
  visit(node)
  return { inputs, crossBatch }
}

/**
 * The exactly-once sink: the batch's records go into the batch's transaction of the direct
 * stream it reads from (lib/_internal/kafkaTransactions.ts), which the stream commits with its
 * offsets once the batch completed. Other writers of the batch may enlist in the same
 * transaction through `source.transactions`.
 */
const writeExactlyOnce = (
  self: DStream.DStream<any>,
  options: SinkOptions,
  key: Format<any> | undefined,
  value: Format<any>,
): void => {
  const { crossBatch, inputs } = lineageOf(self.node)
  const source = inputs[0]
  if (inputs.length !== 1 || !(source instanceof KafkaInputNode || source instanceof ScaleInputNode)) {
    throw new ValidationError({
      message: `Cannot write to Kafka topic "${options.topic}" exactly once: the stream must come from exactly one ` +
        `Kafka direct stream or scale-out stream, found ${inputs.map((i) => `"${i.name}"`).join(", ") || "no input"}`,
    })
  }
  if (crossBatch.length > 0) {
    throw new ValidationError({
      message: `Cannot write to Kafka topic "${options.topic}" exactly once: the stream keeps records across batches ` +
        `(${[...new Set(crossBatch)].join(", ")}), which a batch's transaction does not cover`,
    })
  }
  // a direct stream, or a scale-out stream (its changelog appends join the batch's transaction)
  const stream = source as KafkaInputNode<unknown, unknown> | ScaleInputNode<unknown, unknown>
  const warn = (message: string) =>
    stream instanceof ScaleInputNode
      ? stream.log("Warning", `exactly-once sink: ${message}`)
      : stream.log.line("Warning", `exactly-once sink: ${message}`)
  const same = (a: ReadonlyArray<string>, b: ReadonlyArray<string>) =>
    a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i])
  if (!same(options.brokers, stream.options.brokers)) {
    throw new ValidationError({
      message: `Cannot write to Kafka topic "${options.topic}" exactly once: the sink's brokers ${
        options.brokers.map((b) => `"${b}"`).join(", ")
      } are not the direct stream's ${
        stream.options.brokers.map((b) => `"${b}"`).join(", ")
      } (a transaction holds the input offsets and the outputs, on one cluster)`,
    })
  }
  const prefix = options.transactionalIdPrefix ?? stream.options.groupId
  if (stream.transactions !== undefined && stream.transactions.info.transactionalIdPrefix !== prefix) {
    throw new ValidationError({
      message: `Cannot write to Kafka topic "${options.topic}" exactly once with transactionalIdPrefix "${prefix}": ` +
        `the stream's other exactly-once sinks use "${stream.transactions.info.transactionalIdPrefix}" (one transaction per batch)`,
    })
  }
  const txs = stream.transactions ??= new BatchTransactions({
    client: stream.kafkaClient(),
    groupId: stream.options.groupId,
    transactionalIdPrefix: prefix,
    warn,
  })
  const topic = options.topic
  new OutputNode<any>(self.node, (batch, time) => {
    // the member's assignment names the transactional id: the set `prepare` fenced when it came
    const partitions = stream.assignment()
    return Effect.tryPromise({
      try: async () => {
        let records: Array<OutgoingRecord>
        try {
          records = toRecords(batch, topic, key, value)
        } catch (e) {
          await txs.abort(time, e)
          throw new KafkaTransactionError_({
            batchTime: time,
            reason: `a record of topic "${topic}" failed to encode, the batch's transaction is aborted: ${
              e instanceof Error ? e.message : String(e)
            }`,
            cause: e,
          })
        }
        if (records.length > 0) await txs.send(time, partitions, records)
      },
      catch: (e) => e,
    })
  }, "writeToKafka (exactly once)")
}

/**
 * Data-last {@link writeToKafka}, for `pipe`.
 *
 * @example
 * ```ts
 * words.pipe(Kafka.sink({ brokers, topic: "words", value: Schema.String }))
 * ```
 *
 * @since 0.1.0
 * @category output
 */
export function sink<K, V>(
  options: SinkOptions & { readonly key: FormatInput<K>; readonly value: FormatInput<V> },
): (self: DStream.DStream<readonly [K, V]>) => void
/** Data-last {@link writeToKafka} for plain elements: values without keys. */
export function sink<V>(
  options: SinkOptions & { readonly key?: undefined; readonly value: FormatInput<V> },
): (self: DStream.DStream<V>) => void
export function sink(options: any): (self: DStream.DStream<any>) => void {
  return (self) => writeToKafka(self, options)
}

/** kafkajs's `CompressionTypes` (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd) by name. */
const compressionNames = ["none", "gzip", "snappy", "lz4", "zstd"] as const
