/**
 * Kafka consume throughput: records/s through the direct stream into a count, against a raw
 * kafkajs `eachBatch` loop on the same broker and topic, in the same run, each with its own
 * consumer group reading from the beginning. Equal work: the raw loop decodes every value to a
 * string and counts; the stream decodes every value with `Schema.String` (into typed records,
 * dead letters for bad UTF-8) and counts, keys left as bytes like the raw loop (`KEY=string`
 * makes the stream decode keys too, extra work the raw loop does not do). Both sides are timed
 * over the same span: from the moment their consumer has joined the group (kafkajs's
 * `consumer.run` resolves after the join; the stream's `ssc.start` returns after its consumer's
 * `run`), so the group join (3 s on the mock cluster) is excluded on both, up to the moment the
 * last record is counted; both count every record the broker holds. After an untimed warm-up
 * round, the rounds alternate which side runs first; the median ratio direct / raw is the result
 * (target ≥ 0.8). Each side's CPU time per record (this process only) is printed too: it is
 * steadier than wall-clock rates on a shared machine.
 *
 *   deno run -A bench/kafka.ts     bun bench/kafka.ts
 *   (optional: RECORDS=300000 ROUNDS=2 WARMUP=1 BATCH_MS=20 KEY=bytes|string KAFKA_BROKERS=host:9092;
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
const rounds = Number(process.env.ROUNDS ?? 2)
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
  maxBytesPerPartition: 4 << 20,
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

const raw = async (): Promise<Result> => {
  const consumer = kafka.consumer({ groupId: `raw-${Math.random()}`, ...consumerTuning, retry })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let count = 0
  let chars = 0
  let resolve!: (end: Mark) => void
  const done = new Promise<Mark>((r) => (resolve = r))
  await consumer.run({
    autoCommit: false,
    // kafkajs's handler contract returns a Promise; this one has nothing to await.
    // deno-lint-ignore require-await
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) chars += (m.value as Buffer).toString().length
      count += batch.messages.length
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
for (let w = 0; w < warmup; w++) {
  // untimed: both sides' code paths get compiled before the timed rounds
  await raw()
  await direct()
}
const ratios: Array<number> = []
const cpuRatios: Array<number> = []
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
  cpuRatios.push(rawResult.cpuPerRecord / directResult.cpuPerRecord)
  console.log(
    `${runtime} round ${r + 1} (${rawFirst ? "raw" : "direct"} first): raw kafkajs eachBatch ${
      fmt(rawResult.rate)
    } records/s ` +
      `(${rawResult.cpuPerRecord.toFixed(2)} µs CPU/record), direct stream ${fmt(directResult.rate)} records/s ` +
      `(${directResult.cpuPerRecord.toFixed(2)} µs CPU/record), ratio ${ratio.toFixed(2)}`,
  )
}
console.log(
  `${runtime}: direct / raw ratio median ${median(ratios).toFixed(2)} (min ${Math.min(...ratios).toFixed(2)}, max ${
    Math.max(...ratios).toFixed(2)
  }; CPU-time ratio median ${
    median(cpuRatios).toFixed(2)
  }; ${rounds} rounds after ${warmup} warm-up, batch ${batchMillis} ms, key ${keyMode}; target ≥ 0.8)`,
)
await mock?.stop()
process.exit(0)
