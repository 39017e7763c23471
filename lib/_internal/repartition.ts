/**
 * Scale-out over a Kafka consumer group (the way Kafka Streams scales): N processes in one group
 * split the input partitions; a keyed stage produces every input record's pairs to an internal
 * repartition topic keyed by the state key (Kafka's murmur2 partitioning, so a key always lands
 * on one partition), and the same group consumes that topic, so each repartition partition —
 * one state shard — has one owner. Each batch appends the shards' changed keys to a changelog
 * topic partitioned like them (lib/_internal/changelog.ts), then commits offsets; a process
 * that is assigned a partition restores its shard from the changelog before its first batch
 * with it, and seeks the partition to just after what the shard has applied. Duplicates that a
 * crash between producing and committing creates are recognised by their provenance (source
 * partition, offset, index within the record; see shards.ts `admit`), so state is exactly once.
 *
 * Written against the small client interface (kafkaClient.ts), so nothing here knows kafkajs.
 * @internal
 */
import { Buffer } from "node:buffer"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import process from "node:process"
import { type Context, Data, Effect, Result, type Scope } from "effect"
import type { BatchInfo } from "../Listener.ts"
import type { MappingFunction } from "../State.ts"
import {
  controlKey,
  controlRecord,
  controlText,
  decodeCache,
  encodeCache,
  jsonText,
  type RestorePoint,
  Restorer,
  sourcesList,
} from "./changelog.ts"
import {
  type Admin,
  type ConsumerGroup,
  type KafkaClient,
  type KafkaRecord,
  type OutgoingRecord,
  type Producer,
  type RawRecord,
  type TopicPartition,
  type TopicPartitionOffset,
  tpKey,
} from "./kafkaClient.ts"
import { type Batch, InputNode, type InputRuntime, Node, type NodeContext, type NodeEnv } from "./node.ts"
import {
  appendRecords,
  correctionRecords,
  restoredShard,
  type Shard,
  type ShardCodec,
  shardEntries,
  ShardMapper,
  shardPoint,
  type ShardRecord,
  type Source,
  updateShard,
} from "./shards.ts"
import type { BatchTransactions } from "./kafkaTransactions.ts"
import type { TaggedErrorClass } from "./taggedError.ts"
import type { Option } from "effect"

/**
 * How a key or value is read from bytes and written back (the shape of the direct stream's
 * formats, receivers/kafka.ts, which this module cannot import).
 * @internal
 */
export interface Format<A> {
  readonly decode: (bytes: Uint8Array | null) => Result.Result<A, string>
  readonly encode: (a: A) => Uint8Array | string | null
}

// ---- Kafka's default partitioner -------------------------------------------------------------

/** Kafka's murmur2 (Java client `Utils.murmur2`), as a signed 32-bit integer. @internal */
export const murmur2 = (data: Uint8Array): number => {
  const length = data.length
  const m = 0x5bd1e995
  let h = (0x9747b28c ^ length) | 0
  const length4 = length >> 2
  for (let i = 0; i < length4; i++) {
    const i4 = i << 2
    let k = (data[i4] & 0xff) | ((data[i4 + 1] & 0xff) << 8) | ((data[i4 + 2] & 0xff) << 16) |
      ((data[i4 + 3] & 0xff) << 24)
    k = Math.imul(k, m)
    k ^= k >>> 24
    k = Math.imul(k, m)
    h = Math.imul(h, m)
    h ^= k
  }
  const tail = length & ~3
  switch (length & 3) {
    case 3:
      h ^= (data[tail + 2] & 0xff) << 16
    // falls through
    case 2:
      h ^= (data[tail + 1] & 0xff) << 8
    // falls through
    case 1:
      h ^= data[tail] & 0xff
      h = Math.imul(h, m)
  }
  h ^= h >>> 13
  h = Math.imul(h, m)
  h ^= h >>> 15
  return h | 0
}

const encoder = new TextEncoder()
/** Where string keys are encoded for hashing (no array per key); longer keys get their own. */
const scratch = new Uint8Array(1024)

const keyBytes = (key: string): Uint8Array => {
  if (key.length * 3 > scratch.length) return encoder.encode(key)
  const { written } = encoder.encodeInto(key, scratch)
  return scratch.subarray(0, written)
}

/** The partition Kafka's default partitioner picks for a keyed record. @internal */
export const partitionFor = (key: Uint8Array | string, partitions: number): number =>
  (murmur2(typeof key === "string" ? keyBytes(key) : key) & 0x7fffffff) % partitions

// ---- errors -----------------------------------------------------------------------------------

/** @internal */
export const ScaleOutErrorBase: TaggedErrorClass<"ScaleOutError", {
  readonly message: string
}> = Data.TaggedError("ScaleOutError")

/**
 * A scale-out stream cannot run as configured: an internal topic with the wrong partition count,
 * a key that does not belong to the partition it was declared to be partitioned by, a changelog
 * that cannot be read.
 * @internal
 */
export class ScaleOutError extends ScaleOutErrorBase {}

// ---- what the engine needs of a stage -----------------------------------------------------------

/** A keyed stage: its name, topics, how it decodes and writes records. @internal */
export interface Stage<K, V> {
  readonly name: string
  /** `undefined` when the input is declared partitioned by the key (no repartition topic). */
  readonly repartitionTopic: string | undefined
  readonly changelogTopic: string
  readonly key: Format<K>
  /** The repartition topic's value format (`undefined` without one). */
  readonly value: Format<V> | undefined
  /** The state owner, once a stateful operator is attached. */
  state: ShardedStateNode<K, V, any, any> | undefined
}

/** A shard as the engine reports it. @internal */
export interface ShardInfo {
  readonly stage: string
  readonly partition: number
  readonly keys: number
  /** Highest offset applied of the shard's partition (-1: none). */
  readonly applied: number
  /** Records skipped as already applied. */
  readonly duplicates: number
}

/** A finished restore. @internal */
export interface RestoreInfo {
  readonly stage: string
  readonly partition: number
  readonly records: number
  readonly keys: number
  readonly millis: number
  readonly recordsPerSecond: number
  /** Records ignored: a zombie's, or an append cut by a crash. */
  readonly ignored: number
  /**
   * Where the read began: `"changelog"` (the partition's log start), `"cache"` (a local cache
   * file of the shard: only the changelog after it was read) or `"standby"` (this member was
   * tailing the partition: only what it had not read yet was read).
   */
  readonly from: "changelog" | "cache" | "standby"
  /** The changelog offset the read began at. */
  readonly startOffset: number
  /** Why a cache file was not used (absent, corrupt, stale), when there was one. */
  readonly cacheRejected?: string | undefined
}

/** A changelog partition this member tails without owning it (a standby shard). @internal */
export interface StandbyInfo {
  readonly stage: string
  readonly partition: number
  readonly keys: number
  /** Offset after the last changelog record read. */
  readonly offset: number
  /** Changelog records after it, as of the last look at the partition's end. */
  readonly lag: number
}

