/**
 * The Kafka direct stream's machinery (Spark's `DirectKafkaInputDStream`, on the client
 * interface of lib/_internal/kafkaClient.ts — kafkajs in receivers/kafkajs_client.ts): a
 * scoped group consumer whose `eachBatch` fills a bounded per-partition buffer (awaiting, with
 * heartbeats, while it is full: backpressure), an input node that cuts one explicit offset
 * range per topic-partition at every batch tick (bounded by `maxRatePerPartition`), typed
 * decoding with dead letters, and commits sent only after a batch's outputs completed.
 *
 * With a checkpoint directory the stream takes part in graph checkpoints (Spark's
 * `DirectKafkaInputDStreamCheckpointData`): each checkpoint records the offset ranges of every
 * batch cut after it and of the remembered batches before it; a recovered context fetches those
 * ranges again and re-runs those batches with exactly them, and offsets are committed only up to
 * what a durable checkpoint covers.
 * @internal
 */
import { Buffer } from "node:buffer"
import { type Context, Data, Duration, Effect, Result, Schema, type Scope } from "effect"
import type * as KafkaJS from "kafkajs"
import {
  type Admin,
  type ConsumerGroup,
  type ConsumerGroupOptions,
  type FetchControl,
  type FetchedBatch,
  isRebalanceError,
  type KafkaClient,
  type KafkaRecord as KafkaRecord_,
  type OutgoingRecord,
  type Producer,
  type ProducerOptions,
  type RawHeaders,
  type RawRecord,
  type TopicPartition,
  tpKey,
} from "../lib/_internal/kafkaClient.ts"
import { type InputCheckpoint, InputNode, type InputRuntime, Node, type NodeContext } from "../lib/_internal/node.ts"
import type { BatchInfo } from "../lib/Listener.ts"
import * as Time from "../lib/Time.ts"
import type { TaggedErrorClass } from "../lib/_internal/taggedError.ts"
import type { BatchTransactions } from "../lib/_internal/kafkaTransactions.ts"

// ---- offset ranges --------------------------------------------------------------------------

/**
 * Spark's `OffsetRange`: records `[fromOffset, untilOffset)` of one topic-partition in one batch.
 * @internal
 */
export class OffsetRange {
  constructor(
    readonly topic: string,
    readonly partition: number,
    /** Inclusive. */
    readonly fromOffset: number,
    /** Exclusive. */
    readonly untilOffset: number,
  ) {}
  /** Number of offsets in the range. */
  count(): number {
    return this.untilOffset - this.fromOffset
  }
  toString(): string {
    return `OffsetRange(topic: '${this.topic}', partition: ${this.partition}, range: [${this.fromOffset} -> ${this.untilOffset}])`
  }
}

// ---- formats --------------------------------------------------------------------------------

/** How a key or value is read from and written to bytes. @internal */
export interface Format<A> {
  readonly _tag: "KafkaFormat"
  readonly name: string
  /** `Result.fail(message)` when the bytes do not decode. */
  readonly decode: (bytes: Uint8Array | null) => Result.Result<A, string>
  readonly encode: (a: A) => Uint8Array | string | null
  /**
   * Optional fast path (the string format): the decoded value, or `undefined` when the bytes do
   * not decode (then `decode` gives the failure). Saves a `Result` per key and value.
   */
  readonly decodeDirect?: ((bytes: Uint8Array) => A | undefined) | undefined
}

/** A format, or a Schema whose encoded side is a UTF-8 string. @internal */
export type FormatInput<A> = Format<A> | Schema.Codec<A, string, never, never>

const utf8 = new TextDecoder("utf-8", { fatal: true })
/** UTF-8 text; throws on invalid bytes. kafkajs hands out Buffers, whose decoder is faster. */
const toText = (bytes: Uint8Array): string => {
  if (Buffer.isBuffer(bytes)) {
    const s = bytes.toString("utf8")
    if (s.indexOf("\uFFFD") < 0) return s
  }
  return utf8.decode(bytes)
}

/** @internal */
export const isFormat = (u: unknown): u is Format<unknown> =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "KafkaFormat"

/** A text format from a schema whose encoded side is a string. @internal */
export const textFormat = <A>(schema: Schema.Codec<A, string, never, never>, name = "text"): Format<A> => {
  if ((schema as unknown) === Schema.String) {
    return {
      _tag: "KafkaFormat",
      name: "string",
      decode: (bytes) => {
        if (bytes === null) return Result.fail("Record has a null key or value")
        try {
          return Result.succeed(toText(bytes) as A)
        } catch (e) {
          return Result.fail(`Invalid UTF-8: ${(e as Error).message}`)
        }
      },
      encode: (a) => a as unknown as string,
      decodeDirect: (bytes) => {
        if (Buffer.isBuffer(bytes)) {
          const s = bytes.toString("utf8")
          if (s.indexOf("\uFFFD") < 0) return s as A
        }
        try {
          return utf8.decode(bytes) as A
        } catch {
          return undefined
        }
      },
    }
  }
  const decode = Schema.decodeUnknownResult(schema)
  const encode = Schema.encodeUnknownSync(schema)
  return {
    _tag: "KafkaFormat",
    name,
    decode: (bytes) => {
      if (bytes === null) return Result.fail("Record has a null key or value")
      let text: string
      try {
        text = toText(bytes)
      } catch (e) {
        return Result.fail(`Invalid UTF-8: ${(e as Error).message}`)
      }
      const r = decode(text)
      return Result.isSuccess(r) ? Result.succeed(r.success as A) : Result.fail(String(r.failure.message ?? r.failure))
    },
    encode: (a) => encode(a) as string,
  }
}

/** @internal */
export const toFormat = <A>(input: FormatInput<A>): Format<A> =>
  isFormat(input) ? (input as Format<A>) : textFormat(input as Schema.Codec<A, string, never, never>)

const utf8Key: Format<string> = textFormat(Schema.String)

/**
 * The key format of a stream: the given one, or UTF-8 text when none is given (`K` then
 * defaults to `string` in the public signatures).
 * @internal
 */
export const keyFormat = <K>(key: FormatInput<K> | undefined): Format<K> =>
  key === undefined ? (utf8Key as unknown as Format<K>) : toFormat(key)

// ---- records and dead letters ----------------------------------------------------------------

/** Header values as the client delivers them. @internal */
export type Headers = RawHeaders

/** A decoded record. @internal */
export type KafkaRecord<K, V> = KafkaRecord_<K, V>

/** A record that failed to decode: its bytes as read, the part that failed and why. @internal */
export interface DeadLetter extends RawRecord {
  /** Which part failed: the key or the value. */
  readonly part: "key" | "value"
  /** The parse error. */
  readonly error: string
}

// ---- options --------------------------------------------------------------------------------

