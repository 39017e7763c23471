/**
 * Kafka history for replays: per-partition offset ranges resolved from a start (the earliest
 * offsets, explicit offsets, or the first offsets at or after a timestamp) to an end (the end
 * observed at start, or explicit offsets); a bounded reader of those ranges that merges the
 * partitions in timestamp order (`Replay.fromKafka`); and the catch-up watch of a live direct
 * stream started from such a position (`Replay.kafkaThenLive`).
 * @internal
 */
import { Cause, Effect, Stream } from "effect"
import type * as KafkaJS from "kafkajs"
import { type CatchUpInput, ReplayError } from "../lib/_internal/replay.ts"
import {
  type ClientOptions,
  DeadLetterEntry,
  decodeMessage,
  type Format,
  type KafkaInputNode,
  type KafkaRecord,
  LogBridge,
  makeKafka,
  type TopicPartitionOffset,
} from "./kafka.ts"

/** Where replayed history starts. @internal */
export type KafkaFrom =
  | "earliest"
  | { readonly offsets: ReadonlyArray<TopicPartitionOffset> }
  | { readonly timestamp: number }

/** Where bounded history ends (exclusive). @internal */
export type KafkaUntil = "end" | { readonly offsets: ReadonlyArray<TopicPartitionOffset> }

/** One partition's history: offsets `[from, until)`. @internal */
export interface PartitionRange {
  readonly topic: string
  readonly partition: number
  readonly from: number
  readonly until: number
}

const describeError = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const fail = (message: string): never => {
  throw new ReplayError({ message })
}

/**
 * The range of every partition of `topics`. Partitions not named in explicit offsets start at
 * their earliest offset (and end at the end observed now). An offset outside what the partition
 * holds is an error, never silently moved.
 * @internal
 */
export const resolveRanges = async (
  admin: KafkaJS.Admin,
  topics: ReadonlyArray<string>,
  from: KafkaFrom,
  until: KafkaUntil,
): Promise<Array<PartitionRange>> => {
  const out: Array<PartitionRange> = []
  const named = (list: ReadonlyArray<TopicPartitionOffset>, topic: string, partition: number) =>
    list.find((o) => o.topic === topic && o.partition === partition)?.offset
  for (const topic of topics) {
    const ends = await admin.fetchTopicOffsets(topic)
    const byTime = typeof from === "object" && "timestamp" in from
      ? await admin.fetchTopicOffsetsByTimestamp(topic, from.timestamp)
      : undefined
    for (const p of ends) {
      const low = Number(p.low)
      const high = Number(p.high)
      const where = `"${topic}" partition ${p.partition}`
      let start = low
      if (from !== "earliest" && "offsets" in from) start = named(from.offsets, topic, p.partition) ?? low
      else if (byTime !== undefined) {
        const o = byTime.find((x) => x.partition === p.partition)
        start = o === undefined || Number(o.offset) < 0 ? high : Number(o.offset)
      }
      const end = until === "end" ? high : named(until.offsets, topic, p.partition) ?? high
      if (start < low) {
        fail(`Cannot replay ${where} from offset ${start}: the partition holds offsets ${low} to ${high} only`)
      }
      if (start > high) fail(`Cannot replay ${where} from offset ${start}: the partition ends at offset ${high}`)
      if (end > high) fail(`Cannot replay ${where} until offset ${end}: the partition ends at offset ${high}`)
      if (end < start) fail(`Cannot replay ${where}: its end offset ${end} is before its start offset ${start}`)
      out.push({ topic, partition: p.partition, from: start, until: end })
    }
  }
  const check = (list: ReadonlyArray<TopicPartitionOffset>, what: string) => {
    for (const o of list) {
      if (!Number.isSafeInteger(o.offset) || o.offset < 0) {
        fail(
          `Cannot replay: ${what} offset of "${o.topic}" partition ${o.partition} is not a whole number: ${o.offset}`,
        )
      }
      if (!out.some((r) => r.topic === o.topic && r.partition === o.partition)) {
        fail(
          `Cannot replay: ${what} offsets name "${o.topic}" partition ${o.partition}, which is not in the topics read`,
        )
      }
    }
  }
  if (from !== "earliest" && "offsets" in from) check(from.offsets, "the starting")
  if (until !== "end") check(until.offsets, "the end")
  return out
}

/** Runs `f` with a connected admin client. */
const withAdmin = async <A>(
  client: ClientOptions,
  log: LogBridge,
  f: (admin: KafkaJS.Admin) => Promise<A>,
): Promise<A> => {
  const admin = makeKafka(client, "effect-dstream-replay", log).admin()
  await admin.connect()
  try {
    return await f(admin)
  } finally {
    await admin.disconnect().catch(() => undefined)
  }
}