/** A standby shard: a restore of a partition this member does not own, kept going. */
interface Standby {
  readonly stage: Stage<any, any>
  readonly partition: number
  restorer: Restorer
  /** The read in progress (`undefined`: none). */
  reading: Promise<void> | undefined
  high: number
}

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex")

// ---- the input node -----------------------------------------------------------------------------

interface PartitionBuffer {
  readonly topic: string
  readonly partition: number
  records: Array<RawRecord>
}

interface Cut {
  /** Raw records per topic-partition key, in offset order. */
  readonly parts: ReadonlyMap<string, ReadonlyArray<RawRecord>>
  /** Next offset per topic-partition (what to commit). */
  readonly until: ReadonlyArray<TopicPartitionOffset>
}

/** @internal */
export interface ScaleNodeOptions<K, V> {
  /** The client (the same one every call); `services` for its log, once the stream starts. */
  readonly client: (services: Context.Context<never> | undefined) => KafkaClient
  /** The brokers (an exactly-once sink must name the same). */
  readonly brokers: ReadonlyArray<string>
  readonly applicationId: string
  readonly groupId: string
  readonly topic: string
  readonly key: Format<K>
  readonly value: Format<V>
  readonly fromBeginning: boolean
  readonly sessionTimeout: number
  readonly heartbeatInterval: number
  readonly rebalanceTimeout: number
  readonly maxWaitTimeInMs: number
  readonly maxBufferedRecords: number
  /** Records of one partition a batch takes at most. */
  readonly maxRecordsPerPartition: number
  /** Create missing internal topics with the input's partition count (default true). */
  readonly createTopics: boolean
  /**
   * Where shards are cached as local files (`undefined`: the context's checkpoint directory's
   * `kafka-scale/<applicationId>`, or no cache without one).
   */
  readonly stateDirectory: string | undefined
  /** A shard's cache file is written at most this often, in ms (also on revocation and at stop). */
  readonly cacheIntervalMillis: number
  /** Changelog partitions tailed while not owned: all, these, or none. */
  readonly standbys: boolean | ReadonlyArray<number>
  /** How often standby shards look for the changelog's new records, in ms. */
  readonly standbyIntervalMillis: number
}

/**
 * The scale-out input: one consumer group member reading the input topic and every stage's
 * repartition topic; cuts what it buffered at each batch tick; commits after the batch; owns
 * the assignment's shards (restored before records of a new partition are delivered).
 * @internal
 */
export class ScaleInputNode<K, V> extends InputNode<KafkaRecord<K, V>> {
  readonly kind = "KafkaScaleOutInputDStream"
  readonly name: string
  readonly stages: Array<Stage<any, any>> = []
  private readonly buffers = new Map<string, PartitionBuffer>()
  private readonly cuts = new Map<number, Cut>()
  /** Per assigned partition, the offset after the last record buffered. */
  private readonly positions = new Map<string, number>()
  private assigned = new Map<string, TopicPartition>()
  private buffered = 0
  private client: KafkaClient | undefined
  private group: ConsumerGroup | undefined
  producer: Producer | undefined
  private admin: Admin | undefined
  generation = -1
  /** The input's partition count (internal topics have as many). */
  partitions = 0
  /** While the assignment changes: batches cut nothing. */
  private assigning = false
  private lastAllocated = -Infinity
  private lastCompleted = -Infinity
  private completionWaiters: Array<() => void> = []
  private spaceWaiters: Array<() => void> = []
  private services: Context.Context<never> | undefined
  private stopped = false
  private fatal: unknown = undefined
  readonly restores: Array<RestoreInfo> = []
  private rt: InputRuntime | undefined
  /** Where shard caches go (`undefined`: no cache). */
  cacheDirectory: string | undefined = undefined
  private readonly standbyShards = new Map<string, Standby>()
  /** Shards being restored (`stage\0partition`): no standby read starts for them. */
  private readonly restoring = new Set<string>()
  /**
   * Exactly once (set up by the first exactly-once sink of the stream): the changelog appends
   * and the input and repartition offsets go into each batch's transaction with the sinks'
   * records; the consumer and the restores read `read_committed`.
   */
  transactions: BatchTransactions | undefined = undefined

  /** The stream's client (created on first use). */
  kafkaClient(): KafkaClient {
    return this.client ??= this.options.client(this.services)
  }

  constructor(ctx: NodeContext, readonly options: ScaleNodeOptions<K, V>) {
    super(ctx)
    this.name = `Kafka scale-out [${options.applicationId}]`
  }

  // ---- logging ----

  log(level: "Info" | "Warning" | "Error", message: string): void {
    const services = this.services
    if (services === undefined) return
    const text = `${this.name}: ${message}`
    Effect.runForkWith(services)(
      level === "Error" ? Effect.logError(text) : level === "Warning" ? Effect.logWarning(text) : Effect.logInfo(text),
    )
  }

  /** Publishes a `KafkaShards` listener event. */
  private publishShards(
    kind: "assigned" | "restoring" | "restored" | "standby",
    restore: {
      readonly stage: string
      readonly partition: number
      readonly records: number
      readonly recordsPerSecond: number
      readonly remaining: number
    } | undefined,
  ): void {
    const rt = this.rt
    const services = this.services
    if (rt === undefined || services === undefined) return
    Effect.runForkWith(services)(rt.publish({
      _tag: "KafkaShards",
      kind,
      stream: this.name,
      partitions: this.assignment(),
      shards: this.shardInfo().map((s) => ({ stage: s.stage, partition: s.partition, keys: s.keys })),
      standbys: this.standbyInfo(),
      restore: restore === undefined ? undefined : {
        stage: restore.stage,
        partition: restore.partition,
        records: restore.records,
        recordsPerSecond: restore.recordsPerSecond,
        remaining: restore.remaining,
      },
    }))
  }

  // ---- start: topics, producer, group ----

