/**
 * Shard restore speed: a changelog of RECORDS change records (with a marker every 1 000) over 4
 * partitions is read back into 4 shards the way a member restores on assignment (the client's
 * `readPartition` per partition, in parallel, through the changelog `Restorer`, then decoded
 * into the shards' tables with their Schema codec), against the raw read of the same partitions
 * (the same `readPartition`, counting records) and against that raw read with kafkajs decoding
 * every Fetch response (the client's `fetchDecoding: "kafkajs"`, as reads were before they decoded
 * record batches themselves), in the same run. Each round rotates which side goes first; the
 * median and range of several rounds are printed, with records/s timed from the first record
 * delivered to the shard being ready (the time before it — a direct Fetch, or a group join — is
 * printed apart), and the in-memory part alone (Restorer + decode, no broker). Target:
 * ≥ 300 000 records/s on the mock.
 *
 * Then a member's restart with its shard caches (the files a member writes, read back, checked
 * against the changelog's marker and continued with the changelog after it — empty here) against
 * the full restore of the same shards, alternating: wall time to ready shards, the reader's join
 * included on both sides.
 *
 *   deno run -A bench/kafka_restore.ts     bun bench/kafka_restore.ts
 *   (optional: RECORDS=320000 ROUNDS=3 KAFKA_BROKERS=host:9092; without KAFKA_BROKERS the benchmark
 *    starts librdkafka's mock cluster through kcat, which keeps at most 5 MiB per partition)
 */
