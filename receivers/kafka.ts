/**
 * The Kafka direct stream's machinery (Spark's `DirectKafkaInputDStream` on kafkajs): a
 * scoped group consumer whose `eachBatch` fills a bounded per-partition buffer (awaiting, with
 * heartbeats, while it is full: backpressure), an input node that cuts one explicit offset
 * range per topic-partition at every batch tick (bounded by `maxRatePerPartition`), typed
 * decoding with dead letters, and commits sent only after a batch's outputs completed.
 * @internal
 */
import { Buffer } from "node:buffer"
import { Effect, Result, Schema, type Scope } from "effect"
import kafkajs from "kafkajs"
import type * as KafkaJS from "kafkajs"
import { InputNode, type InputRuntime, Node, type NodeContext } from "../lib/_internal/node.ts"
import type { BatchInfo } from "../lib/Listener.ts"

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

// ---- records and dead letters ----------------------------------------------------------------

/** Header values as kafkajs delivers them. @internal */
export type Headers = Readonly<Record<string, Uint8Array | string | ReadonlyArray<Uint8Array | string> | undefined>>

/** A decoded record. @internal */
export interface KafkaRecord<K, V> {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  /** Epoch milliseconds. */
  readonly timestamp: number
  /** `null` when the record has no key. */
  readonly key: K | null
  readonly value: V
  readonly headers: Headers
}

/** A record that failed to decode. @internal */
export interface DeadLetter {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  readonly timestamp: number
  readonly key: Uint8Array | null
  readonly value: Uint8Array | null
  readonly headers: Headers
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
  readonly client: ClientOptions
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
}

/** @internal */
export const makeKafka = (client: ClientOptions, id: string): KafkaJS.Kafka =>
  new kafkajs.Kafka({
    brokers: [...client.brokers],
    clientId: client.clientId ?? id,
    ...(client.ssl !== undefined ? { ssl: client.ssl } : {}),
    ...(client.sasl !== undefined ? { sasl: client.sasl } : {}),
    ...(client.connectionTimeout !== undefined ? { connectionTimeout: client.connectionTimeout } : {}),
    ...(client.requestTimeout !== undefined ? { requestTimeout: client.requestTimeout } : {}),
    ...(client.retry !== undefined ? { retry: client.retry } : {}),
    logLevel: client.logLevel ?? kafkajs.logLevel.ERROR,
  })

// ---- the input node ---------------------------------------------------------------------------