  override start(rt: InputRuntime): Effect.Effect<void, unknown, Scope.Scope | NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      this.rt = rt
      this.services = yield* Effect.context<never>()
      yield* Effect.addFinalizer(() => Effect.promise(() => this.shutdown()))
      const client = this.options.client(this.services)
      this.client = client
      const checkpointDir = this.ctx.checkpointDir()
      const txs = this.transactions
      if (txs !== undefined && checkpointDir !== undefined) {
        return yield* Effect.fail(
          new ScaleOutError({
            message:
              `Cannot write ${this.name} exactly once with a checkpoint directory: a recovery would re-run batches whose transactions committed (use stateDirectory for shard caches)`,
          }),
        )
      }
      if (txs !== undefined) yield* Effect.addFinalizer(() => Effect.promise(() => txs.close()))
      this.cacheDirectory = this.options.stateDirectory ??
        (checkpointDir === undefined
          ? undefined
          : nodePath.join(checkpointDir, "kafka-scale", this.options.applicationId))
      if (this.cacheDirectory !== undefined) fs.mkdirSync(this.cacheDirectory, { recursive: true })
      this.admin = yield* Effect.tryPromise({ try: () => client.admin(), catch: (e) => e })
      yield* Effect.tryPromise({ try: () => this.prepareTopics(), catch: (e) => e })
      this.producer = yield* Effect.tryPromise({
        try: () => client.producer({ maxInFlightRequests: 1, acks: -1 }),
        catch: (e) => e,
      })
      yield* Effect.promise(() => this.connectGroup())
      if (this.options.standbys !== false && this.stages.some((s) => s.state !== undefined)) void this.standbyLoop()
    })
  }

  private crashes: Array<number> = []

  /**
   * Joins the group; a failed attempt (a broker error during the join) is retried with backoff,
   * in the background after the first one. More than 5 failures or crashes within a minute
   * fail the stream.
   */
  private async connectGroup(delay = 200): Promise<void> {
    if (this.stopped || this.fatal !== undefined) return
    try {
      this.group = await this.joinGroup()
    } catch (e) {
      if (this.stopped || this.tooManyFailures(e)) return
      this.log("Warning", `cannot join group "${this.options.groupId}" (${errorMessage(e)}); retrying`)
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined
        void this.connectGroup(Math.min(5000, delay * 2))
      }, delay)
    }
  }

  /** The pending retry of a failed join (cleared at shutdown). */
  private retryTimer: ReturnType<typeof setTimeout> | undefined = undefined

  private tooManyFailures(e: unknown): boolean {
    const now = Date.now()
    this.crashes = this.crashes.filter((t) => t > now - 60_000)
    this.crashes.push(now)
    if (this.crashes.length <= 5) return false
    this.fatal = e
    return true
  }

  /**
   * The consumer gave up for good: start a new one. The shards are dropped (the next assignment
   * restores them from the changelog), as are the buffers (the new consumer starts from the
   * shards' positions and the committed offsets).
   */
  private rejoin(crashed: ConsumerGroup | undefined, error: unknown): void {
    if (this.stopped || this.tooManyFailures(error)) return
    this.log("Warning", `the consumer crashed (${errorMessage(error)}); rejoining the group`)
    this.group = undefined
    this.assigned = new Map()
    this.buffers.clear()
    this.positions.clear()
    this.buffered = 0
    for (const s of this.stages) s.state?.shards.clear()
    void (async () => {
      await crashed?.disconnect().catch(() => undefined)
      await new Promise((r) => setTimeout(r, 200 * this.crashes.length))
      await this.connectGroup()
    })()
  }

  private joinGroup(): Promise<ConsumerGroup> {
    const o = this.options
    const client = this.client!
    const topics = [
      o.topic,
      ...this.stages.flatMap((s) => s.repartitionTopic === undefined ? [] : [s.repartitionTopic]),
    ]
    let group: ConsumerGroup | undefined
    let crashed: unknown = undefined
    const joined = client.consumerGroup({
      groupId: o.groupId,
      subscription: { _tag: "Topics", topics },
      fromBeginning: o.fromBeginning,
      isolation: this.transactions === undefined ? "read_uncommitted" : "read_committed",
      sessionTimeout: o.sessionTimeout,
      heartbeatInterval: o.heartbeatInterval,
      rebalanceTimeout: o.rebalanceTimeout,
      maxWaitTimeInMs: o.maxWaitTimeInMs,
    }, {
      onAssignment: (assigned, generation) => this.onAssignment(assigned, generation),
      onRebalancing: () => {},
      onBatch: async (batch, control) => {
        const key = tpKey(batch.topic, batch.partition)
        if (!this.assigned.has(key) || this.stopped) return
        let b = this.buffers.get(key)
        if (b === undefined) {
          this.buffers.set(key, b = { topic: batch.topic, partition: batch.partition, records: [] })
        }
        // records before the position were cut already (a refetch after a rejoin)
        const from = this.positions.get(key) ?? -1
        let next = from
        for (const r of batch.records) {
          if (r.offset >= next) {
            b.records.push(r)
            this.buffered++
            next = r.offset + 1
          }
        }
        this.positions.set(key, next)
        while (this.buffered > o.maxBufferedRecords && control.isActive() && !this.stopped) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, o.heartbeatInterval)
            this.spaceWaiters.push(() => {
              clearTimeout(timer)
              resolve()
            })
          })
          await control.heartbeat()
        }
      },
      onCrash: (error, restarting) => {
        if (this.stopped) return
        if (restarting) {
          this.log("Warning", `the consumer crashed (restarting): ${errorMessage(error)}`)
          return
        }
        if (crashed !== undefined) return
        crashed = error
        if (group !== undefined) this.rejoin(group, error)
      },
    })
    return joined.then((g) => {
      group = g
      // crashed while joining: the join itself succeeded, start over
      if (crashed !== undefined) this.rejoin(g, crashed)
      return g
    })
  }

  /** Checks (and creates, where the broker can) the internal topics: as many partitions as the input. */
  private async prepareTopics(): Promise<void> {
    const admin = this.admin!
    const input = this.options.topic
    const internal = this.stages.flatMap((s) => [
      ...(s.repartitionTopic === undefined ? [] : [{ topic: s.repartitionTopic, compact: false }]),
      ...(s.state === undefined ? [] : [{ topic: s.changelogTopic, compact: true }]),
    ])
    const counts = await admin.partitionCounts([input])
    const n = counts.get(input)
    if (n === undefined) {
      throw new ScaleOutError({ message: `Cannot scale out: the input topic "${input}" does not exist` })
    }
    this.partitions = n
    if (this.options.createTopics && internal.length > 0) {
      try {
        await admin.createTopics(internal.map((t) => ({
          topic: t.topic,
          partitions: n,
          ...(t.compact ? { config: { "cleanup.policy": "compact" } } : {}),
        })))
      } catch (e) {
        // brokers without CreateTopics (the test broker) auto-create topics on first use
        this.log("Info", `cannot create the internal topics (${errorMessage(e)}); relying on auto-creation`)
      }
    }
    const have = await admin.partitionCounts(internal.map((t) => t.topic))
    for (const t of internal) {
      const c = have.get(t.topic)
      if (c !== undefined && c !== n) {
        throw new ScaleOutError({
          message:
            `Cannot scale out: the internal topic "${t.topic}" has ${c} partitions, the input topic "${input}" has ${n}: they must be equal (delete it, or create it with ${n} partitions)`,
        })
      }
      if (c === undefined) {
        throw new ScaleOutError({
          message:
            `Cannot scale out: the internal topic "${t.topic}" does not exist and could not be created; create it with ${n} partitions`,
        })
      }
    }
  }

  private async shutdown(): Promise<void> {
    this.stopped = true
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
    for (const stage of this.stages) {
      for (const shard of stage.state?.shards.values() ?? []) this.writeCache(stage, shard, true)
    }
    for (const w of this.spaceWaiters.splice(0)) w()
    for (const w of this.completionWaiters.splice(0)) w()
    const group = this.group
    this.group = undefined
    await group?.disconnect().catch(() => undefined)
    await this.producer?.disconnect().catch(() => undefined)
    await this.admin?.disconnect().catch(() => undefined)
  }

  override stopReceiving(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.stopped = true
      for (const w of this.spaceWaiters.splice(0)) w()
    })
  }

  override keepsUnprocessed(): boolean {
    return true
  }

  override storedRecords(): number {
    return this.buffered
  }

  // ---- assignment: finish the batch in flight, drop revoked shards, restore new ones ----

  private async onAssignment(
    assigned: ReadonlyArray<TopicPartition>,
    generation: number,
  ): Promise<ReadonlyArray<TopicPartitionOffset>> {
    this.assigning = true
    const starts: Array<TopicPartitionOffset> = []
    try {
      // batches cut before hold records of partitions that may go: let them finish first
      const before = this.lastAllocated
      const deadline = Date.now() + Math.max(1000, this.options.sessionTimeout)
      while (this.lastCompleted < before && Date.now() < deadline && !this.stopped) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 50)
          this.completionWaiters.push(() => {
            clearTimeout(timer)
            resolve()
          })
        })
      }
      // exactly once: the completed batches' transactions commit before the partitions move,
      // then the previous owners of the new partition set are fenced (their open transactions
      // aborted), then the group's offsets are read
      let fenced: ReadonlyArray<TopicPartitionOffset> = []
      const txs = this.transactions
      if (txs !== undefined) {
        await Promise.race([txs.idle(), new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())))])
        fenced = await txs.prepare(assigned)
      }
      this.generation = generation
      const next = new Map<string, TopicPartition>()
      for (const tp of assigned) next.set(tpKey(tp.topic, tp.partition), tp)
      for (const key of this.assigned.keys()) {
        if (!next.has(key)) {
          const b = this.buffers.get(key)
          if (b !== undefined) this.buffered -= b.records.length
          this.buffers.delete(key)
          this.positions.delete(key)
        }
      }
      // kept partitions continue where this member was (the client would go back to the
      // committed offsets): after the buffered records
      const old = this.assigned
      const shardSources = new Set<string>()
      this.assigned = next
      for (const w of this.spaceWaiters.splice(0)) w()
      const restores: Array<Promise<void>> = []
      for (const stage of this.stages) {
        const state = stage.state
        if (state === undefined) continue
        const source = stage.repartitionTopic ?? this.options.topic
        const mine = new Set(assigned.filter((tp) => tp.topic === source).map((tp) => tp.partition))
        for (const [p, shard] of [...state.shards]) {
          if (!mine.has(p)) {
            state.shards.delete(p)
            this.writeCache(stage, shard, true)
            const kept = this.keepAsStandby(stage, shard)
            this.log(
              "Info",
              `shard ${stage.name}[${p}] moved to another member: ${kept ? "kept as a standby" : "dropped"}`,
            )
          }
        }
        for (const p of mine) {
          if (!state.shards.has(p) || !old.has(tpKey(source, p))) {
            shardSources.add(tpKey(source, p))
            restores.push(
              this.restoreShard(stage, state, source, p).then((start) => {
                starts.push(start)
              }),
            )
          }
        }
      }
      for (const [key, tp] of next) {
        const pos = this.positions.get(key)
        if (old.has(key) && pos !== undefined && !shardSources.has(key)) starts.push({ ...tp, offset: pos })
      }
      await Promise.all(restores)
      const has = new Set(starts.map((s) => tpKey(s.topic, s.partition)))
      for (const c of fenced) if (!has.has(tpKey(c.topic, c.partition))) starts.push(c)
      this.log(
        "Info",
        `generation ${generation}: owns ${
          [...next.values()].map((tp) => `${tp.topic}[${tp.partition}]`).join(", ") || "no partitions"
        }; shards ${this.shardInfo().map((s) => `${s.stage}[${s.partition}] (${s.keys} keys)`).join(", ") || "none"}`,
      )
      this.publishShards("assigned", undefined)
    } catch (e) {
      this.fatal = e
      this.log("Error", `cannot take over the assigned partitions: ${errorMessage(e)}`)
    } finally {
      this.assigning = false
    }
    return starts
  }

  /**
   * Restores the shard of `partition`, claims it, corrects what the log left unconfirmed, seeks.
   * The read starts from this member's standby of the partition, else from a valid local cache
   * of the shard, else from the changelog's log start.
   */
  private async restoreShard(
    stage: Stage<any, any>,
    state: ShardedStateNode<any, any, any, any>,
    source: string,
    partition: number,
  ): Promise<TopicPartitionOffset> {
    const key = `${stage.name}\u0000${partition}`
    this.restoring.add(key)
    try {
      return await this.restoreShard_(stage, state, source, partition)
    } finally {
      this.restoring.delete(key)
    }
  }

  private async restoreShard_(
    stage: Stage<any, any>,
    state: ShardedStateNode<any, any, any, any>,
    source: string,
    partition: number,
  ): Promise<TopicPartitionOffset> {
    const client = this.client!
    const topic = stage.changelogTopic
    const started = Date.now()
    // from the log start (retention or a broker's log start offset may have moved it) to its end
    const marks = (await this.admin!.watermarks(topic)).find((w) => w.partition === partition)
    const low = marks?.low ?? 0
    const end = marks?.high ?? 0
    let lastReport = started
    let restorer: Restorer | undefined = undefined
    let cacheRejected: string | undefined = undefined
    let readFrom = low
    let counted = 0
    const progress = () => {
      const now = Date.now()
      if (now - lastReport < 1000) return
      lastReport = now
      const info = {
        stage: stage.name,
        partition,
        records: restorer!.records - counted,
        recordsPerSecond: Math.round((restorer!.records - counted) / ((now - started) / 1000)),
        remaining: Math.max(0, end - restorer!.next),
      }
      this.log(
        "Info",
        `restoring shard ${stage.name}[${partition}] (from ${
          restorer!.from
        }): ${info.records} records read, ${info.recordsPerSecond} records/s, ${info.remaining} remaining`,
      )
      this.publishShards("restoring", info)
    }
    // a standby of the partition: continue its read
    const standby = this.standbyShards.get(`${stage.name}\u0000${partition}`)
    if (standby !== undefined) {
      this.standbyShards.delete(`${stage.name}\u0000${partition}`)
      await standby.reading?.catch(() => undefined)
      if (standby.restorer.next >= low && standby.restorer.next <= end) {
        restorer = standby.restorer
        restorer.from = "standby"
        restorer.startOffset = restorer.next
        counted = restorer.records
        readFrom = restorer.next
      } else {
        this.log(
          "Warning",
          `the standby of shard ${stage.name}[${partition}] is outside the changelog's offsets ${low} to ${end}: dropped`,
        )
      }
    }
    // a local cache: its marker must still be in the log, as written
    if (restorer === undefined) {
      const cached = this.readCache(stage, partition)
      if (typeof cached === "string") cacheRejected = cached
      else if (cached !== undefined) {
        if (cached.lastControl < low || cached.next > end) {
          cacheRejected =
            `stale: it ends at changelog offset ${cached.next}, the changelog holds offsets ${low} to ${end}`
        } else {
          const check = Restorer.fromPoint(cached, "cache")
          let verified: boolean | undefined = undefined
          for await (const chunk of client.readPartition({ topic, partition }, cached.lastControl, this.isolation())) {
            if (verified === undefined) {
              const first = chunk[0]
              verified = first !== undefined && first.offset === cached.lastControl &&
                controlText(first) === cached.control
              if (!verified) break
              check.add(chunk.slice(1))
            } else check.add(chunk)
            restorer = check
            progress()
          }
          if (verified === true) restorer = check
          else {
            restorer = undefined
            cacheRejected =
              `stale: the changelog does not hold its marker at offset ${cached.lastControl} (another log, or compacted)`
          }
        }
      }
      if (cacheRejected !== undefined && !cacheRejected.startsWith("absent")) {
        this.log(
          "Warning",
          `the cache of shard ${stage.name}[${partition}] is not used (${cacheRejected}); reading the changelog from its start`,
        )
      }
    }
    if (restorer === undefined) {
      restorer = new Restorer()
      restorer.startOffset = low
      readFrom = low
    }
    if (restorer.from !== "cache") {
      for await (const chunk of client.readPartition({ topic, partition }, readFrom, this.isolation())) {
        restorer.add(chunk)
        progress()
      }
    }
    restorer.finish()
    return this.claimShard(stage, state, source, partition, restorer, counted, started, end, low, cacheRejected)
  }

  /** After the read: claims the shard, writes the corrections, installs the shard, reports. */
  private async claimShard(
    stage: Stage<any, any>,
    state: ShardedStateNode<any, any, any, any>,
    source: string,
    partition: number,
    restorer: Restorer,
    counted: number,
    started: number,
    end: number,
    low: number,
    cacheRejected: string | undefined,
  ): Promise<TopicPartitionOffset> {
    const client = this.client!
    const producer = this.producer!
    const topic = stage.changelogTopic
    // everything below this was read (offsets without records too: a gap, a deleted head)
    const readEnd = Math.max(restorer.next, end, low)
    const shard = restoredShard(partition, restorer, state.codec, state.timed)
    // the claim: its offset is this owner's token
    const [claimed] = await producer.send([controlRecord(topic, partition, {
      kind: "claim",
      token: -1,
      base: restorer.lastControl,
      batch: -1,
      applied: shard.applied,
      sources: sourcesList(shard.position),
      generation: this.generation,
    }, Date.now())])
    shard.token = claimed.baseOffset
    shard.logEnd = claimed.baseOffset + 1
    // records that landed between the end of the read and the claim are not in the shard
    const corrections = new Set(restorer.corrections)
    if (claimed.baseOffset > readEnd) {
      for await (const chunk of client.readPartition({ topic, partition }, readEnd, this.isolation())) {
        for (const r of chunk) {
          if (r.offset >= claimed.baseOffset || r.key === null) continue
          const k = jsonText(r.key)
          if (k !== controlKey) corrections.add(k)
        }
      }
    }
    const fixes = correctionRecords(shard, topic, corrections, state.codec, state.timed, this.generation, Date.now())
    const written = await this.sendTracked(fixes)
    noteAppend(shard, topic, fixes, written)
    state.shards.set(partition, shard)
    this.writeCache(stage, shard, false)
    this.positions.set(tpKey(source, partition), shard.applied + 1)
    const millis = Date.now() - started
    const records = restorer.records - counted
    const info: RestoreInfo = {
      stage: stage.name,
      partition,
      records,
      keys: shard.state.size,
      millis,
      recordsPerSecond: millis === 0 ? records * 1000 : Math.round(records / (millis / 1000)),
      ignored: restorer.zombies + restorer.dropped,
      from: restorer.from,
      startOffset: restorer.startOffset,
      cacheRejected,
    }
    this.restores.push(info)
    this.publishShards("restored", { ...info, remaining: 0 })
    this.log(
      "Info",
      `restored shard ${stage.name}[${partition}] from ${
        restorer.from === "changelog" ? "the changelog" : `its ${restorer.from} and the changelog`
      } after offset ${restorer.startOffset}: ${info.records} changelog records, ${info.keys} keys in ${millis} ms (${info.recordsPerSecond} records/s${
        info.ignored > 0 ? `, ${info.ignored} unconfirmed or zombie records ignored` : ""
      }), from offset ${shard.applied + 1}`,
    )
    // continue after what the shard has applied, whatever the group committed
    return { topic: source, partition, offset: shard.applied + 1 }
  }

  /** How changelogs are read: `read_committed` when the appends are transactional. */
  private isolation(): { readonly isolation: "read_committed" | "read_uncommitted" } {
    return { isolation: this.transactions === undefined ? "read_uncommitted" : "read_committed" }
  }

  // ---- local caches of shards ----

  private cacheFile(stage: Stage<any, any>, partition: number): string | undefined {
    const dir = this.cacheDirectory
    return dir === undefined ? undefined : nodePath.join(dir, `${stage.changelogTopic}-${partition}.cache`)
  }

  /**
   * The cache of a shard: a restore point, `undefined` without a cache directory, or why it
   * cannot be used (`absent`, `corrupt: ...`).
   */
  private readCache(stage: Stage<any, any>, partition: number): RestorePoint | string | undefined {
    const file = this.cacheFile(stage, partition)
    if (file === undefined) return undefined
    let text: string
    try {
      text = fs.readFileSync(file, "utf8")
    } catch (e) {
      return (e as { code?: unknown }).code === "ENOENT" ? "absent" : `unreadable: ${errorMessage(e)}`
    }
    try {
      return decodeCache(text, stage.changelogTopic, partition, sha256)
    } catch (e) {
      return `corrupt: "${file}": ${errorMessage(e)}`
    }
  }

  /**
   * Writes a shard's cache file (temp file, then rename) when it is a restore point and, unless
   * `now`, the last write is older than the cache interval.
   */
  writeCache(stage: Stage<any, any>, shard: Shard<any, unknown>, now: boolean): void {
    const file = this.cacheFile(stage, shard.partition)
    const state = stage.state
    // exactly once: an acknowledged append may still be aborted with its transaction
    if (file === undefined || state === undefined || this.transactions !== undefined) return
    if (!now && Date.now() - shard.cachedAt < this.options.cacheIntervalMillis) return
    const point = shardPoint(shard, stage.changelogTopic, state.codec, state.timed, this.generation)
    if (point === undefined) return
    try {
      const tmp = `${file}.${process.pid}.tmp`
      fs.writeFileSync(tmp, encodeCache(point, sha256))
      fs.renameSync(tmp, file)
      shard.cachedAt = Date.now()
    } catch (e) {
      this.log("Warning", `cannot write the cache of shard ${stage.name}[${shard.partition}]: ${errorMessage(e)}`)
    }
  }

  // ---- standby shards ----

  private standbyWanted(partition: number): boolean {
    const s = this.options.standbys
    return s === true || (Array.isArray(s) && s.includes(partition))
  }

  /** A revoked shard that is a restore point becomes a standby (when standbys are on for it). */
  private keepAsStandby(stage: Stage<any, any>, shard: Shard<any, unknown>): boolean {
    const state = stage.state
    if (state === undefined || !this.standbyWanted(shard.partition) || this.transactions !== undefined) return false
    const point = shardPoint(shard, stage.changelogTopic, state.codec, state.timed, this.generation)
    if (point === undefined) return false
    this.standbyShards.set(`${stage.name}\u0000${shard.partition}`, {
      stage,
      partition: shard.partition,
      restorer: Restorer.fromPoint(point, "standby"),
      reading: undefined,
      high: point.next,
    })
    return true
  }

  /** Every standby interval: reads the new changelog records of the partitions tailed. */
  private async standbyLoop(): Promise<void> {
    while (!this.stopped && this.fatal === undefined) {
      await new Promise((r) => setTimeout(r, this.options.standbyIntervalMillis))
      if (this.stopped || this.group === undefined) continue
      for (const stage of this.stages) {
        const state = stage.state
        if (state === undefined) continue
        try {
          const marks = await this.admin!.watermarks(stage.changelogTopic)
          for (const m of marks) {
            const key = `${stage.name}\u0000${m.partition}`
            if (!this.standbyWanted(m.partition) || state.shards.has(m.partition) || this.restoring.has(key)) {
              if (state.shards.has(m.partition) && this.standbyShards.delete(key)) {
                this.publishShards("standby", undefined)
              }
              continue
            }
            let sb = this.standbyShards.get(key)
            if (sb === undefined || sb.restorer.next < m.low || sb.restorer.next > m.high) {
              const restorer = new Restorer()
              restorer.next = m.low
              sb = { stage, partition: m.partition, restorer, reading: undefined, high: m.high }
              this.standbyShards.set(key, sb)
              this.log(
                "Info",
                `standby of shard ${stage.name}[${m.partition}]: tailing its changelog from offset ${m.low}`,
              )
              this.publishShards("standby", undefined)
            }
            sb.high = m.high
            if (m.high <= sb.restorer.next) continue
            const reading = this.tail(sb, stage.changelogTopic)
            sb.reading = reading
            await reading.catch((e) =>
              this.log("Warning", `standby read of ${stage.changelogTopic} [${m.partition}] failed: ${errorMessage(e)}`)
            )
            sb.reading = undefined
          }
        } catch (e) {
          if (!this.stopped) this.log("Warning", `standby shards of "${stage.name}": ${errorMessage(e)}`)
        }
      }
    }
  }

  private async tail(sb: Standby, topic: string): Promise<void> {
    for await (
      const chunk of this.client!.readPartition({ topic, partition: sb.partition }, sb.restorer.next, this.isolation())
    ) {
      sb.restorer.add(chunk)
      if (this.stopped) break
    }
  }

  /** The standby shards this member keeps. */
  standbyInfo(): Array<StandbyInfo> {
    return [...this.standbyShards.values()].map((sb) => ({
      stage: sb.stage.name,
      partition: sb.partition,
      keys: sb.restorer.state.size,
      offset: sb.restorer.next,
      lag: Math.max(0, sb.high - sb.restorer.next),
    })).sort((a, b) => a.partition - b.partition)
  }

  // ---- batches ----

  override allocate(t: number): Effect.Effect<void> {
    return Effect.sync(() => {
      this.lastAllocated = t
      const parts = new Map<string, ReadonlyArray<RawRecord>>()
      const until: Array<TopicPartitionOffset> = []
      let count = 0
      if (!this.assigning) {
        for (const [key, b] of this.buffers) {
          if (b.records.length === 0 || !this.assigned.has(key)) continue
          // at most `maxRecordsPerPartition` a batch: batches stay short after a stall
          const limit = this.options.maxRecordsPerPartition
          let records = b.records
          if (records.length > limit) {
            b.records = records.slice(limit)
            records = records.slice(0, limit)
          } else b.records = []
          parts.set(key, records)
          count += records.length
          until.push({ topic: b.topic, partition: b.partition, offset: records[records.length - 1].offset + 1 })
        }
        this.buffered -= count
        for (const w of this.spaceWaiters.splice(0)) w()
      }
      this.cuts.set(t, { parts, until })
      this.record(t, count, {
        offsets: until.map((u) => ({ topic: u.topic, partition: u.partition, untilOffset: u.offset })),
      })
    })
  }

  /** The raw records of `topic` in the cut of batch `t`, per partition. */
  recordsOf(t: number, topic: string): Array<ReadonlyArray<RawRecord>> {
    const cut = this.cuts.get(t)
    if (cut === undefined) return []
    const out: Array<ReadonlyArray<RawRecord>> = []
    for (const [key, records] of cut.parts) if (key.startsWith(topic + "\u0000")) out.push(records)
    return out
  }

  compute(t: number): Effect.Effect<ReadonlyArray<KafkaRecord<K, V>>, unknown> {
    return Effect.suspend(() => {
      if (this.fatal !== undefined) return Effect.fail(this.fatal)
      const out: Array<KafkaRecord<K, V>> = []
      const { key, value } = this.options
      let bad = 0
      for (const records of this.recordsOf(t, this.options.topic)) {
        for (const r of records) {
          const k = r.key === null ? Result.succeed(null) : key.decode(r.key)
          const v = value.decode(r.value)
          if (Result.isFailure(k) || Result.isFailure(v)) {
            bad++
            continue
          }
          out.push({
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: k.success,
            value: v.success,
            headers: r.headers,
          })
        }
      }
      if (bad > 0) this.log("Warning", `batch ${t}: ${bad} records that do not decode were skipped`)
      return Effect.succeed(out)
    })
  }

  override batchCompleted(info: BatchInfo): void {
    const t = info.batchTime
    this.lastCompleted = Math.max(this.lastCompleted, t)
    for (const w of this.completionWaiters.splice(0)) w()
    const cut = this.cuts.get(t)
    this.cuts.delete(t)
    const group = this.group
    if (this.transactions !== undefined) {
      // exactly once: the offsets go into the batch's transaction, committed with its records
      if (cut === undefined) return
      const mine = cut.until.filter((u) => this.assigned.has(tpKey(u.topic, u.partition)))
      this.transactions.complete(t, this.assignment(), mine)
      return
    }
    if (cut === undefined || group === undefined || cut.until.length === 0) return
    const mine = cut.until.filter((u) => this.assigned.has(tpKey(u.topic, u.partition)))
    if (mine.length === 0) return
    group.commit(mine).catch((e) =>
      this.log("Warning", `offset commit failed (replays are deduplicated): ${errorMessage(e)}`)
    )
  }

  override clearMetadata(t: number): void {
    super.clearMetadata(t)
    for (const time of this.cuts.keys()) if (time < t - 10 * this.slideMillis) this.cuts.delete(time)
  }

  /**
   * Sends records and waits for the acknowledgements, in requests of at most `sendChunk` records
   * one after the other (the order of each partition is kept; kafkajs takes superlinear time on
   * very large requests: 120 000 small records in one request took 25 s on the mock, in
   * requests of 10 000 about 3 s).
   */
  send(records: ReadonlyArray<OutgoingRecord>): Effect.Effect<void, unknown> {
    return Effect.tryPromise({
      try: async () => {
        const n = ScaleInputNode.sendChunk
        if (records.length <= n) {
          await this.producer!.send(records)
          return
        }
        for (let i = 0; i < records.length; i += n) await this.producer!.send(records.slice(i, i + n))
      },
      catch: (e) => e,
    })
  }

  static readonly sendChunk = 10_000

  /** {@link send}, keeping each request's records and acknowledgements (see {@link noteAppend}). */
  sendTracked(records: ReadonlyArray<OutgoingRecord>): Promise<Array<Sent>> {
    const out: Array<Sent> = []
    const n = ScaleInputNode.sendChunk
    return (async () => {
      for (let i = 0; i < records.length; i += n) {
        const chunk = records.length <= n ? records : records.slice(i, i + n)
        out.push({ records: chunk, results: await this.producer!.send(chunk) })
      }
      return out
    })()
  }

  /** Every shard this process owns. */
  shardInfo(): ReadonlyArray<ShardInfo> {
    const out: Array<ShardInfo> = []
    for (const s of this.stages) {
      if (s.state === undefined) continue
      for (const [p, shard] of s.state.shards) {
        out.push({
          stage: s.name,
          partition: p,
          keys: shard.state.size,
          applied: shard.applied,
          duplicates: shard.duplicates,
        })
      }
    }
    return out.sort((a, b) => a.partition - b.partition)
  }

  /** Partitions currently assigned. */
  assignment(): ReadonlyArray<TopicPartition> {
    return [...this.assigned.values()]
  }
}