import process from "node:process"
import { Effect, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { createHash } from "node:crypto"
import { controlText, decodeCache, encodeCache, type RestorePoint, Restorer } from "../lib/_internal/changelog.ts"
import type { KafkaClient, RawRecord } from "../lib/_internal/kafkaClient.ts"
import { appendRecords, restoredShard, Shard, shardCodec } from "../lib/_internal/shards.ts"
import { startMockCluster } from "../receivers/_kafka_mock.ts"
import { LogBridge } from "../receivers/kafka.ts"
import { kafkajsClient } from "../receivers/kafkajs_client.ts"
import { collectGarbage, runtimeName } from "./_runtime.ts"

const total = Number(process.env.RECORDS ?? 320_000)
const rounds = Number(process.env.ROUNDS ?? 3)
const partitions = 4
const mock = process.env.KAFKA_BROKERS ? undefined : await startMockCluster()
const brokers = process.env.KAFKA_BROKERS?.split(",") ?? [mock!.bootstrap]
const log = new LogBridge("bench")
log.services = await Effect.runPromise(Effect.context<never>())
const client: KafkaClient = kafkajsClient({ brokers, retry: { retries: 5, initialRetryTime: 100 } }, log)
/** The same reads with kafkajs decoding every Fetch response (as before our own decoding). */
const kafkajsDecoding: KafkaClient = kafkajsClient({ brokers, retry: { retries: 5, initialRetryTime: 100 } }, log, {
  fetchDecoding: "kafkajs",
})
const topic = `restore-${Date.now().toString(36)}`
const codec = shardCodec<string, number>(Schema.String, Schema.Number)

// ---- the changelog: batches of 1 000 changed keys and a marker, as the engine appends them ----
{
  const admin = await client.admin()
  await admin.createTopics([{ topic, partitions }]).catch(() => [])
  await admin.partitionCounts([topic])
  await admin.disconnect()
  const producer = await client.producer({ acks: -1 })
  const shards = Array.from({ length: partitions }, (_, p) => {
    const s = new Shard<string, unknown>(p)
    s.token = 0
    return s
  })
  let key = 0
  for (let written = 0; written < total; written += 1000 * partitions) {
    const out = []
    for (const s of shards) {
      for (let i = 0; i < 1000; i++) {
        s.set(`word-${key % 250_000}`, key)
        key++
      }
      s.applied += 1000
      s.moved = true
      out.push(...appendRecords(s, topic, codec, false, 1, Date.now())!)
    }
    await producer.send(out)
  }
  await producer.disconnect()
}

interface Timing {
  readonly records: number
  readonly keys: number
  /** From the first record delivered to the end. */
  readonly readMillis: number
  /** Before the first record (the reader's group join). */
  readonly joinMillis: number
}

const readAll = async (restore: boolean, reader: KafkaClient = client): Promise<Timing> => {
  const started = performance.now()
  let first = Infinity
  const results = await Promise.all(Array.from({ length: partitions }, async (_, partition) => {
    const restorer = new Restorer()
    let n = 0
    for await (const chunk of reader.readPartition({ topic, partition }, 0)) {
      first = Math.min(first, performance.now())
      if (restore) restorer.add(chunk)
      else n += chunk.length
    }
    if (!restore) return { records: n, keys: 0 }
    restorer.finish()
    const shard = restoredShard(partition, restorer, codec, false)
    return { records: restorer.records, keys: shard.state.size }
  }))
  const end = performance.now()
  return {
    records: results.reduce((a, r) => a + r.records, 0),
    keys: results.reduce((a, r) => a + r.keys, 0),
    readMillis: end - first,
    joinMillis: first - started,
  }
}

/** The in-memory part alone: the same records through Restorer and decode, no broker. */
const inMemory = (records: ReadonlyArray<ReadonlyArray<RawRecord>>): number => {
  const started = performance.now()
  let n = 0
  records.forEach((chunks, partition) => {
    const restorer = new Restorer()
    for (let i = 0; i < chunks.length; i += 500) restorer.add(chunks.slice(i, i + 500))
    restorer.finish()
    restoredShard(partition, restorer, codec, false)
    n += chunks.length
  })
  return n / ((performance.now() - started) / 1000)
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const rate = (t: Timing) => t.records / (t.readMillis / 1000)
const fmt = (n: number) => Math.round(n).toLocaleString("en-US")

const restoreRates: Array<number> = []
const rawRates: Array<number> = []
const kafkajsRates: Array<number> = []
const joins: Array<number> = []
let restored: Timing | undefined
const sides = ["restore", "raw", "kafkajs"] as const
for (let round = 0; round < rounds; round++) {
  // each side first, middle and last in turn
  const order = [...sides.slice(round % 3), ...sides.slice(0, round % 3)]
  for (const side of round % 2 === 0 ? order : order.reverse()) {
    collectGarbage()
    const t = await readAll(side === "restore", side === "kafkajs" ? kafkajsDecoding : client)
    if (side === "restore") {
      restoreRates.push(rate(t))
      restored = t
    } else (side === "raw" ? rawRates : kafkajsRates).push(rate(t))
    joins.push(t.joinMillis)
  }
}
const all: Array<Array<RawRecord>> = []
for (let p = 0; p < partitions; p++) {
  const rs: Array<RawRecord> = []
  for await (const chunk of client.readPartition({ topic, partition: p }, 0)) rs.push(...chunk)
  all.push(rs)
}
const memory = [inMemory(all), inMemory(all), inMemory(all)]

// ---- restart with caches: the cache files of the restored shards, against the full restore ----
const sha256 = (t: string) => createHash("sha256").update(t).digest("hex")
const cacheDir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-restore-cache-"))
all.forEach((records, partition) => {
  const restorer = new Restorer()
  restorer.add(records)
  restorer.finish()
  const last = records.findLast((r) => controlText(r) !== undefined)!
  const point: RestorePoint = {
    topic,
    partition,
    entries: restorer.state,
    latest: restorer.latest,
    position: restorer.position,
    batch: restorer.batch,
    generation: restorer.generation,
    lastControl: restorer.lastControl,
    control: controlText(last)!,
    next: restorer.next,
  }
  fs.writeFileSync(nodePath.join(cacheDir, `${partition}.cache`), encodeCache(point, sha256))
})
const fromCaches = async (): Promise<number> => {
  const started = performance.now()
  await Promise.all(Array.from({ length: partitions }, async (_, partition) => {
    const point = decodeCache(
      fs.readFileSync(nodePath.join(cacheDir, `${partition}.cache`), "utf8"),
      topic,
      partition,
      sha256,
    )
    const restorer = Restorer.fromPoint(point, "cache")
    let verified = false
    for await (const chunk of client.readPartition({ topic, partition }, point.lastControl)) {
      if (!verified) {
        verified = chunk[0]?.offset === point.lastControl && controlText(chunk[0]) === point.control
        if (!verified) throw new Error(`the cache of partition ${partition} does not match the changelog`)
        restorer.add(chunk.slice(1))
      } else restorer.add(chunk)
    }
    restorer.finish()
    restoredShard(partition, restorer, codec, false)
  }))
  return performance.now() - started
}
const fullMillis: Array<number> = []
const cacheMillis: Array<number> = []
for (let round = 0; round < rounds; round++) {
  for (const cached of round % 2 === 0 ? [true, false] : [false, true]) {
    collectGarbage()
    if (cached) cacheMillis.push(await fromCaches())
    else {
      const t = await readAll(true)
      fullMillis.push(t.readMillis + t.joinMillis)
    }
  }
}
fs.rmSync(cacheDir, { recursive: true, force: true })

console.log(
  `runtime ${runtimeName}: ${fmt(restored!.records)} changelog records over ${partitions} partitions, ${
    fmt(restored!.keys)
  } keys restored; ${rounds} rounds, alternating`,
)
console.log(
  `restore (read + Restorer + decode): median ${fmt(median(restoreRates))} records/s (range ${
    fmt(Math.min(...restoreRates))
  }–${fmt(Math.max(...restoreRates))})`,
)
console.log(
  `raw read (baseline):               median ${fmt(median(rawRates))} records/s (range ${fmt(Math.min(...rawRates))}–${
    fmt(Math.max(...rawRates))
  })`,
)
console.log(
  `raw read, kafkajs decoding:        median ${fmt(median(kafkajsRates))} records/s (range ${
    fmt(Math.min(...kafkajsRates))
  }–${fmt(Math.max(...kafkajsRates))})`,
)
console.log(
  `ratio restore / raw: ${(median(restoreRates) / median(rawRates)).toFixed(2)}; raw / raw with kafkajs decoding: ${
    (median(rawRates) / median(kafkajsRates)).toFixed(2)
  }`,
)
console.log(`before the first record (Fetch requests, no group): median ${fmt(median(joins))} ms (not in the rates)`)
console.log(`in memory (Restorer + decode, no broker): median ${fmt(median(memory))} records/s`)
console.log(
  `restart: ready shards from the changelog in median ${fmt(median(fullMillis))} ms (range ${
    fmt(Math.min(...fullMillis))
  }–${fmt(Math.max(...fullMillis))}), from their caches in median ${fmt(median(cacheMillis))} ms (range ${
    fmt(Math.min(...cacheMillis))
  }–${fmt(Math.max(...cacheMillis))}), reader joins included`,
)
await mock?.stop()
process.exit(0)