/** kafkajs client options passed through (SSL, SASL, client id, timeouts, retry). @internal */
export interface ClientOptions {
  readonly brokers: ReadonlyArray<string>
  readonly clientId?: string | undefined
  readonly ssl?: KafkaJS.KafkaConfig["ssl"]
  readonly sasl?: KafkaJS.SASLOptions | undefined
  readonly connectionTimeout?: number | undefined
  readonly requestTimeout?: number | undefined
  readonly retry?: KafkaJS.RetryOptions | undefined
  /** kafkajs log level (default `ERROR`). */
  readonly logLevel?: KafkaJS.logLevel | undefined
}

/** An explicit starting position. @internal */
export interface TopicPartitionOffset {
  readonly topic: string
  readonly partition: number
  readonly offset: number
}

/** @internal */
export type Strategy =
  | { readonly _tag: "Subscribe"; readonly topics: ReadonlyArray<string> }
  | { readonly _tag: "SubscribePattern"; readonly pattern: RegExp }
  | {
    readonly _tag: "Assign"
    readonly partitions: ReadonlyArray<{ readonly topic: string; readonly partition: number }>
  }

/** @internal */
export interface NodeOptions<K, V> {
  /** The bootstrap brokers (for messages). */
  readonly brokers: ReadonlyArray<string>
  /** The client, made with the stream's log bridge (kafkajs's lines go through it). */
  readonly kafka: (log: LogBridge) => KafkaClient
  readonly groupId: string
  readonly strategy: Strategy
  readonly autoOffsetReset: "earliest" | "latest"
  readonly startingOffsets: ReadonlyArray<TopicPartitionOffset>
  readonly key: Format<K>
  readonly value: Format<V>
  readonly maxRatePerPartition: number
  readonly maxBufferedRecords: number
  readonly commitMode: "afterOutputs" | "manual"
  readonly sessionTimeout: number
  readonly heartbeatInterval: number
  readonly rebalanceTimeout: number
  readonly maxWaitTimeInMs: number
  readonly maxBytesPerPartition: number | undefined
  /** After a failure, how long no request may succeed before the stream fails. */
  readonly unreachableTimeout: number
}

// ---- errors and logging ---------------------------------------------------------------------

/** @internal */
export const KafkaUnreachableErrorBase: TaggedErrorClass<"KafkaUnreachableError", {
  /** The bootstrap brokers the stream was given. */
  readonly brokers: ReadonlyArray<string>
  /** The stream's `unreachableTimeout`. */
  readonly timeoutMillis: number
  /** The last failure seen, if any. */
  readonly lastError: string | undefined
}> = Data.TaggedError("KafkaUnreachableError")

/**
 * No request to the Kafka brokers succeeded for `timeoutMillis` after a failure (connection
 * refused, broker gone, requests timing out): the direct stream gives up.
 * @internal
 */
export class KafkaUnreachableError extends KafkaUnreachableErrorBase {
  override get message(): string {
    return `Cannot reach the Kafka brokers ${this.brokers.map((b) => `"${b}"`).join(", ")} for ${
      Time.format(this.timeoutMillis)
    } (unreachableTimeout): ${this.lastError ?? "no request succeeded"}`
  }
}

/** @internal */
export type LogLevelName = "Error" | "Warning" | "Info" | "Debug"

/**
 * The Kafka client's own log lines (kafkajs's `logCreator`, receivers/kafkajs_client.ts) routed
 * through Effect's logger, rate-limited: a burst of 5 lines, then one line per 2 s; the number
 * of lines left out is added to the next line logged. `onConnectionError` sees every client
 * line about a failed connection (an error response from a broker is not one: the broker
 * answered).
 * @internal
 */
export class LogBridge {
  /** The services to log with (the user's loggers); lines before it is set are only counted. */
  services: Context.Context<never> | undefined = undefined
  onConnectionError: ((message: string) => void) | undefined = undefined
  static readonly burst = 5
  static readonly refillMillis = 2000
  private tokens = LogBridge.burst
  private refilledAt = Date.now()
  private suppressed = 0

  constructor(readonly prefix: string) {}

  /** Logs `message` at `level` if the rate allows it. */
  line(level: LogLevelName, message: string): void {
    const now = Date.now()
    const refill = Math.floor((now - this.refilledAt) / LogBridge.refillMillis)
    if (refill > 0) {
      this.tokens = Math.min(LogBridge.burst, this.tokens + refill)
      this.refilledAt += refill * LogBridge.refillMillis
    }
    if (this.tokens <= 0) {
      this.suppressed++
      return
    }
    this.tokens--
    const suppressed = this.suppressed
    this.suppressed = 0
    this.emit(level, suppressed > 0 ? `${message} (${suppressed} more log lines left out)` : message)
  }

  /** Logs `message` now, without rate limit (the stream's own rare lines). */
  emit(level: LogLevelName, message: string): void {
    const services = this.services
    if (services === undefined) return
    const text = `${this.prefix}: ${message}`
    const effect = level === "Error"
      ? Effect.logError(text)
      : level === "Warning"
      ? Effect.logWarning(text)
      : level === "Info"
      ? Effect.logInfo(text)
      : Effect.logDebug(text)
    Effect.runForkWith(services)(effect)
  }
}

// ---- the input node ---------------------------------------------------------------------------

/** A buffered entry: a decoded record, or a dead letter (decoding happens as kafkajs delivers). */
type Entry<K, V> = KafkaRecord<K, V> | DeadLetterEntry

interface PartitionBuffer<K, V> {
  readonly topic: string
  readonly partition: number
  /** Decoded entries in offset order; `[head, length)` is not yet cut. */
  entries: Array<Entry<K, V>>
  head: number
  /** Dead letters among `entries[head..]`. */
  dead: number
}

interface Cut<K, V> {
  ranges: ReadonlyArray<OffsetRange>
  records: ReadonlyArray<KafkaRecord<K, V>>
  dead: ReadonlyArray<DeadLetter>
  /**
   * Restored from a checkpoint: `ranges` are known, their records are being fetched again
   * (`records` and `dead` are empty until the batch is computed).
   */
  refetch: boolean
}

/**
 * Records fetched again for restored batches, per partition: the entries of offsets in
 * `[from, fetched)` that restored batches still need, in offset order.
 */
interface Refetched<K, V> {
  entries: Array<Entry<K, V>>
  /** Every offset below this has been fetched (kafkajs delivers a partition in offset order). */
  fetched: number
}

/** The stream's part of a graph checkpoint. */
interface CheckpointData {
  readonly version: 1
  /** Per partition, the offset after the last batch the checkpoint's state covers. */
  readonly covered: ReadonlyArray<readonly [string, number, number]>
  /** Recorded batches: cut after the checkpoint's time (re-run), or remembered before it. */
  readonly batches: ReadonlyArray<{
    readonly time: number
    readonly ranges: ReadonlyArray<readonly [string, number, number, number]>
  }>
}

/** Finds the first index of `entries` whose offset is at least `offset` (entries in offset order). */
const lowerBound = (entries: ReadonlyArray<{ readonly offset: number }>, offset: number): number => {
  let lo = 0
  let hi = entries.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (entries[mid].offset < offset) lo = mid + 1
    else hi = mid
  }
  return lo
}

