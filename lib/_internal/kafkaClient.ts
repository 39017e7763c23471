/**
 * The small Kafka client interface the engine is written against: a consumer group with
 * assignment events, partition reads from an offset to the end, a producer (with transactions)
 * and an admin for topics. The kafkajs 2.2.4 implementation lives in `receivers/`; a second
 * client (for instance @platformatic/kafka) can implement this without touching the engine, and
 * the tests' in-memory model implements it to show the transactional guarantees the mock broker
 * cannot.
 *
 * Promise-based on purpose: implementations wrap callback and promise clients; the engine wraps
 * these calls in Effects where it uses them.
 * @internal
 */

/** One partition of one topic. @internal */
export interface TopicPartition {
  readonly topic: string
  readonly partition: number
}

/** One string key for a topic-partition (maps and sets of partitions). @internal */
export const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`

/** A position in a partition: the next offset to read or commit. @internal */
export interface TopicPartitionOffset extends TopicPartition {
  readonly offset: number
}

/** Record headers as the wire carries them. @internal */
export type RawHeaders = Readonly<Record<string, Uint8Array | string | ReadonlyArray<Uint8Array | string> | undefined>>

/** A record as read: bytes, not decoded. @internal */
export interface RawRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  /** Epoch milliseconds. */
  readonly timestamp: number
  readonly key: Uint8Array | null
  readonly value: Uint8Array | null
  readonly headers: RawHeaders
}

/** A record to write. Without `partition`, the client's default partitioner (Kafka's murmur2 of the key) picks it. @internal */
export interface OutgoingRecord {
  readonly topic: string
  readonly partition?: number | undefined
  readonly key: Uint8Array | string | null
  /** `null` is a tombstone (a removal, for compacted topics). */
  readonly value: Uint8Array | string | null
  readonly headers?: Readonly<Record<string, Uint8Array | string>> | undefined
  readonly timestamp?: number | undefined
}

/** Where a write landed. @internal */
export interface WriteResult extends TopicPartition {
  /** The offset of the first record written to this partition by the call. */
  readonly baseOffset: number
}

/** Records of one partition delivered by a consumer group, in offset order. @internal */
export interface FetchedBatch extends TopicPartition {
  readonly records: ReadonlyArray<RawRecord>
  /** The partition's high-water mark when fetched (-1 when unknown). */
  readonly highWatermark: number
}

/** What a fetch handler may do while it holds a batch (backpressure). @internal */
export interface FetchControl {
  /**
   * Keeps the membership alive while the handler waits; rejects when a rebalance started (the
   * client has then called `onRebalancing`, and `isActive()` is false). A handler that lets
   * the rejection propagate lets the client rejoin the group.
   */
  readonly heartbeat: () => Promise<void>
  /** False once the consumer stops or the batch's partition is being revoked. */
  readonly isActive: () => boolean
  /** Commits through the fetch loop (usable during a rebalance, before the partition goes). */
  readonly commit: (offsets: ReadonlyArray<TopicPartitionOffset>) => Promise<void>
}

/** How a group consumer reports what happens to it. Handlers run on the client's loop. @internal */
export interface ConsumerGroupHandlers {
  /**
   * The member now owns exactly `assigned` (a full assignment, not a delta) in generation
   * `generation` (increasing with every assignment this member gets; the group's generation id
   * where the client exposes it — kafkajs 2.2.4 does not, so its implementation counts the
   * member's joins). The client delivers no records until the returned promise settles (it
   * keeps the membership alive meanwhile), so a handler can restore the state of new partitions
   * first. The handler may resolve to positions where assigned partitions start instead of their
   * committed offsets (applied before any record of the assignment is delivered); a rejection
   * is reported through `onCrash` (not restarting).
   */
  readonly onAssignment: (
    assigned: ReadonlyArray<TopicPartition>,
    generation: number,
  ) => Promise<void | ReadonlyArray<TopicPartitionOffset>>
  /** A rebalance started: the current assignment may be revoked. */
  readonly onRebalancing: () => void
  /** Records of one partition, in order; the next fetch waits until the returned promise settles. */
  readonly onBatch: (batch: FetchedBatch, control: FetchControl) => Promise<void>
  /** The consumer gave up (`restarting`: the client restarts it itself). */
  readonly onCrash: (error: unknown, restarting: boolean) => void
  /** A request failed or timed out (for reachability reporting). */
  readonly onRequestFailure?: ((message: string) => void) | undefined
  /** A request succeeded (for reachability reporting). */
  readonly onRequest?: (() => void) | undefined
}

/** @internal */
export interface ConsumerGroupOptions {
  readonly groupId: string
  /** Topics to subscribe to, or a pattern, or a fixed assignment (still within the group for commits). */
  readonly subscription:
    | { readonly _tag: "Topics"; readonly topics: ReadonlyArray<string> }
    | { readonly _tag: "Pattern"; readonly pattern: RegExp }
    | { readonly _tag: "Assign"; readonly partitions: ReadonlyArray<TopicPartition> }
  /** Where a partition with no committed offset starts. */
  readonly fromBeginning: boolean
  /** `read_committed` hides aborted transactional records. */
  readonly isolation: "read_committed" | "read_uncommitted"
  readonly sessionTimeout: number
  readonly heartbeatInterval: number
  readonly rebalanceTimeout: number
  readonly maxWaitTimeInMs: number
  readonly maxBytesPerPartition?: number | undefined
}

/** A running group member. @internal */
export interface ConsumerGroup {
  /** Moves the next fetch of an assigned partition to `offset`. */
  readonly seek: (position: TopicPartitionOffset) => void
  /** Commits group offsets (the next offset to read) outside the fetch loop. */
  readonly commit: (offsets: ReadonlyArray<TopicPartitionOffset>) => Promise<void>
  /** Leaves the group and closes the connection. */
  readonly disconnect: () => Promise<void>
}

/** @internal */
export interface ProducerOptions {
  /** Enables transactions; one id per independent writer (a restarted writer with the same id fences the old one). */
  readonly transactionalId?: string | undefined
  readonly idempotent?: boolean | undefined
  /** 1 keeps records of one partition in send order across retries. */
  readonly maxInFlightRequests?: number | undefined
  readonly acks?: -1 | 0 | 1 | undefined
  /** Compression of produced record batches (default none). */
  readonly compression?: "none" | "gzip" | "snappy" | "lz4" | "zstd" | undefined
}

/** One open transaction. @internal */
export interface Transaction {
  readonly send: (records: ReadonlyArray<OutgoingRecord>) => Promise<ReadonlyArray<WriteResult>>
  /** Group offsets committed atomically with the transaction's records. */
  readonly sendOffsets: (groupId: string, offsets: ReadonlyArray<TopicPartitionOffset>) => Promise<void>
  readonly commit: () => Promise<void>
  readonly abort: () => Promise<void>
}

/** @internal */
export interface Producer {
  readonly send: (records: ReadonlyArray<OutgoingRecord>) => Promise<ReadonlyArray<WriteResult>>
  /** Starts a transaction (only with a `transactionalId`); fails when a newer producer fenced this one. */
  readonly transaction: () => Promise<Transaction>
  readonly disconnect: () => Promise<void>
}

/** @internal */
export interface TopicSpec {
  readonly topic: string
  readonly partitions: number
  readonly replicationFactor?: number | undefined
  readonly config?: Readonly<Record<string, string>> | undefined
}

/** @internal */
export interface Admin {
  /** Creates the topics that do not exist; resolves to the names it created. */
  readonly createTopics: (topics: ReadonlyArray<TopicSpec>) => Promise<ReadonlyArray<string>>
  /** Partition counts of the topics that exist (absent: the topic does not exist). */
  readonly partitionCounts: (topics: ReadonlyArray<string>) => Promise<ReadonlyMap<string, number>>
  /** Low and high water marks of every partition of a topic. */
  readonly watermarks: (
    topic: string,
  ) => Promise<ReadonlyArray<TopicPartition & { readonly low: number; readonly high: number }>>
  /**
   * Per partition of `topic`, the first offset whose record has a timestamp at or after
   * `timestamp` (-1: none, every record is older).
   */
  readonly offsetsForTimestamp: (topic: string, timestamp: number) => Promise<ReadonlyArray<TopicPartitionOffset>>
  /** A group's committed offsets for a topic (-1: none). */
  readonly committed: (groupId: string, topic: string) => Promise<ReadonlyArray<TopicPartitionOffset>>
  readonly disconnect: () => Promise<void>
}

/** The client the engine is written against. @internal */
export interface KafkaClient {
  readonly consumerGroup: (options: ConsumerGroupOptions, handlers: ConsumerGroupHandlers) => Promise<ConsumerGroup>
  /**
   * Reads one partition from `fromOffset` up to its end as it was when the read started
   * (the high-water mark, or the last stable offset under `read_committed`), in chunks, outside
   * any group. Used to restore state from a changelog and to re-fetch recorded ranges.
   */
  readonly readPartition: (
    partition: TopicPartition,
    fromOffset: number,
    options?: { readonly isolation?: "read_committed" | "read_uncommitted" | undefined },
  ) => AsyncIterable<ReadonlyArray<RawRecord>>
  readonly producer: (options?: ProducerOptions) => Promise<Producer>
  readonly admin: () => Promise<Admin>
}

/**
 * Whether `error` (or an error in its `cause` chain) is one of Kafka's "the group is
 * rebalancing" errors (`REBALANCE_IN_PROGRESS`, `ILLEGAL_GENERATION`,
 * `NOT_COORDINATOR_FOR_GROUP`, as a `type` property: kafkajs's spelling of the protocol's error
 * names). A commit or heartbeat that fails with one is retried after the rejoin, not reported.
 * @internal
 */
export const isRebalanceError = (error: unknown): boolean => {
  const err = error as { type?: unknown; cause?: unknown } | undefined
  if (err === undefined || err === null || typeof err !== "object") return false
  if (
    err.type === "REBALANCE_IN_PROGRESS" || err.type === "NOT_COORDINATOR_FOR_GROUP" ||
    err.type === "ILLEGAL_GENERATION"
  ) return true
  return err.cause !== undefined && err.cause !== error && isRebalanceError(err.cause)
}

/** A decoded record, as the direct stream and the scale-out stream hand it to a pipeline. @internal */
export interface KafkaRecord<K, V> {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  /** Epoch milliseconds. */
  readonly timestamp: number
  /** `null` when the record has no key. */
  readonly key: K | null
  readonly value: V
  readonly headers: RawHeaders
}