/** One produce request: its records and the acknowledged offsets. @internal */
export interface Sent {
  readonly records: ReadonlyArray<OutgoingRecord>
  readonly results: ReadonlyArray<{ readonly topic: string; readonly partition: number; readonly baseOffset: number }>
}

/**
 * Follows a shard's own writes to its changelog partition: while each request's records for it
 * start where its previous ones ended, nothing else was written between them (no zombie, no newer
 * claim), so the shard stays a restore point; the last record is its marker.
 * @internal
 */
export const noteAppend = (
  shard: Shard<any, unknown>,
  topic: string,
  appended: ReadonlyArray<OutgoingRecord>,
  sent: ReadonlyArray<Sent>,
): void => {
  for (const req of sent) {
    let count = 0
    for (const r of req.records) if (r.topic === topic && r.partition === shard.partition) count++
    if (count === 0) continue
    const ack = req.results.find((w) => w.topic === topic && w.partition === shard.partition)
    if (ack === undefined || shard.logEnd < 0 || ack.baseOffset !== shard.logEnd) shard.logEnd = -1
    else shard.logEnd += count
  }
  const last = appended[appended.length - 1]
  if (shard.logEnd >= 0 && last !== undefined && typeof last.value === "string") {
    shard.markerOffset = shard.logEnd - 1
    shard.marker = last.value
    shard.synced = true
  } else shard.synced = false
}