const isNonNegativeInteger = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 0

/** Reads checkpoint data back; throws an Error naming what is wrong. */
const parseCheckpointData = (data: unknown): CheckpointData => {
  const d = data as Partial<CheckpointData> | null
  if (
    typeof d !== "object" || d === null || d.version !== 1 || !Array.isArray(d.covered) || !Array.isArray(d.batches)
  ) {
    throw new Error("not Kafka direct stream data (version 1)")
  }
  for (const c of d.covered) {
    if (!Array.isArray(c) || typeof c[0] !== "string" || !isNonNegativeInteger(c[1]) || !isNonNegativeInteger(c[2])) {
      throw new Error(`bad covered offset ${JSON.stringify(c)}`)
    }
  }
  for (const b of d.batches) {
    if (typeof b !== "object" || b === null || typeof b.time !== "number" || !Array.isArray(b.ranges)) {
      throw new Error(`bad recorded batch ${JSON.stringify(b)}`)
    }
    for (const r of b.ranges) {
      if (
        !Array.isArray(r) || typeof r[0] !== "string" || !isNonNegativeInteger(r[1]) || !isNonNegativeInteger(r[2]) ||
        !isNonNegativeInteger(r[3]) || r[3] < r[2]
      ) throw new Error(`bad offset range ${JSON.stringify(r)} of batch ${b.time}`)
    }
  }
  return d as CheckpointData
}

/** What the user sees of one batch. @internal */
export interface BatchMeta {
  readonly offsetRanges: ReadonlyArray<OffsetRange>
  readonly deadLetters: ReadonlyArray<DeadLetter>
}

/**
 * The direct stream's input node.
 * @internal
 */
export class KafkaInputNode<K, V> extends InputNode<KafkaRecord<K, V>> {
  readonly kind = "DirectKafkaInputDStream"
  private readonly buffers = new Map<string, PartitionBuffer<K, V>>()
  /** Next offset to hand out per partition (untilOffset of the last range). */
  private readonly positions = new Map<string, number>()
  private readonly assigned = new Map<string, { readonly topic: string; readonly partition: number }>()
  private readonly cuts = new Map<number, Cut<K, V>>()
  private readonly explicitStarts = new Map<string, number>()
  private buffered = 0
  private spaceWaiters: Array<() => void> = []
  /** Batch times cut but not completed. */
  private readonly inflight = new Set<number>()
  private inflightWaiters: Array<() => void> = []
  /** Commits requested by `commitAsync`, waiting for the next completed batch. */
  private requested = new Map<string, TopicPartitionOffset>()
  /** Commits whose batches have completed, waiting to be sent. */
  private pending = new Map<string, TopicPartitionOffset>()
  private wakeCommitter: (() => void) | undefined
  private commitDirty = false
  private rebalancing = false
  /** A GROUP_JOIN has assigned partitions since the consumer (re)connected. */
  private joined = false
  private fatal: unknown = undefined
  private stopped = false
  /** The running group member, once joined. */
  private group: ConsumerGroup | undefined
  /** Which connection attempt is current: handlers of older ones are ignored. */
  private attempt = 0
  private client: KafkaClient | undefined
  private commitChain: Promise<void> = Promise.resolve()
  /** With a checkpoint directory: commits follow durable checkpoints, not completed batches. */
  private checkpointing = false
  /** Restored batches whose records are still being fetched again (`Cut.refetch`). */
  private refetching = 0
  private readonly refetched = new Map<string, Refetched<K, V>>()
  private refetchWaiters: Array<() => void> = []
  /** Since when no request has succeeded after a failure (epoch ms), and the last failure. */
  private downSince: number | undefined = undefined
  private lastFailure: string | undefined = undefined
  private lastErrorEventAt = 0
  private rt: InputRuntime | undefined
  /** The time of the checkpoint this stream was restored from. */
  restoredFrom: number | undefined = undefined
  readonly log: LogBridge
  /** Offsets committed to Kafka by this stream, per partition (for tests and monitoring). */
  readonly committed = new Map<string, TopicPartitionOffset>()
  /**
   * Set before start by an exactly-once sink (lib/Kafka.ts): each completed batch's offsets are
   * committed in the batch's transaction (`BatchTransactions.complete`), never by this stream.
   */
  transactions: BatchTransactions | undefined = undefined
  readonly name: string

  constructor(ctx: NodeContext, readonly options: NodeOptions<K, V>) {
    super(ctx)
    this.name = `Kafka direct stream [${this.id}]`
    this.log = new LogBridge(this.name)
    for (const s of options.startingOffsets) this.explicitStarts.set(tpKey(s.topic, s.partition), s.offset)
  }

  // ---- replay then live (Replay.kafkaThenLive) ----

  /** Sets where partitions start (before the context starts), overriding committed offsets. */
  setStartingOffsets(starts: ReadonlyArray<TopicPartitionOffset>): void {
    for (const s of starts) this.explicitStarts.set(tpKey(s.topic, s.partition), s.offset)
  }

  /** The next offset a batch will take from a partition, once one has been assigned. */
  position(topic: string, partition: number): number | undefined {
    return this.positions.get(tpKey(topic, partition))
  }

  /**
   * A connected admin client with this stream's client settings (brokers, TLS, SASL), whose log
   * goes through Effect's logger as the stream's does: the streaming UI reads high-water marks
   * with it (lib/_internal/ui/kafkaLag.ts), without importing this module.
   */
  readonly lagAdmin = (): Effect.Effect<Admin, unknown> =>
    Effect.flatMap(Effect.context<never>(), (services) => {
      const log = new LogBridge(`Kafka lag of ${this.options.groupId}`)
      log.services = services
      return Effect.tryPromise({ try: () => this.options.kafka(log).admin(), catch: (e) => e })
    })

  /** The stream's client (made on first use). */
  kafkaClient(): KafkaClient {
    return this.client ??= this.options.kafka(this.log)
  }

  // ---- failures: receiver-style events, the unreachable timeout ----

  /**
   * A failure: starts the unreachable clock (a succeeded request stops it) and, at most once a
   * second unless `always`, publishes a `ReceiverError` event.
   */
  private noteFailure(message: string, always: boolean): void {
    if (this.stopped) return
    this.lastFailure = message
    const now = Date.now()
    if (this.downSince === undefined) this.downSince = now
    if (always || now - this.lastErrorEventAt >= 1000) {
      this.lastErrorEventAt = now
      this.publishError(message, now)
    }
  }

  private publishError(message: string, time: number, cause?: unknown): void {
    const rt = this.rt
    const services = this.log.services
    if (rt === undefined || services === undefined) return
    Effect.runForkWith(services)(rt.publish({
      _tag: "ReceiverError",
      receiverInfo: {
        streamId: this.streamId,
        name: this.name,
        active: this.fatal === undefined,
        lastErrorMessage: message,
        lastError: cause,
        lastErrorTime: time,
      },
    }))
  }

  private readonly onRequest = (): void => {
    this.downSince = undefined
  }

