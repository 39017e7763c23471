/**
 * Stateful pipelines that scale out over a Kafka consumer group, the way Kafka Streams scales:
 * no coordinator and no cluster of our own. Start the same program N times with one
 * `applicationId`; the processes split the input partitions, and keyed state is sharded by
 * Kafka partition:
 *
 * - `repartitionByKey` produces every input record's `[key, value]` pairs to the internal topic
 *   `<applicationId>-<name>-repartition`, keyed by the state key (Kafka's murmur2 partitioner,
 *   so a key always lands on one partition), and the same group consumes it: each repartition
 *   partition is one state shard with one owner. `partitionedByKey: true` declares the input
 *   already partitioned by the key (no repartition topic; every key is checked).
 * - `updateStateByKey` / `mapWithState` keep one shard per partition. Every batch appends each
 *   shard's changed keys (a removal as a tombstone) and a marker to
 *   `<applicationId>-<name>-changelog` at the shard's partition, then commits offsets. A process
 *   assigned a partition restores its shard from the changelog before its first batch with it;
 *   a revoked shard is dropped, so no key is held by two processes.
 * - State is exactly once: a shard remembers the last offset it applied and, per source
 *   partition, the last source record; a replayed or twice-produced record is skipped. Outputs
 *   (`foreachBatch`, sinks) are at least once.
 *
 * @example
 * ```ts
 * import { Effect, Option, Schema } from "effect"
 * import { KafkaScale, StreamingContext } from "effect-dstream"
 *
 * const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
 * const counts = KafkaScale.scaleOut(ssc, {
 *   brokers: ["127.0.0.1:9092"], applicationId: "word-count", topic: "lines", value: Schema.String,
 * })
 *   .repartitionByKey({
 *     name: "words",
 *     by: (record) => record.value.split(" ").map((w) => [w, 1] as const),
 *     key: Schema.String,
 *     value: Schema.NumberFromString,
 *   })
 *   .updateStateByKey((ones: ReadonlyArray<number>, state: Option.Option<number>) =>
 *     Option.some(ones.length + Option.getOrElse(state, () => 0)), { schemas: { state: Schema.Number } })
 * counts.print()
 * ```
 *
 * @module
 */
import { Duration, Effect, type Option } from "effect"
import * as DStream from "./DStream.ts"
import type { StateSchemas, StateSpec, UpdateStateOptions, UpdateStateWithTime } from "./State.ts"
import type { StreamingContext } from "./StreamingContext.ts"
import type { KafkaRecord } from "./Kafka.ts"
import type { NodeContext } from "./_internal/node.ts"
import { OutputNode } from "./_internal/node.ts"
import {
  RepartitionNode,
  type RestoreInfo as RestoreInfo_,
  ScaleInputNode,
  ScaleOutError as ScaleOutError_,
  ShardedStateNode,
  type ShardInfo as ShardInfo_,
  type Stage,
  type StandbyInfo as StandbyInfo_,
} from "./_internal/repartition.ts"
import { shardCodec } from "./_internal/shards.ts"
import { StateSnapshotsNode } from "./_internal/state.ts"
import type { KafkaClient } from "./_internal/kafkaClient.ts"
import { type ClientOptions, type FormatInput, keyFormat, LogBridge, toFormat } from "../receivers/kafka.ts"
import { kafkajsClient } from "../receivers/kafkajs_client.ts"

/**
 * A scale-out stream cannot run as configured: an internal topic with a partition count other
 * than the input's, a key that does not belong to the partition the input was declared to be
 * partitioned by, a key that encodes to `null`.
 *
 * @example
 * ```ts
 * ssc.awaitTermination.pipe(Effect.catchTag("BatchJobError", (e) =>
 *   e.cause instanceof KafkaScale.ScaleOutError ? Effect.logError(e.cause.message) : Effect.fail(e)))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export const ScaleOutError: typeof ScaleOutError_ = ScaleOutError_
/**
 * Instances of {@link ScaleOutError}.
 *
 * @since 0.1.0
 * @category errors
 */
export type ScaleOutError = ScaleOutError_

/**
 * A state shard this process owns: stage, partition, keys, the highest offset applied and the
 * records skipped as already applied.
 *
 * @since 0.1.0
 * @category models
 */
export type ShardInfo = ShardInfo_

/**
 * A finished shard restore: records read from the changelog, keys, time, records/s, and the
 * records ignored (a crashed append, a zombie's writes).
 *
 * @since 0.1.0
 * @category models
 */
export type RestoreInfo = RestoreInfo_