const toReplayError = (what: string) => (e: unknown): ReplayError =>
  e instanceof ReplayError ? e : new ReplayError({ message: `${what}: ${describeError(e)}`, cause: e })

/** Options of the bounded reader. @internal */
export interface RangeReaderOptions<K, V> {
  readonly client: ClientOptions
  readonly topics: ReadonlyArray<string>
  readonly from: KafkaFrom
  readonly until: KafkaUntil
  readonly key: Format<K>
  readonly value: Format<V>
  readonly groupId: string
  readonly maxWaitTimeInMs: number
  /** Records buffered per partition before it is paused. */
  readonly maxBufferedPerPartition: number
}

interface Part<K, V> {
  readonly topic: string
  readonly partition: number
  readonly until: number
  /** The next offset wanted. */
  next: number
  buffer: Array<KafkaRecord<K, V>>
  head: number
  paused: boolean
}

/**
 * Reads the resolved ranges with a consumer of its own (a fresh group, nothing committed) and
 * hands out chunks merged across partitions by (timestamp, topic, partition, offset): a record
 * is handed out only once every partition that still has history has a record buffered, so the
 * order depends on the data only, not on fetch timing (a resumed replay skips the same prefix).
 * Partitions are paused while their buffer is full and once their range is read.
 */
class RangeReader<K, V> {
  private parts: Array<Part<K, V>> = []
  private readonly byKey = new Map<string, Part<K, V>>()
  private consumer: KafkaJS.Consumer | undefined
  private failure: ReplayError | undefined
  private wake: (() => void) | undefined
  readonly log = new LogBridge("Kafka replay")

  constructor(readonly options: RangeReaderOptions<K, V>) {}

  async open(): Promise<void> {
    const o = this.options
    const ranges = await withAdmin(o.client, this.log, (admin) => resolveRanges(admin, o.topics, o.from, o.until))
    this.parts = ranges.map((r) => ({
      topic: r.topic,
      partition: r.partition,
      until: r.until,
      next: r.from,
      buffer: [],
      head: 0,
      paused: false,
    }))
    for (const p of this.parts) this.byKey.set(`${p.topic}\u0000${p.partition}`, p)
    if (this.parts.every((p) => p.next >= p.until)) return
    const consumer = makeKafka(o.client, "effect-dstream-replay", this.log).consumer({
      groupId: o.groupId,
      maxWaitTimeInMs: o.maxWaitTimeInMs,
      ...(o.client.retry !== undefined ? { retry: o.client.retry } : {}),
    })
    this.consumer = consumer
    await consumer.connect()
    await consumer.subscribe({ topics: [...o.topics], fromBeginning: true })
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: true, eachBatch: this.eachBatch })
    for (const p of this.parts) {
      if (p.next < p.until) consumer.seek({ topic: p.topic, partition: p.partition, offset: String(p.next) })
      else this.pause(p)
    }
  }

  private pause(p: Part<K, V>): void {
    if (p.paused || this.consumer === undefined) return
    p.paused = true
    this.consumer.pause([{ topic: p.topic, partitions: [p.partition] }])
  }

  private readonly eachBatch = ({ batch }: KafkaJS.EachBatchPayload): Promise<void> => {
    const p = this.byKey.get(`${batch.topic}\u0000${batch.partition}`)
    if (p === undefined || this.failure !== undefined) return Promise.resolve()
    const { key, value } = this.options
    for (const message of batch.messages) {
      const offset = Number(message.offset)
      if (offset < p.next) continue
      if (offset >= p.until) break
      const entry = decodeMessage(batch.topic, batch.partition, message, offset, key, value)
      if (entry instanceof DeadLetterEntry) {
        this.failure = new ReplayError({
          message:
            `Cannot decode the ${entry.part} of the record at offset ${offset} of "${batch.topic}" partition ${batch.partition}: ${entry.error}`,
        })
        break
      }
      p.buffer.push(entry)
      p.next = offset + 1
    }
    // offsets without records (transaction markers, compaction) count as read
    const last = Number(batch.lastOffset())
    if (Number.isFinite(last) && last + 1 > p.next) p.next = Math.min(p.until, last + 1)
    if (p.next >= p.until || p.buffer.length - p.head >= this.options.maxBufferedPerPartition) this.pause(p)
    this.wake?.()
    return Promise.resolve()
  }

  /** The next merged chunk, or `undefined` once every range has been handed out. */
  async next(): Promise<Array<KafkaRecord<K, V>> | undefined> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      const chunk = this.take(4096)
      if (chunk.length > 0) return chunk
      if (this.parts.every((p) => p.next >= p.until && p.head >= p.buffer.length)) return undefined
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer)
          this.wake = undefined
          resolve()
        }
        const timer = setTimeout(done, 500)
        this.wake = done
      })
    }
  }

  /** Merges up to `max` records while every partition with history left has one buffered. */
  private take(max: number): Array<KafkaRecord<K, V>> {
    const out: Array<KafkaRecord<K, V>> = []
    const parts = this.parts
    while (out.length < max) {
      let best: Part<K, V> | undefined
      let blocked = false
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]
        if (p.head >= p.buffer.length) {
          if (p.next < p.until) {
            blocked = true
            break
          }
          continue
        }
        if (best === undefined || p.buffer[p.head].timestamp < best.buffer[best.head].timestamp) best = p
      }
      if (blocked || best === undefined) break
      out.push(best.buffer[best.head++])
      if (best.head === best.buffer.length) {
        best.buffer = []
        best.head = 0
      }
    }
    // resume paused partitions whose buffer has drained (and that have history left)
    for (const p of parts) {
      if (p.paused && p.next < p.until && p.buffer.length - p.head < this.options.maxBufferedPerPartition / 2) {
        p.paused = false
        this.consumer?.resume([{ topic: p.topic, partitions: [p.partition] }])
      }
    }
    return out
  }

  async close(): Promise<void> {
    this.wake?.()
    const c = this.consumer
    this.consumer = undefined
    if (c !== undefined) await c.disconnect().catch(() => undefined)
  }
}