// ---- the keyed stage: repartition (or declare partitioned) ------------------------------------------

/** A record of a shard, with the shard's partition. @internal */
export interface Keyed<K, V> extends ShardRecord<K, V> {
  readonly partition: number
}

/**
 * A repartition record's value: its provenance `<source partition>:<source offset>:<index>`,
 * then `|` and the encoded value (or `!` for a `null` value). In the value rather than in a
 * header: kafkajs encodes headers at about half the speed (measured on the mock).
 * @internal
 */
export const withSource = (
  partition: number,
  offset: number,
  index: number,
  value: Uint8Array | string | null,
): Uint8Array | string => {
  const prefix = `${partition}:${offset}:${index}`
  if (value === null) return `${prefix}!`
  if (typeof value === "string") return `${prefix}|${value}`
  const head = Buffer.from(`${prefix}|`, "latin1")
  return Buffer.concat([head, value])
}

const COLON = 0x3a
const BAR = 0x7c
const BANG = 0x21

/**
 * Reads a repartition record's value: the source and the value's bytes (`null` for a null
 * value), or `undefined` when the value has no provenance.
 * @internal
 */
export const readSource = (
  bytes: Uint8Array | null,
): { readonly source: Source; readonly value: Uint8Array | null } | undefined => {
  if (bytes === null) return undefined
  const nums = [0, 0, 0]
  let field = 0
  let digits = 0
  for (let i = 0; i < bytes.length && i < 48; i++) {
    const c = bytes[i]
    if (c >= 0x30 && c <= 0x39) {
      nums[field] = nums[field] * 10 + (c - 0x30)
      digits++
    } else if (c === COLON && field < 2 && digits > 0) {
      field++
      digits = 0
    } else if ((c === BAR || c === BANG) && field === 2 && digits > 0) {
      const source = { partition: nums[0], offset: nums[1], index: nums[2] }
      return { source, value: c === BANG ? null : bytes.subarray(i + 1) }
    } else return undefined
  }
  return undefined
}