/**
 * A standby shard: a changelog partition this process tails without owning it (option
 * `standbys`), so that a takeover reads only the tail: stage, partition, keys, the offset read up
 * to and the records behind the partition's end.
 *
 * @since 0.1.0
 * @category models
 */
export type StandbyInfo = StandbyInfo_

const millis = (d: Duration.Input | undefined, fallback: number, name: string): number => {
  if (d === undefined) return fallback
  const ms = Duration.toMillis(Duration.fromInputUnsafe(d))
  if (!(ms > 0) || !Number.isFinite(ms)) {
    throw new ScaleOutError({ message: `Invalid ${name} ${JSON.stringify(String(d))}: it must be a positive duration` })
  }
  return ms
}

/**
 * Options of {@link scaleOut}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScaleOutOptions<K, V> extends ClientOptions {
  /** Names the internal topics (`<applicationId>-<name>-repartition`, `-changelog`). */
  readonly applicationId: string
  /** The consumer group (default: the application id). */
  readonly groupId?: string | undefined
  /** The input topic (one topic; internal topics get its partition count). */
  readonly topic: string
  /** The value's format: a string-encoded Schema, `Kafka.json(schema)` or `Kafka.bytes`. */
  readonly value: FormatInput<V>
  /** The key's format (default UTF-8 text); keys are `null` when absent. */
  readonly key?: FormatInput<K> | undefined
  /** Where to start without a committed offset (default `"earliest"`). */
  readonly autoOffsetReset?: "earliest" | "latest" | undefined
  /** Create the internal topics with the input's partition count when the broker allows (default true). */
  readonly createTopics?: boolean | undefined
  /** Records buffered before the consumer is held (default 100 000). */
  readonly maxBufferedRecords?: number | undefined
  /**
   * Records of one partition a batch takes at most (default 10 000): after a stall, batches stay
   * short, so the member keeps heartbeating and its changelog appends stay small.
   */
  readonly maxRecordsPerPartition?: number | undefined
  /** The group session timeout in ms: a member silent this long loses its partitions (default 30 000). */
  readonly sessionTimeout?: number | undefined
  /** How often the member heartbeats, in ms (default a tenth of the session timeout). */
  readonly heartbeatInterval?: number | undefined
  /** How long a rebalance waits for members to rejoin, in ms (default 60 000, at least the session timeout). */
  readonly rebalanceTimeout?: number | undefined
  /** How long a fetch waits for records on the broker, in ms (default 500). */
  readonly maxWaitTimeInMs?: number | undefined
  /**
   * A directory for local caches of the shards this member owns (default: the context's
   * checkpoint directory's `kafka-scale/<applicationId>`; without either, no cache). A member
   * assigned a partition reads its cache, then only the changelog after it; a cache the
   * changelog does not confirm (corrupt, another log, compacted away) is reported and ignored.
   */
  readonly stateDirectory?: string | undefined
  /** A shard's cache is written at most this often, after a batch's append (default 10 s; also on revocation and at stop). */
  readonly cacheInterval?: Duration.Input | undefined
  /**
   * Standby shards: tail the changelog partitions this member does not own (`true`: all of
   * them; or a list of partitions), so that taking one over reads only what the standby had not
   * read yet. Costs the memory of those shards and a read of every changelog append.
   */
  readonly standbys?: boolean | ReadonlyArray<number> | undefined
  /** How often standby shards read the changelog's new records (default 1 s). */
  readonly standbyInterval?: Duration.Input | undefined
}

/**
 * How {@link ScaleOutStream.repartitionByKey} keys the input: `by` runs once per input record and
 * returns its pairs (it must be deterministic: a record read again must give the same pairs).
 *
 * @since 0.1.0
 * @category models
 */
export type RepartitionSpec<K0, V0, K, V> =
  & {
    /** Names the internal topics; keep it stable across versions of the program. */
    readonly name: string
    readonly by: (record: KafkaRecord<K0, V0>) => Iterable<readonly [K, V]>
    /** The key's format in Kafka (its bytes decide the partition). */
    readonly key: FormatInput<K>
  }
  & (
    | { readonly partitionedByKey?: false | undefined; readonly value: FormatInput<V> }
    | { readonly partitionedByKey: true; readonly value?: undefined }
  )