  /** Fails the stream when no request has succeeded for `unreachableTimeout` after a failure. */
  private watchdog(): Effect.Effect<void> {
    const timeout = this.options.unreachableTimeout
    const every = Duration.millis(Math.max(50, Math.min(1000, Math.floor(timeout / 4))))
    return Effect.gen({ self: this }, function* () {
      while (this.fatal === undefined && !this.stopped) {
        yield* Effect.sleep(every)
        const since = this.downSince
        if (since === undefined || Date.now() - since < timeout || this.stopped) continue
        const error = new KafkaUnreachableError({
          brokers: this.options.brokers,
          timeoutMillis: timeout,
          lastError: this.lastFailure,
        })
        this.fatal = error
        this.publishError(error.message, Date.now(), error)
        this.log.emit("Error", error.message)
        this.wakeRefetch()
        // stop the client retrying (and logging) for good; the next batch fails with the error
        const group = this.group
        this.group = undefined
        this.attempt++
        if (group !== undefined) yield* Effect.promise(() => group.disconnect().catch(() => undefined))
      }
    })
  }

  // ---- client side (plain promises: the client calls these) ----

  /**
   * A full assignment: returns where its partitions start (this stream's positions, explicit
   * starts, ranges that restored batches still need), applied by the client before it delivers
   * records of the assignment.
   */
  private onAssignment(assigned: ReadonlyArray<TopicPartition>): ReadonlyArray<TopicPartitionOffset> {
    const next = new Map<string, { topic: string; partition: number }>()
    for (const { topic, partition } of assigned) next.set(tpKey(topic, partition), { topic, partition })
    // Revoked partitions: drop their buffers and positions; pending commits are abandoned.
    for (const key of this.assigned.keys()) {
      if (!next.has(key)) {
        this.dropBuffer(key)
        this.positions.delete(key)
        this.pending.delete(key)
        this.requested.delete(key)
      }
    }
    // Buffers of kept partitions are dropped too: the client refetches from the committed
    // offset after a rejoin, so start again at our position (records already cut are not
    // fetched again; buffered-but-uncut ones are fetched again).
    for (const key of next.keys()) this.dropBuffer(key)
    this.assigned.clear()
    for (const [key, tp] of next) this.assigned.set(key, tp)
    this.rebalancing = false
    this.joined = true
    const starts: Array<TopicPartitionOffset> = []
    for (const [key, tp] of next) {
      const explicit = this.explicitStarts.get(key)
      const pos = this.positions.get(key)
      // Restored batches still need records below the position: fetch them again first.
      const offset = this.refetchFrom(key) ?? explicit ?? pos
      if (explicit !== undefined) {
        this.explicitStarts.delete(key)
        this.positions.set(key, explicit)
      }
      if (offset !== undefined) starts.push({ topic: tp.topic, partition: tp.partition, offset })
    }
    this.wakeSpace()
    this.wakeRefetch()
    return starts
  }

  private dropBuffer(key: string): void {
    const b = this.buffers.get(key)
    if (b !== undefined) {
      this.buffered -= b.entries.length - b.head
      this.buffers.delete(key)
    }
  }

  private async onBatch(batch: FetchedBatch, control: FetchControl): Promise<void> {
    if (this.stopped || !control.isActive()) return
    const { topic, partition, records } = batch
    const key = tpKey(topic, partition)
    if (!this.assigned.has(key)) this.assigned.set(key, { topic, partition })
    let buffer = this.buffers.get(key)
    if (buffer === undefined) {
      buffer = { topic, partition, entries: [], head: 0, dead: 0 }
      this.buffers.set(key, buffer)
    }
    // Skip what is already buffered or handed out (refetches after a rejoin).
    const entries = buffer.entries
    const floor = entries.length > buffer.head
      ? entries[entries.length - 1].offset + 1
      : (this.positions.get(key) ?? -1)
    // Decode here, as the client delivers (between its fetches), not at the batch cut: the cut
    // then only hands over ready records. Failures become dead letters in offset order.
    const keyFormat = this.options.key
    const valueFormat = this.options.value
    let added = 0
    let dead = 0
    // Records below the position that restored batches need go to their store.
    const first = this.refetching > 0 ? this.takeRefetched(key, records) : 0
    for (let i = first; i < records.length; i++) {
      const raw = records[i]
      if (raw.offset < floor) continue
      const entry = decodeRecord(raw, keyFormat, valueFormat)
      if (entry instanceof DeadLetterEntry) dead++
      entries.push(entry)
      added++
    }
    buffer.dead += dead
    this.buffered += added
    // Backpressure: hold the client here while the buffer is full, heartbeating.
    while (this.buffered > this.options.maxBufferedRecords && control.isActive() && !this.stopped) {
      await this.waitForSpace(this.options.heartbeatInterval)
      try {
        await control.heartbeat()
      } catch (e) {
        // A rebalance: commit through the fetch loop, then let the client rejoin (with
        // kafkajs, a commit outside the fetch loop would crash the consumer for good).
        if (this.rebalancing) await this.beforeRebalance(control.commit)
        throw e
      }
    }
  }

