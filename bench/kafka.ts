/**
 * Kafka consume throughput: records/s through the direct stream into a count, against a raw
 * kafkajs `eachBatch` loop doing the same work on the same broker and topic, in the same run,
 * each with its own consumer group reading from the beginning. The same work: both decode every
 * value from UTF-8 (the string format's check for invalid bytes included), build one record
 * object per message (topic, partition, numeric offset and timestamp, key, value, headers), hand
 * them on in arrays and count them, and commit the offsets they consumed through kafkajs without
 * holding the fetch loop (one commit in flight at a time, the next carrying every offset
 * consumed meanwhile); keys stay bytes on both sides (`KEY=string` makes the stream decode keys
 * too, extra work the raw loop does not do). Both sides are timed over the same span: from the
 * moment their consumer has joined the group (kafkajs's `consumer.run` resolves after the join;
 * the stream's `ssc.start` returns after its consumer's `run`), so the group join (3 s on the
 * mock cluster) is excluded on both, up to the moment the last record is counted. After an
 * untimed warm-up round, the rounds alternate which side runs first; the result is the median
 * ratio direct / raw with its range (target ≥ 0.9), and each side's CPU time per record (this
 * process only: user + system from `process.cpuUsage`), steadier than wall-clock rates on a
 * shared machine.
 *
 *   deno run -A bench/kafka.ts     bun bench/kafka.ts
 *   (optional: RECORDS=300000 ROUNDS=10 WARMUP=1 BATCH_MS=20 KEY=bytes|string KAFKA_BROKERS=host:9092
 *    PROFILE=direct|raw: run only that side, ROUNDS times, for a profiler;
 *    without KAFKA_BROKERS the benchmark starts librdkafka's mock cluster through kcat, which
 *    keeps only about 90 000 of these records per partition)
 */
import process from "node:process"
import type { Buffer } from "node:buffer"
import { Effect, Schema } from "effect"
import kafkajs from "kafkajs"
import { Kafka, StreamingContext } from "../mod.ts"
import { startMockCluster } from "../receivers/_kafka_mock.ts"
import { runtimeName } from "./_runtime.ts"

const produced = Number(process.env.RECORDS ?? 300_000)
const rounds = Number(process.env.ROUNDS ?? 10)
const warmup = Number(process.env.WARMUP ?? 1)
const batchMillis = Number(process.env.BATCH_MS ?? 20)
/** `bytes` (default): the stream leaves keys raw, as the raw loop does; `string`: it decodes them too. */
const keyMode = process.env.KEY ?? "bytes"
const runtime = runtimeName

const mock = process.env.KAFKA_BROKERS ? undefined : await startMockCluster()
const brokers = process.env.KAFKA_BROKERS?.split(",") ?? [mock!.bootstrap]
const topic = `bench-${Date.now().toString(36)}`
const retry = { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 }
const kafka = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING, retry })
const consumerTuning = {
  sessionTimeout: 6000,
  heartbeatInterval: 500,
  maxWaitTimeInMs: 100,
  maxBytesPerPartition: Number(process.env.MAX_BYTES ?? 4 << 20),
}

// ---- produce ----
{
  const producer = kafka.producer()
  await producer.connect()
  const chunk = 20_000
  for (let i = 0; i < produced; i += chunk) {
    const messages = []
    for (let j = i; j < Math.min(produced, i + chunk); j++) {
      messages.push({ key: `k${j % 1000}`, value: `record number ${j} with some payload text` })
    }
    await producer.send({ topic, messages })
  }
  await producer.disconnect()
  console.log(`${runtime}: produced ${produced} records to ${topic} on ${brokers.join(",")}`)
}
// What a consumer from the beginning can read: the mock cluster keeps a bounded log per
// partition (about 90 000 of these records) and drops older segments, so count what is there.
const total = await (async () => {
  const admin = kafka.admin()
  await admin.connect()
  const offsets = await admin.fetchTopicOffsets(topic)
  await admin.disconnect()
  const n = offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0)
  if (n !== produced) console.log(`${runtime}: the broker keeps ${n} of them; both sides count those`)
  return n
})()

// ---- raw kafkajs eachBatch loop ----
/** Wall clock and this process's CPU time (user + system; the mock broker is another process). */
interface Mark {
  readonly wall: number
  readonly cpu: number
}
const mark = (): Mark => {
  const u = process.cpuUsage()
  return { wall: performance.now(), cpu: (u.user + u.system) / 1000 }
}
interface Result {
  /** records/s over the wall-clock span */
  readonly rate: number
  /** CPU microseconds of this process per record over the span */
  readonly cpuPerRecord: number
}
const result = (start: Mark, end: Mark): Result => ({
  rate: (total / (end.wall - start.wall)) * 1000,
  cpuPerRecord: ((end.cpu - start.cpu) * 1000) / total,
})

/** A record as the raw loop builds it: the direct stream's record shape. */
interface RawLoopRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  readonly timestamp: number
  readonly key: Buffer | null
  readonly value: string
  readonly headers: kafkajs.IHeaders
}
const utf8 = new TextDecoder("utf-8", { fatal: true })
const noHeaders: kafkajs.IHeaders = Object.freeze({})