/**
 * A scale-out input: a DStream of the records this process was assigned, and `repartitionByKey` to
 * key them for sharded state.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScaleOutStream<K, V, in R = never> extends DStream.DStream<KafkaRecord<K, V>, R> {
  /** Keys every input record, through a repartition topic (or, declared, the input partitions). */
  repartitionByKey<K2, V2>(spec: RepartitionSpec<K, V, K2, V2>): ShardedStream<K2, V2, R>
  /** The state shards this process owns. */
  readonly shards: Effect.Effect<ReadonlyArray<ShardInfo>>
  /** The shard restores this process has done. */
  readonly restores: Effect.Effect<ReadonlyArray<RestoreInfo>>
  /** The standby shards this process keeps (`standbys` option): keys, changelog offset read, records behind. */
  readonly standbys: Effect.Effect<ReadonlyArray<StandbyInfo>>
  /** The partitions (input and repartition) currently assigned to this process. */
  readonly assignment: Effect.Effect<ReadonlyArray<{ readonly topic: string; readonly partition: number }>>
}

/**
 * Keyed pairs sharded by Kafka partition, ready for a stateful operator.
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardedStream<K, V, in R = never> {
  /**
   * Spark's `updateStateByKey`, per shard: every batch `update` sees every key of the shards
   * this process owns (values empty without data); the batch is that state. Give
   * `schemas.state` (and `schemas.key` for non-JSON keys) so the changelog can be read back.
   */
  updateStateByKey<S>(
    update: (values: ReadonlyArray<V>, state: Option.Option<S>) => Option.Option<S>,
    options?: UpdateStateOptions<K, S>,
  ): DStream.DStream<readonly [K, S], R>
  /** The form whose update also sees the key and the batch time (`UpdateStateWithTime`). */
  updateStateByKey<S>(options: UpdateStateWithTime<K, V, S>): DStream.DStream<readonly [K, S], R>
  /** Spark's `mapWithState`, per shard (a timeout is checked every 10 batches). */
  mapWithState<S, T>(spec: StateSpec<K, V, S, T>): ShardedMapWithState<K, S, T, R>
}

/**
 * A sharded `mapWithState`: what the function emitted, and the owned state after each batch.
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardedMapWithState<K, S, T, in R = never> extends DStream.DStream<T, R> {
  /** Every batch, the state of the shards this process owns (Spark's `stateSnapshots`). */
  stateSnapshots(): DStream.DStream<readonly [K, S], R>
}

/**
 * A scale-out stream over a consumer group (see the module docs). Connects when the context
 * starts: checks (or creates) the internal topics, joins the group, restores assigned shards.
 *
 * @example
 * ```ts
 * const lines = KafkaScale.scaleOut(ssc, { brokers, applicationId: "wc", topic: "lines", value: Schema.String })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const scaleOut = <V, K = string, R = never>(
  ssc: StreamingContext<R>,
  options: ScaleOutOptions<K, V>,
): ScaleOutStream<K, V, R> => scaleOutWith(ssc, options, undefined)

/**
 * {@link scaleOut} on a given client (the tests' in-memory model of Kafka); `undefined`: kafkajs.
 * @internal
 */
export const scaleOutWith = <V, K = string, R = never>(
  ssc: StreamingContext<R>,
  options: ScaleOutOptions<K, V>,
  kafkaClient: KafkaClient | undefined,
): ScaleOutStream<K, V, R> => {
  if (!/^[A-Za-z0-9._-]+$/.test(options.applicationId)) {
    throw new ScaleOutError({
      message:
        `Invalid applicationId "${options.applicationId}": use letters, digits, ".", "_" and "-" (it names topics)`,
    })
  }
  const ctx = ssc as unknown as NodeContext
  const log = new LogBridge(`Kafka scale-out [${options.applicationId}]`)
  let client: KafkaClient | undefined = undefined
  const sessionTimeout = options.sessionTimeout ?? 30_000
  const node = new ScaleInputNode<K, V>(ctx, {
    client: (services) => {
      if (services !== undefined) log.services = services
      return client ??= kafkaClient ?? kafkajsClient(options, log, {}, `effect-dstream-${options.applicationId}`)
    },
    brokers: options.brokers,
    applicationId: options.applicationId,
    groupId: options.groupId ?? options.applicationId,
    topic: options.topic,
    key: keyFormat(options.key),
    value: toFormat(options.value),
    fromBeginning: (options.autoOffsetReset ?? "earliest") === "earliest",
    sessionTimeout,
    heartbeatInterval: options.heartbeatInterval ?? Math.max(100, Math.floor(sessionTimeout / 10)),
    rebalanceTimeout: options.rebalanceTimeout ?? Math.max(60_000, sessionTimeout),
    maxWaitTimeInMs: options.maxWaitTimeInMs ?? 500,
    maxBufferedRecords: options.maxBufferedRecords ?? 100_000,
    maxRecordsPerPartition: options.maxRecordsPerPartition ?? 10_000,
    createTopics: options.createTopics ?? true,
    stateDirectory: options.stateDirectory,
    cacheIntervalMillis: millis(options.cacheInterval, 10_000, "cacheInterval"),
    standbys: options.standbys ?? false,
    standbyIntervalMillis: millis(options.standbyInterval, 1000, "standbyInterval"),
  })
  const base = DStream.fromNode(node)
  const stream = Object.assign(base, {
    repartitionByKey: <K2, V2>(spec: RepartitionSpec<K, V, K2, V2>) => sharded(node, spec),
    shards: Effect.sync(() => node.shardInfo()),
    restores: Effect.sync((): ReadonlyArray<RestoreInfo> => [...node.restores]),
    assignment: Effect.sync(() => node.assignment()),
    standbys: Effect.sync(() => node.standbyInfo()),
  })
  return stream as unknown as ScaleOutStream<K, V, R>
}