const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`

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
  readonly ranges: ReadonlyArray<OffsetRange>
  readonly records: ReadonlyArray<KafkaRecord<K, V>>
  readonly dead: ReadonlyArray<DeadLetter>
}

/** What the user sees of one batch. @internal */
export interface BatchMeta {
  readonly offsetRanges: ReadonlyArray<OffsetRange>
  readonly deadLetters: ReadonlyArray<DeadLetter>
}

const isRebalancing = (e: unknown): boolean => {
  const err = e as { type?: string; name?: string; cause?: unknown } | undefined
  if (err === undefined || err === null) return false
  if (
    err.type === "REBALANCE_IN_PROGRESS" || err.type === "NOT_COORDINATOR_FOR_GROUP" ||
    err.type === "ILLEGAL_GENERATION"
  ) return true
  return err.cause !== undefined && err.cause !== e && isRebalancing(err.cause)
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
  private fatal: unknown = undefined
  private stopped = false
  private consumer: KafkaJS.Consumer | undefined
  private commitChain: Promise<void> = Promise.resolve()
  /** Offsets committed to Kafka by this stream, per partition (for tests and monitoring). */
  readonly committed = new Map<string, TopicPartitionOffset>()
  readonly name: string

  constructor(ctx: NodeContext, readonly options: NodeOptions<K, V>) {
    super(ctx)
    this.name = `Kafka direct stream [${this.id}]`
    for (const s of options.startingOffsets) this.explicitStarts.set(tpKey(s.topic, s.partition), s.offset)
  }

  // ---- kafkajs side (plain promises: kafkajs calls these) ----

  private readonly onGroupJoin = (assignment: Record<string, ReadonlyArray<number>>): void => {
    const next = new Map<string, { topic: string; partition: number }>()
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) next.set(tpKey(topic, partition), { topic, partition })
    }
    // Revoked partitions: drop their buffers and positions; pending commits are abandoned.
    for (const key of this.assigned.keys()) {
      if (!next.has(key)) {
        this.dropBuffer(key)
        this.positions.delete(key)
        this.pending.delete(key)
        this.requested.delete(key)
      }
    }
    // Buffers of kept partitions are dropped too: kafkajs refetches from the committed
    // offset after a rejoin, so seek back to our position (records already cut are not
    // fetched again; buffered-but-uncut ones are fetched again).
    for (const key of next.keys()) this.dropBuffer(key)
    this.assigned.clear()
    for (const [key, tp] of next) this.assigned.set(key, tp)
    this.rebalancing = false
    const consumer = this.consumer
    for (const [key, tp] of next) {
      const explicit = this.explicitStarts.get(key)
      const pos = this.positions.get(key)
      const offset = explicit ?? pos
      if (explicit !== undefined) this.explicitStarts.delete(key)
      if (offset !== undefined && consumer !== undefined) {
        if (explicit !== undefined) this.positions.set(key, explicit)
        try {
          consumer.seek({ topic: tp.topic, partition: tp.partition, offset: String(offset) })
        } catch {
          // not running yet: the explicit start stays for the next join
          if (explicit !== undefined) this.explicitStarts.set(key, explicit)
        }
      }
    }
    this.wakeSpace()
  }

  private dropBuffer(key: string): void {
    const b = this.buffers.get(key)
    if (b !== undefined) {
      this.buffered -= b.entries.length - b.head
      this.buffers.delete(key)
    }
  }

  private readonly eachBatch = async (payload: KafkaJS.EachBatchPayload): Promise<void> => {
    const { batch, heartbeat, isRunning, isStale } = payload
    if (!isRunning() || isStale() || this.stopped) return
    const key = tpKey(batch.topic, batch.partition)
    if (!this.assigned.has(key)) this.assigned.set(key, { topic: batch.topic, partition: batch.partition })
    let buffer = this.buffers.get(key)
    if (buffer === undefined) {
      buffer = { topic: batch.topic, partition: batch.partition, entries: [], head: 0, dead: 0 }
      this.buffers.set(key, buffer)
    }
    // Skip what is already buffered or handed out (refetches after a rejoin).
    const entries = buffer.entries
    const floor = entries.length > buffer.head
      ? entries[entries.length - 1].offset + 1
      : (this.positions.get(key) ?? -1)
    // Decode here, as kafkajs delivers (between its fetches), not at the batch cut: the cut
    // then only hands over ready records. Failures become dead letters in offset order.
    const { topic, partition, messages } = batch
    const keyFormat = this.options.key
    const valueFormat = this.options.value
    let added = 0
    let dead = 0
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i]
      const offset = Number(message.offset)
      if (offset < floor) continue
      const entry = decodeMessage(topic, partition, message, offset, keyFormat, valueFormat)
      if (entry instanceof DeadLetterEntry) dead++
      entries.push(entry)
      added++
    }
    buffer.dead += dead
    this.buffered += added
    // Backpressure: hold kafkajs here while the buffer is full, heartbeating.
    while (this.buffered > this.options.maxBufferedRecords && isRunning() && !isStale() && !this.stopped) {
      await this.waitForSpace(this.options.heartbeatInterval)
      try {
        await heartbeat()
      } catch (e) {
        // Commit through the batch helper (no retrier), then let kafkajs see the typed
        // rebalance error and rejoin: never crash the runner with a wrapped commit error.
        if (isRebalancing(e)) await this.beforeRebalance((offsets) => payload.commitOffsetsIfNecessary(offsets))
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
    await this.flushCommits(commit)
  }

  // ---- the stream side ----

  override start(_rt: InputRuntime): Effect.Effect<void, unknown, Scope.Scope> {
    return Effect.gen({ self: this }, function* () {
      yield* Effect.acquireRelease(
        Effect.tryPromise(() => this.connect()),
        () => Effect.promise(() => this.shutdown()),
      )
      yield* Effect.forkScoped(this.commitLoop())
    })
  }

  private async connect(): Promise<void> {
    const o = this.options
    const kafka = makeKafka(o.client, `effect-dstream-${o.groupId}`)
    const assign = o.strategy._tag === "Assign" ? o.strategy.partitions : undefined
    const consumer = kafka.consumer({
      groupId: o.groupId,
      sessionTimeout: o.sessionTimeout,
      heartbeatInterval: o.heartbeatInterval,
      rebalanceTimeout: o.rebalanceTimeout,
      maxWaitTimeInMs: o.maxWaitTimeInMs,
      ...(o.maxBytesPerPartition !== undefined ? { maxBytesPerPartition: o.maxBytesPerPartition } : {}),
      ...(o.client.retry !== undefined ? { retry: o.client.retry } : {}),
      ...(assign !== undefined ? { partitionAssigners: [fixedAssigner(assign)] } : {}),
    })
    this.consumer = consumer
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      if (this.consumer === consumer) this.onGroupJoin(e.payload.memberAssignment)
    })
    consumer.on(consumer.events.REBALANCING, () => {
      if (this.consumer === consumer) this.rebalancing = true
    })
    consumer.on(consumer.events.CRASH, (e) => {
      if (!e.payload.restart && this.consumer === consumer && !this.stopped) this.restart(consumer, e.payload.error)
    })
    try {
      await consumer.connect()
      if (o.strategy._tag === "SubscribePattern") {
        await consumer.subscribe({ topics: [o.strategy.pattern], fromBeginning: o.autoOffsetReset === "earliest" })
      } else {
        const topics = o.strategy._tag === "Subscribe"
          ? [...o.strategy.topics]
          : [...new Set(o.strategy.partitions.map((p) => p.topic))]
        await consumer.subscribe({ topics, fromBeginning: o.autoOffsetReset === "earliest" })
      }
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: true,
        partitionsConsumedConcurrently: 1,
        eachBatch: this.eachBatch,
      })
      // Explicit starting offsets of partitions assigned at the first join.
      for (const [key, offset] of [...this.explicitStarts]) {
        const tp = this.assigned.get(key)
        if (tp !== undefined) {
          this.explicitStarts.delete(key)
          this.positions.set(key, offset)
          this.dropBuffer(key)
          consumer.seek({ topic: tp.topic, partition: tp.partition, offset: String(offset) })
        }
      }
    } catch (e) {
      await consumer.disconnect().catch(() => undefined)
      throw e
    }
  }

  private crashes: Array<number> = []

  /**
   * kafkajs gave up on a consumer (a non-retriable error, e.g. a protocol error during a
   * rebalance): replace it with a new one that rejoins the group and continues from this
   * stream's positions. More than 5 crashes within a minute fail the stream.
   */
  private restart(crashed: KafkaJS.Consumer, error: unknown): void {
    const now = Date.now()
    this.crashes = this.crashes.filter((t) => t > now - 60_000)
    this.crashes.push(now)
    if (this.crashes.length > 5) {
      this.fatal = error
      return
    }
    console.warn(`${this.name}: the Kafka consumer crashed (${(error as Error)?.message ?? error}); restarting it`)
    this.rebalancing = true
    this.consumer = undefined
    const delay = 200 * this.crashes.length
    void (async () => {
      await crashed.disconnect().catch(() => undefined)
      await new Promise((r) => setTimeout(r, delay))
      if (this.stopped) return
      try {
        await this.connect()
      } catch (e) {
        if (!this.stopped) this.restart(crashed, e)
      }
    })()
  }

  private async shutdown(): Promise<void> {
    this.stopped = true
    this.wakeSpace()
    for (const w of this.inflightWaiters.splice(0)) w()
    const consumer = this.consumer
    if (consumer === undefined) return
    await this.flushCommits().catch(() => undefined)
    // disconnect stops the runner and leaves the group
    await consumer.disconnect().catch(() => undefined)
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

  /** Spark's per-batch cap: `maxRatePerPartition × batch seconds` (at least 1), or unlimited. */
  private get perPartitionLimit(): number {
    const rate = this.options.maxRatePerPartition
    if (rate <= 0) return Infinity
    return Math.max(1, Math.floor((rate * this.ctx.batchMillis) / 1000))
  }

  override allocate(t: number): Effect.Effect<void> {
    return Effect.sync(() => {
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
      this.cuts.set(t, { ranges, records, dead })
      this.inflight.add(t)
      this.record(t, count, {
        offsets: ranges.map((r) => ({
          topic: r.topic,
          partition: r.partition,
          fromOffset: r.fromOffset,
          untilOffset: r.untilOffset,
        })),
        description: ranges.map(String).join("\n"),
      })
      this.wakeSpace()
    })
  }

  compute(t: number): Effect.Effect<ReadonlyArray<KafkaRecord<K, V>>, unknown> {
    return Effect.suspend(() => {
      if (this.fatal !== undefined) {
        return Effect.fail(
          new Error(`Kafka consumer of ${this.name} crashed: ${(this.fatal as Error)?.message ?? this.fatal}`),
        )
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
    for (const time of this.cuts.keys()) if (time <= limit) this.cuts.delete(time)
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
    if (cut !== undefined && this.options.commitMode === "afterOutputs") {
      for (const r of cut.ranges) {
        if (r.untilOffset > r.fromOffset) mergeMax(this.pending, r.topic, r.partition, r.untilOffset)
      }
    }
    for (const [, c] of this.requested) mergeMax(this.pending, c.topic, c.partition, c.offset)
    this.requested.clear()
    this.inflight.delete(t)
    for (const w of this.inflightWaiters.splice(0)) w()
    if (this.pending.size > 0) {
      this.commitDirty = true
      const wake = this.wakeCommitter
      this.wakeCommitter = undefined
      wake?.()
    }
  }

  private commitLoop(): Effect.Effect<never> {
    const waitDirty = Effect.callback<void>((resume) => {
      if (this.commitDirty) resume(Effect.void)
      else this.wakeCommitter = () => resume(Effect.void)
    })
    return Effect.forever(
      Effect.flatMap(waitDirty, () => Effect.promise(() => this.flushCommits().catch(() => undefined))),
    )
  }

  /**
   * Sends the pending commits of partitions still assigned (serialised). Commits of revoked
   * partitions are abandoned; failures of assigned ones are retried with the next flush.
   */
  flushCommits(viaBatchHelper?: CommitFn): Promise<void> {
    const run = async () => {
      this.commitDirty = false
      const consumer = this.consumer
      if (consumer === undefined || this.pending.size === 0) return
      if (this.rebalancing && viaBatchHelper === undefined) {
        // wait for the GROUP_JOIN that ends the rebalance; the next completed batch retries
        this.commitDirty = false
        return
      }
      const batch = [...this.pending.values()].filter((c) => this.assigned.has(tpKey(c.topic, c.partition)))
      this.pending.clear()
      if (batch.length === 0) return
      try {
        if (viaBatchHelper !== undefined) {
          const topics = new Map<string, Array<{ partition: number; offset: string }>>()
          for (const c of batch) {
            let ps = topics.get(c.topic)
            if (ps === undefined) topics.set(c.topic, ps = [])
            ps.push({ partition: c.partition, offset: String(c.offset) })
          }
          await viaBatchHelper({ topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })) })
        } else {
          await consumer.commitOffsets(
            batch.map((c) => ({ topic: c.topic, partition: c.partition, offset: String(c.offset) })),
          )
        }
        for (const c of batch) mergeMax(this.committed, c.topic, c.partition, c.offset)
      } catch (e) {
        // keep them for the next flush; a rebalance that revokes the partition drops them
        for (const c of batch) mergeMax(this.pending, c.topic, c.partition, c.offset)
        if (this.stopped || isRebalancing(e)) return
        console.warn(
          `${this.name}: offset commit failed, will retry after the next batch: ${(e as Error)?.message ?? e}`,
        )
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

type CommitFn = (offsets: KafkaJS.Offsets) => Promise<void>

const mergeMax = (map: Map<string, TopicPartitionOffset>, topic: string, partition: number, offset: number): void => {
  const key = tpKey(topic, partition)
  const old = map.get(key)
  if (old === undefined || old.offset < offset) map.set(key, { topic, partition, offset })
}

/** A dead letter as buffered (a class, so the cut tells it from a record). */
class DeadLetterEntry implements DeadLetter {
  readonly timestamp: number
  readonly key: Uint8Array | null
  readonly value: Uint8Array | null
  readonly headers: Headers
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly offset: number,
    message: KafkaJS.KafkaMessage,
    readonly part: "key" | "value",
    readonly error: string,
  ) {
    this.timestamp = Number(message.timestamp)
    this.key = (message.key as Uint8Array | null) ?? null
    this.value = (message.value as Uint8Array | null) ?? null
    this.headers = (message.headers ?? {}) as Headers
  }
}

const errorText = (e: unknown): string => `Decoder threw: ${(e as Error)?.message ?? String(e)}`

/**
 * Decodes one message into a record, or a dead letter when its key or value does not decode
 * (a throwing custom format also gives a dead letter, never a crashed consumer).
 */
const decodeMessage = <K, V>(
  topic: string,
  partition: number,
  message: KafkaJS.KafkaMessage,
  offset: number,
  keyFormat: Format<K>,
  valueFormat: Format<V>,
): Entry<K, V> => {
  const rawKey = message.key as Uint8Array | null | undefined
  const rawValue = message.value as Uint8Array | null | undefined
  let key: K | null = null
  if (rawKey !== null && rawKey !== undefined) {
    const keyDirect = keyFormat.decodeDirect
    let direct: K | undefined
    try {
      direct = keyDirect === undefined ? undefined : keyDirect(rawKey)
      if (direct === undefined) {
        const k = keyFormat.decode(rawKey)
        if (Result.isFailure(k)) return new DeadLetterEntry(topic, partition, offset, message, "key", k.failure)
        key = k.success
      } else key = direct
    } catch (e) {
      return new DeadLetterEntry(topic, partition, offset, message, "key", errorText(e))
    }
  }
  let value: V
  try {
    const valueDirect = valueFormat.decodeDirect
    const direct = valueDirect === undefined || rawValue === null || rawValue === undefined
      ? undefined
      : valueDirect(rawValue)
    if (direct === undefined) {
      const v = valueFormat.decode(rawValue ?? null)
      if (Result.isFailure(v)) return new DeadLetterEntry(topic, partition, offset, message, "value", v.failure)
      value = v.success
    } else value = direct
  } catch (e) {
    return new DeadLetterEntry(topic, partition, offset, message, "value", errorText(e))
  }
  return {
    topic,
    partition,
    offset,
    timestamp: Number(message.timestamp),
    key,
    value,
    headers: sharedHeaders(message.headers),
  }
}

const noHeaders: Headers = Object.freeze({})
/** The message's headers, or one shared frozen empty object when it has none (most records). */
const sharedHeaders = (headers: KafkaJS.IHeaders | undefined): Headers => {
  if (headers === undefined) return noHeaders
  for (const _ in headers) return headers as Headers
  return noHeaders
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

/**
 * Spark's `Assign`: every member consumes exactly the listed partitions (no sharing).
 * @internal
 */
const fixedAssigner = (
  partitions: ReadonlyArray<{ readonly topic: string; readonly partition: number }>,
): KafkaJS.PartitionAssigner =>
() => ({
  name: "EffectDStreamAssign",
  version: 0,
  protocol: ({ topics }) => ({
    name: "EffectDStreamAssign",
    metadata: kafkajs.AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
  }),
  // kafkajs's assigner contract returns a Promise; this one has nothing to await.
  // deno-lint-ignore require-await
  assign: async ({ members }) => {
    const byTopic: Record<string, Array<number>> = {}
    for (const p of partitions) (byTopic[p.topic] ??= []).push(p.partition)
    return members.map(({ memberId }) => ({
      memberId,
      memberAssignment: kafkajs.AssignerProtocol.MemberAssignment.encode({
        version: 0,
        assignment: byTopic,
        userData: Buffer.alloc(0),
      }),
    }))
  },
})

// ---- producer (sink and dead-letter topic) ---------------------------------------------------

/**
 * A producer connected on first use and disconnected when the context stops.
 * @internal
 */
export class LazyProducer {
  private producer: Promise<KafkaJS.Producer> | undefined
  constructor(readonly client: ClientOptions, readonly config: KafkaJS.ProducerConfig, ctx: NodeContext) {
    ctx.onStop(() =>
      Effect.promise(async () => {
        const p = this.producer
        this.producer = undefined
        if (p !== undefined) await (await p.catch(() => undefined))?.disconnect().catch(() => undefined)
      })
    )
  }
  send(record: KafkaJS.ProducerRecord): Effect.Effect<void, unknown> {
    return Effect.tryPromise({
      try: async () => {
        if (this.producer === undefined) {
          const producer = makeKafka(this.client, "effect-dstream-producer").producer(this.config)
          this.producer = producer.connect().then(() => producer)
          this.producer.catch(() => {
            this.producer = undefined
          })
        }
        const producer = await this.producer
        await producer.send(record)
      },
      catch: (e) => e,
    })
  }
}