  private waitForSpace(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.spaceWaiters.push(done)
    })
  }

  private wakeSpace(): void {
    const ws = this.spaceWaiters
    this.spaceWaiters = []
    for (const w of ws) w()
  }

  // ---- restored batches: their ranges fetched again ----

  /** The lowest offset of `key` that a restored batch still needs. */
  private neededFrom(key: string): number | undefined {
    if (this.refetching === 0) return undefined
    let from: number | undefined
    for (const cut of this.cuts.values()) {
      if (!cut.refetch) continue
      for (const r of cut.ranges) {
        if (r.untilOffset > r.fromOffset && tpKey(r.topic, r.partition) === key) {
          if (from === undefined || r.fromOffset < from) from = r.fromOffset
        }
      }
    }
    return from
  }

  /** Where to fetch `key` from for restored batches (below the position), if anything is missing. */
  private refetchFrom(key: string): number | undefined {
    const from = this.neededFrom(key)
    if (from === undefined) return undefined
    const store = this.refetched.get(key)
    const at = store === undefined ? from : Math.max(from, store.fetched)
    const pos = this.positions.get(key)
    return pos !== undefined && at >= pos ? undefined : at
  }

  /**
   * Keeps the messages below the position that restored batches need (decoded, in the
   * partition's store); returns the index of the first message at or after the position.
   */
  private takeRefetched(key: string, records: ReadonlyArray<RawRecord>): number {
    const pos = this.positions.get(key)
    if (pos === undefined || records.length === 0) return 0
    let store = this.refetched.get(key)
    if (store === undefined) {
      const from = this.refetchFrom(key)
      if (from === undefined) return 0
      store = { entries: [], fetched: from }
      this.refetched.set(key, store)
    }
    let i = 0
    for (; i < records.length; i++) {
      const raw = records[i]
      const offset = raw.offset
      if (offset >= pos) break
      if (offset < store.fetched) continue
      store.entries.push(decodeRecord(raw, this.options.key, this.options.value))
      store.fetched = offset + 1
    }
    // a record at or after the position: everything below it has been fetched
    if (i < records.length) store.fetched = Math.max(store.fetched, pos)
    this.wakeRefetch()
    return i
  }

  private wakeRefetch(): void {
    const ws = this.refetchWaiters
    this.refetchWaiters = []
    for (const w of ws) w()
  }

  /**
   * The restored batch `t` once every one of its ranges is fetched again: its records and
   * dead letters. A range of a partition this member no longer owns (another member of the
   * group took it) is left out with a warning. `undefined` while records are missing.
   */
  private materialize(t: number, cut: Cut<K, V>): boolean {
    const stable = this.joined && !this.rebalancing
    for (const r of cut.ranges) {
      if (r.untilOffset <= r.fromOffset) continue
      const key = tpKey(r.topic, r.partition)
      const store = this.refetched.get(key)
      if (store !== undefined && store.fetched >= r.untilOffset) continue
      if (stable && !this.assigned.has(key)) continue
      return false
    }
    const ranges: Array<OffsetRange> = []
    const parts: Array<KafkaRecord<K, V>> = []
    const dead: Array<DeadLetter> = []
    for (const r of cut.ranges) {
      const key = tpKey(r.topic, r.partition)
      const store = this.refetched.get(key)
      if (r.untilOffset > r.fromOffset && (store === undefined || store.fetched < r.untilOffset)) {
        this.log.line(
          "Warning",
          `batch ${
            Time.format(t)
          } is re-run without ${r}: the partition is now assigned to another member of group "${this.options.groupId}"`,
        )
        continue
      }
      ranges.push(r)
      if (store === undefined) continue
      const entries = store.entries
      for (let i = lowerBound(entries, r.fromOffset); i < entries.length && entries[i].offset < r.untilOffset; i++) {
        const e = entries[i]
        if (e instanceof DeadLetterEntry) dead.push(e)
        else parts.push(e)
      }
    }
    cut.ranges = ranges
    cut.records = parts
    cut.dead = dead
    this.doneRefetching(cut)
    return true
  }

  /** `cut` needs no more refetched records: drop what no restored batch needs any longer. */
  private doneRefetching(cut: Cut<K, V>): void {
    if (!cut.refetch) return
    cut.refetch = false
    this.refetching--
    for (const [key, store] of this.refetched) {
      const needed = this.neededFrom(key)
      if (needed === undefined) {
        this.refetched.delete(key)
        continue
      }
      const drop = lowerBound(store.entries, needed)
      if (drop > 0) store.entries = store.entries.slice(drop)
    }
  }

  /** Waits until the restored batch `t` is fetched again (or the stream failed). */
  private awaitRefetch(t: number, cut: Cut<K, V>): Effect.Effect<void, unknown> {
    const wait = Effect.callback<void>((resume) => {
      let timer: ReturnType<typeof setTimeout> | undefined = undefined
      const done = () => {
        clearTimeout(timer)
        this.refetchWaiters = this.refetchWaiters.filter((w) => w !== done)
        resume(Effect.void)
      }
      timer = setTimeout(done, 500)
      this.refetchWaiters.push(done)
      return Effect.sync(() => clearTimeout(timer))
    })
    return Effect.suspend((): Effect.Effect<void, unknown> => {
      if (this.fatal !== undefined) return Effect.fail(this.fatal)
      if (!cut.refetch || this.materialize(t, cut)) return Effect.void
      return Effect.andThen(wait, this.awaitRefetch(t, cut))
    })
  }

  /**
   * The group is rebalancing and this member is about to rejoin: finish the batches already
   * cut (bounded by half the session timeout) and commit them, so another member does not
   * process the same records after the rebalance.
   */
  private async beforeRebalance(commit: CommitFn): Promise<void> {
    this.rebalancing = true
    const deadline = Date.now() + Math.max(500, this.options.sessionTimeout / 2)
    while (this.inflight.size > 0 && Date.now() < deadline && !this.stopped) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100)
        this.inflightWaiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
    // exactly once: the completed batches' transactions commit their offsets before the rejoin
    const txs = this.transactions
    if (txs !== undefined) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))
        txs.idle().then(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
    await this.flushCommits(commit)
  }

  // ---- the stream side ----

  /**
   * Connects the consumer (waiting for the first attempt: the group join), then keeps it
   * connected: a failed attempt is reported as a `ReceiverError` event and retried with
   * backoff, and the watchdog fails the stream once no request has succeeded for
   * `unreachableTimeout`.
   */
  override start(rt: InputRuntime): Effect.Effect<void, unknown, Scope.Scope> {
    return Effect.gen({ self: this }, function* () {
      this.rt = rt
      this.log.services = yield* Effect.context<never>()
      this.checkpointing = this.ctx.checkpointDir() !== undefined
      const txs = this.transactions
      if (txs !== undefined && this.checkpointing) {
        return yield* Effect.fail(
          new Error(
            `Cannot write ${this.name} exactly once with a checkpoint directory: a recovery would re-run batches whose transactions committed`,
          ),
        )
      }
      yield* Effect.addFinalizer(() => Effect.promise(() => this.shutdown()))
      if (txs !== undefined) yield* Effect.addFinalizer(() => Effect.promise(() => txs.close()))
      yield* Effect.forkScoped(this.watchdog())
      const first = yield* Effect.result(Effect.tryPromise({ try: () => this.connect(), catch: (e) => e }))
      if (Result.isFailure(first)) this.connectFailed(first.failure, 200)
      yield* Effect.forkScoped(this.commitLoop())
    })
  }

  private async connect(): Promise<void> {
    const o = this.options
    const attempt = ++this.attempt
    const current = () => this.attempt === attempt && !this.stopped
    this.joined = false
    const strategy = o.strategy
    const subscription: ConsumerGroupOptions["subscription"] = strategy._tag === "Subscribe"
      ? { _tag: "Topics", topics: strategy.topics }
      : strategy._tag === "SubscribePattern"
      ? { _tag: "Pattern", pattern: strategy.pattern }
      : { _tag: "Assign", partitions: strategy.partitions }
    const group = await this.kafkaClient().consumerGroup({
      groupId: o.groupId,
      subscription,
      fromBeginning: o.autoOffsetReset === "earliest",
      isolation: "read_committed",
      sessionTimeout: o.sessionTimeout,
      heartbeatInterval: o.heartbeatInterval,
      rebalanceTimeout: o.rebalanceTimeout,
      maxWaitTimeInMs: o.maxWaitTimeInMs,
      maxBytesPerPartition: o.maxBytesPerPartition,
    }, {
      onAssignment: (assigned) =>
        this.transactions === undefined
          ? Promise.resolve(current() ? this.onAssignment(assigned) : undefined)
          : this.transactions.prepare(assigned).then((fenced) => {
            // exactly once: the previous owner is fenced, then the offsets it committed are read
            if (!current()) return undefined
            const starts = [...this.onAssignment(assigned)]
            const has = new Set(starts.map((s) => tpKey(s.topic, s.partition)))
            for (const c of fenced) if (!has.has(tpKey(c.topic, c.partition))) starts.push(c)
            return starts
          }),
      onRebalancing: () => {
        if (current()) this.rebalancing = true
      },
      onBatch: (batch, control) => (current() ? this.onBatch(batch, control) : Promise.resolve()),
      onCrash: (error, restarting) => {
        if (!current()) return
        const message = `the Kafka consumer crashed: ${errorMessage(error)}`
        this.noteFailure(message, false)
        if (!restarting) this.restart(error)
        else this.log.line("Warning", `${message}; the client restarts it`)
      },
      onRequest: this.onRequest,
      onRequestFailure: (message) => {
        if (current()) this.noteFailure(message, false)
      },
    })
    if (this.attempt !== attempt || this.stopped) {
      // the context stopped (or the stream failed) while this (re)connect was under way
      await group.disconnect().catch(() => undefined)
      return
    }
    this.group = group
  }

  /** A connection attempt failed: report it, retry after `delay` (doubling, at most 5 s). */
  private connectFailed(error: unknown, delay: number): void {
    if (this.stopped || this.fatal !== undefined) return
    const message = `cannot connect to the Kafka brokers ${this.options.brokers.map((b) => `"${b}"`).join(", ")}: ${
      errorMessage(error)
    }`
    this.noteFailure(message, true)
    this.log.line("Warning", `${message}; retrying in ${Time.format(delay)}`)
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      if (this.stopped || this.fatal !== undefined) return
      this.connect().catch((e) => this.connectFailed(e, Math.min(5000, delay * 2)))
    }, delay)
  }

  private reconnectTimer: ReturnType<typeof setTimeout> | undefined = undefined

  private crashes: Array<number> = []

  /**
   * The client gave up on the group member (a non-retriable error, e.g. a protocol error
   * during a rebalance): replace it with a new one that rejoins the group and continues from
   * this stream's positions. More than 5 crashes within a minute fail the stream.
   */
  private restart(error: unknown): void {
    const now = Date.now()
    this.crashes = this.crashes.filter((t) => t > now - 60_000)
    this.crashes.push(now)
    if (this.crashes.length > 5) {
      this.fatal = error
      this.wakeRefetch()
      return
    }
    this.log.line("Warning", `the Kafka consumer crashed (${errorMessage(error)}); restarting it`)
    this.rebalancing = true
    const crashed = this.group
    this.group = undefined
    this.attempt++
    const delay = 200 * this.crashes.length
    void (async () => {
      await crashed?.disconnect().catch(() => undefined)
      await new Promise((r) => setTimeout(r, delay))
      if (this.stopped || this.fatal !== undefined) return
      try {
        await this.connect()
      } catch (e) {
        this.connectFailed(e, 200)
      }
    })()
  }

  private async shutdown(): Promise<void> {
    this.stopped = true
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer)
    this.wakeSpace()
    this.wakeRefetch()
    for (const w of this.inflightWaiters.splice(0)) w()
    const group = this.group
    if (group === undefined) return
    await this.flushCommits().catch(() => undefined)
    // disconnect stops the fetch loop and leaves the group
    this.group = undefined
    await group.disconnect().catch(() => undefined)
  }

  override stopReceiving(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.stopped = true
      this.wakeSpace()
    })
  }

  override hasPending(): boolean {
    return false
  }

  /** Records fetched and buffered but not yet cut into a batch. */
  override storedRecords(): number {
    return this.buffered
  }

  /**
   * Kafka keeps what this stream did not process: offsets are committed only for processed
   * (and, with checkpoints, checkpointed) batches, so the next run reads the rest again.
   */
  override keepsUnprocessed(): boolean {
    return true
  }

  /** Spark's per-batch cap: `maxRatePerPartition × batch seconds` (at least 1), or unlimited. */
  private get perPartitionLimit(): number {
    const rate = this.options.maxRatePerPartition
    if (rate <= 0) return Infinity
    return Math.max(1, Math.floor((rate * this.ctx.batchMillis) / 1000))
  }

  override allocate(t: number): Effect.Effect<void> {
    return Effect.sync(() => {
      const restored = this.cuts.get(t)
      if (restored !== undefined && restored.refetch) {
        // a recovered batch: re-run with exactly its recorded ranges (fetched again)
        this.inflight.add(t)
        this.recordInfo(t, restored.ranges)
        return
      }
      const limit = this.perPartitionLimit
      const ranges: Array<OffsetRange> = []
      const parts: Array<ReadonlyArray<KafkaRecord<K, V>>> = []
      const dead: Array<DeadLetter> = []
      let count = 0
      for (const [key, tp] of this.assigned) {
        const buffer = this.buffers.get(key)
        const available = buffer === undefined ? 0 : buffer.entries.length - buffer.head
        const n = Math.min(available, limit)
        const from = this.positions.get(key) ?? (n > 0 ? buffer!.entries[buffer!.head].offset : undefined)
        if (from === undefined) continue
        let until = from
        if (n > 0) {
          const b = buffer!
          const end = b.head + n
          // The whole buffer is handed over as it is (it is replaced below); otherwise a slice.
          const taken = b.head === 0 && end === b.entries.length ? b.entries : b.entries.slice(b.head, end)
          if (b.dead === 0) parts.push(taken as Array<KafkaRecord<K, V>>)
          else {
            const records: Array<KafkaRecord<K, V>> = []
            for (let i = 0; i < taken.length; i++) {
              const e = taken[i]
              if (e instanceof DeadLetterEntry) {
                dead.push(e)
                b.dead--
              } else records.push(e)
            }
            parts.push(records)
          }
          count += n
          until = b.entries[end - 1].offset + 1
          b.head = end
          if (b.head === b.entries.length) {
            b.entries = []
            b.head = 0
            b.dead = 0
          } else if (b.head > 4096 && b.head * 2 > b.entries.length) {
            b.entries = b.entries.slice(b.head)
            b.head = 0
          }
          this.buffered -= n
        }
        this.positions.set(key, until)
        ranges.push(new OffsetRange(tp.topic, tp.partition, from, until))
      }
      ranges.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition))
      const records = parts.length === 0
        ? []
        : parts.length === 1
        ? parts[0]
        : ([] as Array<KafkaRecord<K, V>>).concat(...parts)
      this.cuts.set(t, { ranges, records, dead, refetch: false })
      this.inflight.add(t)
      this.recordInfo(t, ranges, count)
      this.wakeSpace()
    })
  }

  private recordInfo(t: number, ranges: ReadonlyArray<OffsetRange>, count?: number): void {
    let n = count ?? 0
    if (count === undefined) { for (const r of ranges) n += r.count() }
    this.record(t, n, {
      offsets: ranges.map((r) => ({
        topic: r.topic,
        partition: r.partition,
        fromOffset: r.fromOffset,
        untilOffset: r.untilOffset,
      })),
      description: ranges.map(String).join("\n"),
    })
  }

  compute(t: number): Effect.Effect<ReadonlyArray<KafkaRecord<K, V>>, unknown> {
    return Effect.suspend(() => {
      if (this.fatal instanceof KafkaUnreachableError) return Effect.fail(this.fatal)
      if (this.fatal !== undefined) {
        return Effect.fail(new Error(`Kafka consumer of ${this.name} crashed: ${errorMessage(this.fatal)}`))
      }
      const cut = this.cuts.get(t)
      if (cut !== undefined && cut.refetch) {
        return Effect.map(this.awaitRefetch(t, cut), () => cut.records)
      }
      return Effect.succeed(this.decode(t).records)
    })
  }

  private static readonly emptyCut = { records: [], dead: [] } as const

  /** The records and dead letters of the cut of time `t` (decoded as they were fetched). */
  decode(t: number): { readonly records: ReadonlyArray<KafkaRecord<K, V>>; readonly dead: ReadonlyArray<DeadLetter> } {
    return this.cuts.get(t) ?? KafkaInputNode.emptyCut
  }

  /** The offset ranges of batch `t` (empty when unknown). */
  offsetRanges(t: number): ReadonlyArray<OffsetRange> {
    return this.cuts.get(t)?.ranges ?? []
  }

  meta(t: number): BatchMeta {
    return { offsetRanges: this.offsetRanges(t), deadLetters: this.decode(t).dead }
  }

  override clearMetadata(t: number): void {
    super.clearMetadata(t)
    const limit = t - (this.rememberMillis ?? this.slideMillis)
    for (const [time, cut] of this.cuts) {
      if (time > limit) continue
      this.cuts.delete(time)
      this.doneRefetching(cut)
    }
  }

  // ---- checkpoints ----

  /** Per partition, the offset after batch `t` and the batches before it (what a checkpoint of `t` covers). */
  private coveredAt(t: number): Map<string, TopicPartitionOffset> {
    const covered = new Map<string, TopicPartitionOffset>()
    for (const [time, cut] of this.cuts) {
      if (time > t) continue
      for (const r of cut.ranges) mergeMax(covered, r.topic, r.partition, r.untilOffset)
    }
    return covered
  }

  /**
   * Spark's `DirectKafkaInputDStreamCheckpointData`: the checkpoint written after batch `t`
   * records the offset ranges of every batch already cut after `t` (the recovered context
   * re-runs them with exactly these ranges) and of the batches before `t` that a window may
   * still read; a durable checkpoint lets its covered offsets be committed.
   */
  override checkpointData(): InputCheckpoint {
    return {
      key: `DirectKafkaInputDStream#${this.streamId}`,
      snapshot: (t) => {
        // after a recovery, the batches from t + slide on read batches after t + slide − remember
        // (a window of duration w asks its parent to remember at least w + its own slide)
        const oldest = t + this.slideMillis - (this.rememberMillis ?? this.slideMillis)
        const batches: Array<CheckpointData["batches"][number]> = []
        for (const [time, cut] of [...this.cuts].sort((a, b) => a[0] - b[0])) {
          if (time <= oldest) continue
          batches.push({ time, ranges: cut.ranges.map((r) => [r.topic, r.partition, r.fromOffset, r.untilOffset]) })
        }
        const covered = [...this.coveredAt(t).values()].map((c) => [c.topic, c.partition, c.offset] as const)
        const data: CheckpointData = { version: 1, covered, batches }
        return data
      },
      restore: (raw, time) => {
        const data = parseCheckpointData(raw)
        const restoredKeys = new Set<string>()
        for (const [topic, partition, offset] of data.covered) {
          const key = tpKey(topic, partition)
          restoredKeys.add(key)
          const pos = this.positions.get(key)
          if (pos === undefined || pos < offset) this.positions.set(key, offset)
        }
        for (const b of data.batches) {
          const ranges = b.ranges.map(([topic, partition, from, until]) => {
            const key = tpKey(topic, partition)
            restoredKeys.add(key)
            const pos = this.positions.get(key)
            if (pos === undefined || pos < until) this.positions.set(key, until)
            return new OffsetRange(topic, partition, from, until)
          })
          this.cuts.set(b.time, { ranges, records: [], dead: [], refetch: true })
          this.refetching++
        }
        // the checkpoint's positions win over explicit starting offsets (Spark's recovery)
        for (const key of restoredKeys) this.explicitStarts.delete(key)
        this.restoredFrom = time
      },
      written: (t) =>
        Effect.sync(() => {
          if (this.options.commitMode !== "afterOutputs") return
          for (const c of this.coveredAt(t).values()) mergeMax(this.pending, c.topic, c.partition, c.offset)
          this.wakeCommits()
        }),
    }
  }

  // ---- commits ----

  /** Queues ranges to commit after the next completed batch. */
  commitAsync(ranges: ReadonlyArray<OffsetRange>): void {
    for (const r of ranges) mergeMax(this.requested, r.topic, r.partition, r.untilOffset)
  }

  /** All outputs of batch `t` succeeded: its ranges (and requested commits) may be committed. */
  override batchCompleted(info: BatchInfo): void {
    const t = info.batchTime
    const cut = this.cuts.get(t)
    if (this.transactions !== undefined) {
      // exactly once: the batch's offsets go into its transaction (commitAsync has no effect)
      if (cut !== undefined) {
        this.transactions.complete(
          t,
          this.assignment(),
          cut.ranges.map((r) => ({ topic: r.topic, partition: r.partition, offset: r.untilOffset })),
          (offsets) => {
            for (const o of offsets) mergeMax(this.committed, o.topic, o.partition, o.offset)
          },
        )
      }
      this.requested.clear()
      this.inflight.delete(t)
      for (const w of this.inflightWaiters.splice(0)) w()
      return
    }
    // with checkpoints, `written` commits what a durable checkpoint covers instead
    if (cut !== undefined && this.options.commitMode === "afterOutputs" && !this.checkpointing) {
      for (const r of cut.ranges) {
        if (r.untilOffset > r.fromOffset) mergeMax(this.pending, r.topic, r.partition, r.untilOffset)
      }
    }
    for (const [, c] of this.requested) mergeMax(this.pending, c.topic, c.partition, c.offset)
    this.requested.clear()
    this.inflight.delete(t)
    for (const w of this.inflightWaiters.splice(0)) w()
    this.wakeCommits()
  }

  private wakeCommits(): void {
    if (this.pending.size > 0) {
      this.commitDirty = true
      const wake = this.wakeCommitter
      this.wakeCommitter = undefined
      wake?.()
    }
  }

  /**
   * Sends pending commits as batches complete, at most one commit per
   * {@link KafkaInputNode.commitSpacingMillis} (offsets of the batches completed meanwhile are
   * merged into the next one): with short batch intervals a commit per batch costs the client
   * a request per batch for nothing, since a later commit covers the earlier ones. The stream
   * flushes every pending commit when it stops.
   */
  private commitLoop(): Effect.Effect<never> {
    const waitDirty = Effect.callback<void>((resume) => {
      if (this.commitDirty) resume(Effect.void)
      else this.wakeCommitter = () => resume(Effect.void)
    })
    // real time, whatever clock the batches run on (a replay's virtual clock)
    const spacing = Effect.callback<void>((resume) => {
      const timer = setTimeout(() => resume(Effect.void), KafkaInputNode.commitSpacingMillis)
      return Effect.sync(() => clearTimeout(timer))
    })
    return Effect.forever(
      Effect.flatMap(
        waitDirty,
        () => Effect.andThen(Effect.promise(() => this.flushCommits().catch(() => undefined)), spacing),
      ),
    )
  }

  /** The shortest time between two commits of completed batches. */
  static readonly commitSpacingMillis = 100

  /**
   * Sends the pending commits of partitions still assigned (serialised). Commits of revoked
   * partitions are abandoned; failures of assigned ones are retried with the next flush.
   */
  flushCommits(viaBatchHelper?: CommitFn): Promise<void> {
    const run = async () => {
      this.commitDirty = false
      const group = this.group
      if ((group === undefined && viaBatchHelper === undefined) || this.pending.size === 0) return
      if (this.rebalancing && viaBatchHelper === undefined) {
        // wait for the GROUP_JOIN that ends the rebalance; the next completed batch retries
        this.commitDirty = false
        return
      }
      const batch = [...this.pending.values()].filter((c) => this.assigned.has(tpKey(c.topic, c.partition)))
      this.pending.clear()
      if (batch.length === 0) return
      try {
        if (viaBatchHelper !== undefined) await viaBatchHelper(batch)
        else await group!.commit(batch)
        for (const c of batch) mergeMax(this.committed, c.topic, c.partition, c.offset)
      } catch (e) {
        // keep them for the next flush; a rebalance that revokes the partition drops them
        for (const c of batch) mergeMax(this.pending, c.topic, c.partition, c.offset)
        if (this.stopped || this.rebalancing || isRebalanceError(e)) return
        this.log.line("Warning", `offset commit failed, will retry after the next batch: ${errorMessage(e)}`)
      }
    }
    const next = this.commitChain.then(run, run)
    this.commitChain = next.catch(() => undefined)
    return next
  }

  /** Partitions currently assigned to this member. */
  assignment(): ReadonlyArray<{ readonly topic: string; readonly partition: number }> {
    return [...this.assigned.values()]
  }
}

