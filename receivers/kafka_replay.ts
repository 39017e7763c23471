/**
 * Kafka history for replays: per-partition offset ranges resolved from a start (the earliest
 * offsets, explicit offsets, or the first offsets at or after a timestamp) to an end (the end
 * observed at start, or explicit offsets); a bounded reader of those ranges that merges the
 * partitions in timestamp order (`Replay.fromKafka`); and the catch-up watch of a live direct
 * stream started from such a position (`Replay.kafkaThenLive`).
 * @internal
 */
import { Cause, Effect, Stream } from "effect"
import type { Admin, KafkaClient, RawRecord } from "../lib/_internal/kafkaClient.ts"
import { type CatchUpInput, ReplayError } from "../lib/_internal/replay.ts"
import {
  type ClientOptions,
  DeadLetterEntry,
  decodeRecord,
  type Format,
  type KafkaInputNode,
  type KafkaRecord,
  LogBridge,
  type TopicPartitionOffset,
} from "./kafka.ts"
import { kafkajsClient } from "./kafkajs_client.ts"

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
  admin: Admin,
  topics: ReadonlyArray<string>,
  from: KafkaFrom,
  until: KafkaUntil,
): Promise<Array<PartitionRange>> => {
  const out: Array<PartitionRange> = []
  const named = (list: ReadonlyArray<TopicPartitionOffset>, topic: string, partition: number) =>
    list.find((o) => o.topic === topic && o.partition === partition)?.offset
  for (const topic of topics) {
    const ends = await admin.watermarks(topic)
    const byTime = typeof from === "object" && "timestamp" in from
      ? await admin.offsetsForTimestamp(topic, from.timestamp)
      : undefined
    for (const p of ends) {
      const { low, high } = p
      const where = `"${topic}" partition ${p.partition}`
      let start = low
      if (from !== "earliest" && "offsets" in from) start = named(from.offsets, topic, p.partition) ?? low
      else if (byTime !== undefined) {
        const o = byTime.find((x) => x.partition === p.partition)
        start = o === undefined || o.offset < 0 ? high : o.offset
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
const withAdmin = async <A>(client: KafkaClient, f: (admin: Admin) => Promise<A>): Promise<A> => {
  const admin = await client.admin()
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
  /** The client to read with (default: kafkajs with `client`'s settings). */
  readonly kafka?: ((log: LogBridge) => KafkaClient) | undefined
  readonly topics: ReadonlyArray<string>
  readonly from: KafkaFrom
  readonly until: KafkaUntil
  readonly key: Format<K>
  readonly value: Format<V>
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
  /** The partition's reader (from `next` to its end), once started. */
  reader: AsyncIterator<ReadonlyArray<RawRecord>> | undefined
  /** The read under way, if any. */
  pulling: Promise<void> | undefined
}

/**
 * Reads the resolved ranges with the client's partition reads (no group, nothing committed)
 * and hands out chunks merged across partitions by (timestamp, topic, partition, offset): a
 * record is handed out only once every partition that still has history has a record
 * buffered, so the order depends on the data only, not on fetch timing (a resumed replay skips
 * the same prefix). A partition is read further only while its buffer is below the bound.
 */
class RangeReader<K, V> {
  private parts: Array<Part<K, V>> = []
  private failure: ReplayError | undefined
  private closed = false
  private readonly client: KafkaClient
  readonly log = new LogBridge("Kafka replay")

  constructor(readonly options: RangeReaderOptions<K, V>) {
    this.client = (options.kafka ?? ((log) => kafkajsClient(options.client, log, {}, "effect-dstream-replay")))(
      this.log,
    )
  }

  async open(): Promise<void> {
    const o = this.options
    const ranges = await withAdmin(this.client, (admin) => resolveRanges(admin, o.topics, o.from, o.until))
    this.parts = ranges.map((r) => ({
      topic: r.topic,
      partition: r.partition,
      until: r.until,
      next: r.from,
      buffer: [],
      head: 0,
      reader: undefined,
      pulling: undefined,
    }))
  }

  /** Reads the next chunk of `p` into its buffer. */
  private pull(p: Part<K, V>): Promise<void> {
    const { key, value } = this.options
    p.reader ??= this.client.readPartition({ topic: p.topic, partition: p.partition }, p.next)[Symbol.asyncIterator]()
    const reader = p.reader
    return reader.next().then((r) => {
      p.pulling = undefined
      if (r.done) {
        // the partition's end when the read started: nothing more to come below `until`
        p.next = p.until
        return
      }
      for (const raw of r.value) {
        const offset = raw.offset
        if (offset < p.next) continue
        if (offset >= p.until) break
        const entry = decodeRecord(raw, key, value)
        if (entry instanceof DeadLetterEntry) {
          this.failure ??= new ReplayError({
            message:
              `Cannot decode the ${entry.part} of the record at offset ${offset} of "${p.topic}" partition ${p.partition}: ${entry.error}`,
          })
          break
        }
        p.buffer.push(entry)
        p.next = offset + 1
      }
      // offsets without records (transaction markers, compaction) count as read
      const last = r.value.length > 0 ? r.value[r.value.length - 1].offset : -1
      if (last + 1 > p.next) p.next = Math.min(p.until, last + 1)
      if (p.next >= p.until) void reader.return?.()
    }, (e) => {
      p.pulling = undefined
      this.failure ??= new ReplayError({
        message: `Cannot read "${p.topic}" partition ${p.partition}: ${e instanceof Error ? e.message : String(e)}`,
        cause: e,
      })
    })
  }

  /** The next merged chunk, or `undefined` once every range has been handed out. */
  async next(): Promise<Array<KafkaRecord<K, V>> | undefined> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      const chunk = this.take(4096)
      if (chunk.length > 0) return chunk
      if (this.parts.every((p) => p.next >= p.until && p.head >= p.buffer.length)) return undefined
      const reads: Array<Promise<void>> = []
      for (const p of this.parts) {
        if (
          p.pulling === undefined && p.next < p.until && p.buffer.length - p.head < this.options.maxBufferedPerPartition
        ) {
          p.pulling = this.pull(p)
        }
        if (p.pulling !== undefined) reads.push(p.pulling)
      }
      if (reads.length > 0) await Promise.race(reads)
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
    return out
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.all(this.parts.map(async (p) => {
      const reader = p.reader
      p.reader = undefined
      await p.pulling?.catch(() => undefined)
      await reader?.return?.().catch(() => undefined)
    }))
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
          ranges = await withAdmin(node.kafkaClient(), (admin) => resolveRanges(admin, topics, from, "end"))
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