/**
 * The records of the resolved ranges as a finite stream (partitions merged by timestamp, then
 * topic and partition in the order read, then offset). Fails with a {@link ReplayError} when
 * the ranges cannot be resolved, the brokers cannot be read or a record does not decode.
 * @internal
 */
export const rangeStream = <K, V>(options: RangeReaderOptions<K, V>): Stream.Stream<KafkaRecord<K, V>, ReplayError> =>
  Stream.unwrap(Effect.gen(function* () {
    const what = `Cannot replay Kafka topic(s) ${options.topics.map((t) => `"${t}"`).join(", ")}`
    const reader = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const r = new RangeReader(options)
          try {
            await r.open()
          } catch (e) {
            await r.close()
            throw e
          }
          return r
        },
        catch: toReplayError(what),
      }),
      (r) => Effect.promise(() => r.close()),
    )
    reader.log.services = yield* Effect.context<never>()
    const pull = Effect.flatMap(
      Effect.tryPromise({ try: () => reader.next(), catch: toReplayError(what) }),
      (
        chunk,
      ) => (chunk === undefined
        ? Cause.done()
        : Effect.succeed(chunk as [KafkaRecord<K, V>, ...Array<KafkaRecord<K, V>>])),
    )
    return Stream.fromPull(Effect.succeed(pull))
  }))

/**
 * A live direct stream that a replay runs under its virtual clock until the batches have taken
 * every partition up to the end observed at start, then on the real clock.
 * @internal
 */
export const catchUp = (
  node: KafkaInputNode<any, any>,
  client: ClientOptions,
  topics: ReadonlyArray<string>,
  from: KafkaFrom,
): CatchUpInput => {
  let ranges: ReadonlyArray<PartitionRange> = []
  const position = (r: PartitionRange): number | undefined =>
    node.position(r.topic, r.partition) ?? (r.until <= r.from ? r.from : undefined)
  return {
    prepare: (resumed) =>
      Effect.tryPromise({
        try: async () => {
          ranges = await withAdmin(client, node.log, (admin) => resolveRanges(admin, topics, from, "end"))
          // a resumed run continues from its checkpoint's offsets, not from `from`
          if (!resumed) {
            node.setStartingOffsets(ranges.map((r) => ({ topic: r.topic, partition: r.partition, offset: r.from })))
          }
        },
        catch: toReplayError(`Cannot replay ${node.name} before going live`),
      }),
    caughtUp: () => ranges.every((r) => (position(r) ?? -1) >= r.until),
    hasRecords: () => node.storedRecords() > 0,
    describe: () =>
      ranges.map((r) => `"${r.topic}" partition ${r.partition} at offset ${position(r) ?? "-"} of ${r.until}`).join(
        ", ",
      ),
  }
}