/**
 * The keyed stage's node: produces each input record's pairs to the repartition topic (and
 * waits for the acknowledgements), then returns the repartition records of this batch as the
 * shards' input. With the input declared partitioned by the key, the pairs are the shards'
 * input directly (each key checked against its partition).
 * @internal
 */
export class RepartitionNode<K0, V0, K, V> extends Node<Keyed<K, V>> {
  readonly kind = "KafkaRepartitionDStream"
  constructor(
    readonly input: ScaleInputNode<K0, V0>,
    readonly stage: Stage<K, V>,
    readonly by: (record: KafkaRecord<K0, V0>) => Iterable<readonly [K, V]>,
  ) {
    super(input.ctx, [input], input.slideMillis)
  }

  compute(t: number): Effect.Effect<Batch<Keyed<K, V>> | undefined, unknown, NodeEnv> {
    return Effect.flatMap(this.input.getOrCompute(t), (records) => {
      if (records === undefined) return Effect.succeed(undefined)
      const stage = this.stage
      const n = this.input.partitions
      if (stage.repartitionTopic === undefined) {
        // declared partitioned by the key: the input partition is the shard
        const out: Array<Keyed<K, V>> = []
        for (const r of records) {
          let index = 0
          for (const [k, v] of this.by(r)) {
            const bytes = stage.key.encode(k)
            if (bytes === null || partitionFor(bytes, n) !== r.partition) {
              return Effect.fail(
                new ScaleOutError({
                  message: `Cannot apply "${stage.name}": key ${
                    JSON.stringify(k)
                  } of record ${r.offset} of "${r.topic}" [${r.partition}] belongs to partition ${
                    bytes === null ? "none" : partitionFor(bytes, n)
                  }, but the input was declared partitioned by the key (partitionedByKey)`,
                }),
              )
            }
            out.push({
              partition: r.partition,
              offset: r.offset,
              key: k,
              value: v,
              source: { partition: r.partition, offset: r.offset, index: index++ },
            })
          }
        }
        return Effect.succeed(out)
      }
      const topic = stage.repartitionTopic
      const outgoing: Array<OutgoingRecord> = []
      for (const r of records) {
        let index = 0
        for (const [k, v] of this.by(r)) {
          const key = stage.key.encode(k)
          if (key === null) {
            return Effect.fail(
              new ScaleOutError({
                message: `Cannot repartition "${stage.name}": key ${JSON.stringify(k)} encodes to null`,
              }),
            )
          }
          outgoing.push({
            topic,
            partition: partitionFor(key, n),
            key,
            value: withSource(r.partition, r.offset, index++, stage.value!.encode(v)),
          })
        }
      }
      const send = outgoing.length === 0 ? Effect.void : this.input.send(outgoing)
      return Effect.map(send, () => this.decode(t, topic))
    })
  }