type CommitFn = (offsets: ReadonlyArray<TopicPartitionOffset>) => Promise<void>

const mergeMax = (map: Map<string, TopicPartitionOffset>, topic: string, partition: number, offset: number): void => {
  const key = tpKey(topic, partition)
  const old = map.get(key)
  if (old === undefined || old.offset < offset) map.set(key, { topic, partition, offset })
}

/** A dead letter as buffered (a class, so the cut tells it from a record). */
/** @internal */
export class DeadLetterEntry implements DeadLetter {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  readonly timestamp: number
  readonly key: Uint8Array | null
  readonly value: Uint8Array | null
  readonly headers: Headers
  constructor(raw: RawRecord, readonly part: "key" | "value", readonly error: string) {
    this.topic = raw.topic
    this.partition = raw.partition
    this.offset = raw.offset
    this.timestamp = raw.timestamp
    this.key = raw.key
    this.value = raw.value
    this.headers = raw.headers
  }
}

const errorText = (e: unknown): string => `Decoder threw: ${errorMessage(e)}`

const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/**
 * Decodes one raw record into a record, or a dead letter when its key or value does not decode
 * (a throwing custom format also gives a dead letter, never a crashed consumer).
 */
/** @internal */
export const decodeRecord = <K, V>(raw: RawRecord, keyFormat: Format<K>, valueFormat: Format<V>): Entry<K, V> => {
  const rawKey = raw.key
  const rawValue = raw.value
  let key: K | null = null
  if (rawKey !== null) {
    const keyDirect = keyFormat.decodeDirect
    let direct: K | undefined
    try {
      direct = keyDirect === undefined ? undefined : keyDirect(rawKey)
      if (direct === undefined) {
        const k = keyFormat.decode(rawKey)
        if (Result.isFailure(k)) return new DeadLetterEntry(raw, "key", k.failure)
        key = k.success
      } else key = direct
    } catch (e) {
      return new DeadLetterEntry(raw, "key", errorText(e))
    }
  }
  let value: V
  try {
    const valueDirect = valueFormat.decodeDirect
    const direct = valueDirect === undefined || rawValue === null ? undefined : valueDirect(rawValue)
    if (direct === undefined) {
      const v = valueFormat.decode(rawValue)
      if (Result.isFailure(v)) return new DeadLetterEntry(raw, "value", v.failure)
      value = v.success
    } else value = direct
  } catch (e) {
    return new DeadLetterEntry(raw, "value", errorText(e))
  }
  return {
    topic: raw.topic,
    partition: raw.partition,
    offset: raw.offset,
    timestamp: raw.timestamp,
    key,
    value,
    headers: raw.headers,
  }
}

