/**
 * Kafka consume throughput: records/s through the direct stream into a count, against a raw
 * kafkajs `eachBatch` loop (decode to string + count) on the same broker and topic, in the same
 * run, each with its own consumer group reading from the beginning. Both sides are timed over
 * the same span: from the moment their consumer has joined the group (kafkajs's `consumer.run`
 * resolves after the join; the stream's `ssc.start` returns after its consumer's `run`), so the
 * group join (3 s on the mock cluster) is excluded on both, up to the moment the last record is
 * counted, and both count every record. (The span used to start at each side's first delivery:
 * kafkajs's first eachBatch, but the stream's first non-empty batch, by which time kafkajs had
 * already fetched ahead into the stream's buffer; those records were left out of its count and
 * its time, inflating the stream's rate, most on Bun.) The ratio direct / raw is printed
 * (target ≥ 0.8).
 *
 *   deno run -A bench/kafka.ts     bun bench/kafka.ts
 *   (optional: RECORDS=300000 ROUNDS=2 KAFKA_BROKERS=host:9092; without KAFKA_BROKERS the
 *    benchmark starts librdkafka's mock cluster through kcat)
 */
import process from "node:process"
import { Buffer } from "node:buffer"
import { Effect, Schema } from "effect"
import kafkajs from "kafkajs"
import { Kafka, StreamingContext } from "../mod.ts"
import { startMockCluster } from "../receivers/_kafka_mock.ts"

const total = Number(process.env.RECORDS ?? 300_000)
const rounds = Number(process.env.ROUNDS ?? 2)
const runtime = (globalThis as { Bun?: { version: string } }).Bun !== undefined
  ? `bun ${(globalThis as any).Bun.version}`
  : `deno ${(globalThis as any).Deno?.version?.deno}`

const mock = process.env.KAFKA_BROKERS ? undefined : await startMockCluster()
const brokers = process.env.KAFKA_BROKERS?.split(",") ?? [mock!.bootstrap]
const topic = `bench-${Date.now().toString(36)}`
const retry = { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 }
const kafka = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING, retry })
const consumerTuning = { sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 100, maxBytesPerPartition: 4 << 20 }

// ---- produce ----
{
  const producer = kafka.producer()
  await producer.connect()
  const chunk = 20_000
  for (let i = 0; i < total; i += chunk) {
    const messages = []
    for (let j = i; j < Math.min(total, i + chunk); j++) messages.push({ key: `k${j % 1000}`, value: `record number ${j} with some payload text` })
    await producer.send({ topic, messages })
  }
  await producer.disconnect()
  console.log(`${runtime}: produced ${total} records to ${topic} on ${brokers.join(",")}`)
}

// ---- raw kafkajs eachBatch loop ----
const raw = async (): Promise<number> => {
  const consumer = kafka.consumer({ groupId: `raw-${Math.random()}`, ...consumerTuning, retry })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let count = 0
  let chars = 0
  let resolve!: (end: number) => void
  const done = new Promise<number>((r) => (resolve = r))
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) chars += (m.value as Buffer).toString().length
      count += batch.messages.length
      if (count >= total) resolve(performance.now())
    },
  })
  const start = performance.now() // joined: run() resolves after the group join
  const end = await done
  await consumer.disconnect()
  if (chars === 0) throw new Error("no data")
  return (total / (end - start)) * 1000
}

// ---- the direct stream into a count ----
const direct = (): Promise<number> =>
  Effect.runPromise(Effect.gen(function*() {
    const ssc = yield* StreamingContext.make({ batchInterval: "50 millis" })
    const stream = Kafka.directStream(ssc, {
      brokers,
      groupId: `direct-${Math.random()}`,
      topics: [topic],
      autoOffsetReset: "earliest",
      value: Schema.String,
      retry,
      logLevel: kafkajs.logLevel.NOTHING,
      ...consumerTuning,
    })
    let count = 0
    let resolve!: (end: number) => void
    const done = new Promise<number>((r) => (resolve = r))
    stream.count().foreachBatch((counts) => {
      count += counts[0] ?? 0
      if (count >= total) resolve(performance.now())
    })
    yield* ssc.start
    const start = performance.now() // joined: start returns after the consumer's run(), i.e. the join
    const end = yield* Effect.promise(() => done)
    yield* ssc.stop()
    return (total / (end - start)) * 1000
  }))

const fmt = (n: number) => Math.round(n).toLocaleString("en-US")
const ratios: Array<number> = []
for (let r = 0; r < rounds; r++) {
  const rawRate = await raw()
  const directRate = await direct()
  ratios.push(directRate / rawRate)
  console.log(
    `${runtime} round ${r + 1}: raw kafkajs eachBatch ${fmt(rawRate)} records/s, direct stream ${fmt(directRate)} records/s, ratio ${(directRate / rawRate).toFixed(2)}`,
  )
}
const best = Math.max(...ratios)
console.log(`${runtime}: direct / raw ratio best ${best.toFixed(2)}, mean ${(ratios.reduce((a, b) => a + b, 0) / ratios.length).toFixed(2)} (target ≥ 0.8)`)
await mock?.stop()
process.exit(0)