  /** The repartition records of batch `t`, decoded. */
  private decode(t: number, topic: string): Array<Keyed<K, V>> {
    const out: Array<Keyed<K, V>> = []
    const key = this.stage.key
    const value = this.stage.value!
    let malformed = 0
    let first = ""
    for (const records of this.input.recordsOf(t, topic)) {
      for (const r of records) {
        const k = key.decode(r.key)
        const sourced = readSource(r.value)
        const v = sourced === undefined ? undefined : value.decode(sourced.value)
        if (Result.isFailure(k) || v === undefined || Result.isFailure(v)) {
          if (malformed++ === 0) first = `offset ${r.offset} of "${topic}" [${r.partition}]`
          continue
        }
        out.push({
          partition: r.partition,
          offset: r.offset,
          key: k.success,
          value: v.success,
          source: sourced!.source,
        })
      }
    }
    // one line per batch, not one per record
    if (malformed > 0) {
      this.input.log(
        "Warning",
        `batch ${t}: skipped ${malformed} malformed records of "${topic}", the first at ${first}`,
      )
    }
    return out
  }
}

// ---- the sharded state ---------------------------------------------------------------------------

/** @internal */
export type StateOperator<K, V, S, T> =
  | {
    readonly _tag: "update"
    readonly update: (time: number, key: K, values: ReadonlyArray<V>, state: Option.Option<S>) => Option.Option<S>
  }
  | {
    readonly _tag: "mapWithState"
    readonly fn: MappingFunction<K, V, S, T>
    readonly timeoutMillis: number | undefined
  }