const sharded = <K0, V0, K, V>(
  input: ScaleInputNode<K0, V0>,
  spec: RepartitionSpec<K0, V0, K, V>,
): ShardedStream<K, V, any> => {
  if (!/^[A-Za-z0-9._-]+$/.test(spec.name)) {
    throw new ScaleOutError({
      message: `Invalid repartition name "${spec.name}": use letters, digits, ".", "_" and "-" (it names topics)`,
    })
  }
  if (input.stages.some((s) => s.name === spec.name)) {
    throw new ScaleOutError({ message: `Cannot repartition: the name "${spec.name}" is already used` })
  }
  const app = input.options.applicationId
  const stage: Stage<K, V> = {
    name: spec.name,
    repartitionTopic: spec.partitionedByKey === true ? undefined : `${app}-${spec.name}-repartition`,
    changelogTopic: `${app}-${spec.name}-changelog`,
    key: toFormat(spec.key),
    value: spec.value === undefined ? undefined : toFormat(spec.value),
    state: undefined,
  }
  input.stages.push(stage)
  const keyed = new RepartitionNode<K0, V0, K, V>(input, stage, spec.by)
  const attach = <S, T>(node: ShardedStateNode<K, V, S, T>): void => {
    if (stage.state !== undefined) {
      throw new ScaleOutError({
        message: `Cannot add a second stateful operator to "${spec.name}": one state per repartition`,
      })
    }
    stage.state = node
    // the state advances (and its changelog is written) every batch, whatever the outputs
    new OutputNode(node, () => Effect.void, "changelog")
  }
  const updateStateByKey = <S>(
    update:
      | ((values: ReadonlyArray<V>, state: Option.Option<S>) => Option.Option<S>)
      | UpdateStateWithTime<K, V, S>,
    options?: UpdateStateOptions<K, S>,
  ): DStream.DStream<readonly [K, S]> => {
    const opts: UpdateStateOptions<K, S> | undefined = typeof update === "function" ? options : update
    const fn = typeof update === "function"
      ? (_t: number, _k: K, values: ReadonlyArray<V>, state: Option.Option<S>) => update(values, state)
      : update.update
    if (opts?.initialState !== undefined) {
      throw new ScaleOutError({ message: "Sharded updateStateByKey does not take an initialState" })
    }
    const schemas: StateSchemas<K, S> | undefined = opts?.schemas
    const node = new ShardedStateNode<K, V, S, readonly [K, S]>(
      keyed,
      stage,
      { _tag: "update", update: fn },
      shardCodec(schemas?.key, schemas?.state),
    )
    attach(node)
    return DStream.fromNode(node)
  }
  const mapWithState = <S, T>(spec: StateSpec<K, V, S, T>) => {
    if (spec.initial !== undefined) {
      throw new ScaleOutError({ message: "Sharded mapWithState does not take an initialState" })
    }
    const node = new ShardedStateNode<K, V, S, T>(
      keyed,
      stage,
      { _tag: "mapWithState", fn: spec.fn, timeoutMillis: spec.timeoutMillis },
      shardCodec(spec.schemas.key, spec.schemas.state),
    )
    attach(node)
    return Object.assign(DStream.fromNode(node), {
      stateSnapshots: () => DStream.fromNode(new StateSnapshotsNode<K, S>(node, "KafkaShardedStateSnapshotsDStream")),
    })
  }
  return { updateStateByKey, mapWithState } as ShardedStream<K, V, any>
}