const raw = async (): Promise<Result> => {
  const consumer = kafka.consumer({ groupId: `raw-${Math.random()}`, ...consumerTuning, retry })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let count = 0
  let chars = 0
  let resolve!: (end: Mark) => void
  const done = new Promise<Mark>((r) => (resolve = r))
  // commits: one in flight at a time, never holding the fetch loop
  const pending = new Map<number, string>()
  let committing = false
  const commit = (): void => {
    if (committing || pending.size === 0) return
    committing = true
    const offsets = [...pending].map(([partition, offset]) => ({ topic, partition, offset }))
    pending.clear()
    consumer.commitOffsets(offsets).catch(() => undefined).finally(() => {
      committing = false
      commit()
    })
  }
  await consumer.run({
    autoCommit: false,
    // kafkajs's handler contract returns a Promise; this one has nothing to await.
    // deno-lint-ignore require-await
    eachBatch: async ({ batch }) => {
      const records: Array<RawLoopRecord> = []
      for (const m of batch.messages) {
        const bytes = m.value as Buffer
        let value = bytes.toString("utf8")
        if (value.indexOf("\uFFFD") >= 0) value = utf8.decode(bytes)
        let headers = noHeaders
        for (const _ in m.headers) {
          headers = m.headers!
          break
        }
        records.push({
          topic: batch.topic,
          partition: batch.partition,
          offset: Number(m.offset),
          timestamp: Number(m.timestamp),
          key: m.key ?? null,
          value,
          headers,
        })
      }
      for (const r of records) chars += r.value.length
      count += records.length
      if (records.length > 0) pending.set(batch.partition, String(records[records.length - 1].offset + 1))
      commit()
      if (count >= total) resolve(mark())
    },
  })
  const start = mark() // joined: run() resolves after the group join
  const end = await done
  await consumer.disconnect()
  if (chars === 0) throw new Error("no data")
  return result(start, end)
}

// ---- the direct stream into a count ----
const direct = (): Promise<Result> =>
  Effect.runPromise(Effect.gen(function* () {
    const ssc = yield* StreamingContext.make({ batchInterval: `${batchMillis} millis` })
    const stream = Kafka.directStream(ssc, {
      brokers,
      groupId: `direct-${Math.random()}`,
      topics: [topic],
      autoOffsetReset: "earliest",
      value: Schema.String,
      ...(keyMode === "bytes" ? { key: Kafka.bytes } : {}),
      retry,
      logLevel: kafkajs.logLevel.NOTHING,
      ...consumerTuning,
    })
    let count = 0
    let resolve!: (end: Mark) => void
    const done = new Promise<Mark>((r) => (resolve = r))
    stream.count().foreachBatch((counts) => {
      count += counts[0] ?? 0
      if (count >= total) resolve(mark())
    })
    yield* ssc.start
    const start = mark() // joined: start returns after the consumer's run(), i.e. the join
    const end = yield* Effect.promise(() => done)
    yield* ssc.stop()
    return result(start, end)
  }))

const fmt = (n: number) => Math.round(n).toLocaleString("en-US")
const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const profile = process.env.PROFILE
if (profile === "direct" || profile === "raw") {
  for (let r = 0; r < rounds; r++) {
    const res = await (profile === "raw" ? raw() : direct())
    console.log(`${runtime} ${profile} only: ${fmt(res.rate)} records/s, ${res.cpuPerRecord.toFixed(2)} µs CPU/record`)
  }
  await mock?.stop()
  process.exit(0)
}
for (let w = 0; w < warmup; w++) {
  // untimed: both sides' code paths get compiled before the timed rounds
  await raw()
  await direct()
}
const ratios: Array<number> = []
const rawCpu: Array<number> = []
const directCpu: Array<number> = []
for (let r = 0; r < rounds; r++) {
  // Alternate which side runs first (JIT warm-up, GC and broker state favour the second).
  const rawFirst = r % 2 === 0
  let rawResult: Result
  let directResult: Result
  if (rawFirst) {
    rawResult = await raw()
    directResult = await direct()
  } else {
    directResult = await direct()
    rawResult = await raw()
  }
  const ratio = directResult.rate / rawResult.rate
  ratios.push(ratio)
  rawCpu.push(rawResult.cpuPerRecord)
  directCpu.push(directResult.cpuPerRecord)
  console.log(
    `${runtime} round ${r + 1} (${rawFirst ? "raw" : "direct"} first): raw kafkajs loop ${
      fmt(rawResult.rate)
    } records/s ` +
      `(${rawResult.cpuPerRecord.toFixed(2)} µs CPU/record), direct stream ${fmt(directResult.rate)} records/s ` +
      `(${directResult.cpuPerRecord.toFixed(2)} µs CPU/record), ratio ${ratio.toFixed(2)}`,
  )
}
const range = (xs: ReadonlyArray<number>, digits: number) =>
  `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`
const cpuRatios = rawCpu.map((c, i) => c / directCpu[i])
console.log(
  `${runtime}: direct / raw throughput ratio median ${range(ratios, 2)}; CPU per record: raw ${
    range(rawCpu, 2)
  } µs, direct ${range(directCpu, 2)} µs, raw / direct CPU ratio median ${
    range(cpuRatios, 2)
  } (${rounds} rounds after ${warmup} warm-up, ${total} records, batch ${batchMillis} ms, key ${keyMode}; target ≥ 0.9)`,
)
await mock?.stop()
process.exit(0)