/**
 * updateStateByKey / mapWithState over the shards this process owns: applies the batch shard by
 * shard (exactly once, see shards.ts `admit`), then appends every shard's changes and a marker to
 * the changelog and waits for the acknowledgements, before the batch's outputs and commits.
 * @internal
 */
export class ShardedStateNode<K, V, S, T> extends Node<T> {
  readonly kind = "KafkaShardedStateDStream"
  /** Its changelog appends join the batch's transaction under an exactly-once sink. */
  readonly enlistsInTransactions = true
  readonly shards = new Map<number, Shard<K, unknown>>()
  readonly timed: boolean
  private readonly mapper: ShardMapper<K, V, S, T> | undefined
  /** mapWithState: idle keys are looked for every `timeoutEvery` batches. */
  readonly timeoutEvery = 10

  constructor(
    readonly parent: RepartitionNode<any, any, K, V>,
    readonly stage: Stage<K, V>,
    readonly operator: StateOperator<K, V, S, T>,
    readonly codec: ShardCodec<K, S>,
  ) {
    super(parent.ctx, [parent], parent.slideMillis)
    this.timed = operator._tag === "mapWithState" && operator.timeoutMillis !== undefined
    this.mapper = operator._tag === "mapWithState" ? new ShardMapper(operator.fn, operator.timeoutMillis) : undefined
  }

  compute(t: number): Effect.Effect<Batch<T> | undefined, unknown, NodeEnv> {
    return Effect.flatMap(this.parent.getOrCompute(t), (records) => {
      if (records === undefined) return Effect.succeed(undefined)
      const byShard = new Map<number, Array<Keyed<K, V>>>()
      for (const r of records) {
        let rs = byShard.get(r.partition)
        if (rs === undefined) byShard.set(r.partition, rs = [])
        rs.push(r)
      }
      const out: Array<unknown> = []
      const none: ReadonlyArray<Keyed<K, V>> = []
      const op = this.operator
      const checkTimeouts = this.timed && Math.round((t - this.zeroTime!) / this.slideMillis) % this.timeoutEvery === 0
      for (const [p, rs] of byShard) {
        if (!this.shards.has(p)) {
          this.parent.input.log(
            "Warning",
            `batch ${t}: ${rs.length} records of shard ${this.stage.name}[${p}], which this member does not own, were skipped`,
          )
        }
      }
      for (const [p, shard] of this.shards) {
        const rs = byShard.get(p) ?? none
        if (op._tag === "update") updateShard(shard, rs, t, op.update, out as Array<readonly [K, S]>)
        else {
          this.mapper!.apply(shard, rs, t, out as Array<T>)
          if (checkTimeouts) this.mapper!.timeOut(shard, t, out as Array<T>)
        }
      }
      const appends: Array<OutgoingRecord> = []
      const appended: Array<readonly [Shard<K, unknown>, ReadonlyArray<OutgoingRecord>]> = []
      const now = Date.now()
      for (const shard of this.shards.values()) {
        const rs = appendRecords(
          shard,
          this.stage.changelogTopic,
          this.codec,
          this.timed,
          this.parent.input.generation,
          now,
        )
        if (rs !== undefined) {
          // applied, not yet in the log: no restore point until acknowledged
          shard.synced = false
          appended.push([shard, rs])
          for (const r of rs) appends.push(r)
        }
      }
      if (appends.length === 0) return Effect.succeed(out as Array<T>)
      const input = this.parent.input
      return Effect.tryPromise({
        try: async () => {
          const txs = input.transactions
          const sent = txs === undefined
            ? await input.sendTracked(appends)
            : [{ records: appends, results: await txs.send(t, input.assignment(), appends) }]
          for (const [shard, rs] of appended) {
            noteAppend(shard, this.stage.changelogTopic, rs, sent)
            input.writeCache(this.stage, shard, false)
          }
          return out as Array<T>
        },
        catch: (e) => e,
      })
    })
  }

  /** The state of every owned shard. */
  entries(): Array<readonly [K, S]> {
    const out: Array<readonly [K, S]> = []
    for (const shard of this.shards.values()) shardEntries<K, S>(shard, this.timed, out)
    return out
  }
}

const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))