/** The dead letters of an input's batches. @internal */
export class DeadLetterNode extends Node<DeadLetter> {
  readonly kind = "KafkaDeadLetterDStream"
  constructor(readonly input: KafkaInputNode<any, any>) {
    super(input.ctx, [input], input.slideMillis)
  }
  compute(t: number): Effect.Effect<ReadonlyArray<DeadLetter> | undefined, unknown> {
    return Effect.map(
      this.input.getOrCompute(t) as Effect.Effect<unknown, unknown>,
      (batch) => batch === undefined ? undefined : this.input.decode(t).dead,
    )
  }
}

// ---- producer (sink and dead-letter topic) ---------------------------------------------------

/**
 * A producer connected on first use and disconnected when the context stops.
 * @internal
 */
export class LazyProducer {
  private producer: Promise<Producer> | undefined
  private readonly log = new LogBridge("Kafka producer")
  constructor(
    readonly kafka: (log: LogBridge) => KafkaClient,
    readonly producerOptions: ProducerOptions,
    ctx: NodeContext,
  ) {
    ctx.onStop(() =>
      Effect.promise(async () => {
        const p = this.producer
        this.producer = undefined
        if (p !== undefined) await (await p.catch(() => undefined))?.disconnect().catch(() => undefined)
      })
    )
  }
  send(records: ReadonlyArray<OutgoingRecord>): Effect.Effect<void, unknown> {
    return Effect.flatMap(Effect.context<never>(), (services) => {
      this.log.services ??= services
      return this.sendWith(records)
    })
  }
  private sendWith(records: ReadonlyArray<OutgoingRecord>): Effect.Effect<void, unknown> {
    return Effect.tryPromise({
      try: async () => {
        if (this.producer === undefined) {
          this.producer = this.kafka(this.log).producer(this.producerOptions)
          this.producer.catch(() => {
            this.producer = undefined
          })
        }
        const producer = await this.producer
        await producer.send(records)
      },
      catch: (e) => e,
    })
  }
}
