/**
 * Replay from Kafka against librdkafka's mock cluster: a bounded replay of offset ranges gives
 * the same event-time windows as a replay of the same records from an array; a replay that
 * goes live processes the history on the virtual clock (many batches in little wall time),
 * then switches to the real clock and keeps going with records produced after the switch,
 * with the window state continuous across the switch.
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import kafkajs from "kafkajs"
import { Effect, Exit, Fiber, Schema } from "effect"
import {
  BatchJobError,
  type DStream,
  EventTime,
  type Kafka,
  Replay,
  type Runtime,
  StreamingContext,
  ValidationError,
} from "../mod.ts"
import { eventually, fast, startCluster, type TestCluster, unique } from "./_support/kafka.ts"
import { failureOf, run as runBare, runExit as runExitBare, withPlatform } from "./_support/run.ts"

// Replays here checkpoint to files: every program runs with the platform's FileSystem and Path.
const run = <A, E>(effect: Effect.Effect<A, E, Runtime.Services>) => runBare(withPlatform(effect))
const runExit = <A, E>(effect: Effect.Effect<A, E, Runtime.Services>) => runExitBare(withPlatform(effect))

const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-replay-kafka-"))
let cluster: TestCluster
before(async () => {
  cluster = await startCluster()
})
after(async () => {
  await cluster?.stop()
  fs.rmSync(root, { recursive: true, force: true })
})

/** A produced record: its partition, Kafka timestamp, key and value `key,eventTime`. */
interface Produced {
  readonly partition: number
  readonly timestamp: number
  readonly key: string
  readonly eventTime: number
}

const produceAll = async (topic: string, records: ReadonlyArray<Produced>): Promise<void> => {
  const kafka = new kafkajs.Kafka({
    brokers: [...cluster.brokers],
    logLevel: kafkajs.logLevel.NOTHING,
    retry: fast.retry,
  })
  const producer = kafka.producer()
  await producer.connect()
  try {
    await producer.send({
      topic,
      messages: records.map((r) => ({
        partition: r.partition,
        key: r.key,
        value: `${r.key},${r.eventTime}`,
        timestamp: String(r.timestamp),
      })),
    })
  } finally {
    await producer.disconnect()
  }
}

interface Ev {
  readonly k: string
  readonly t: number
}
const parse = (line: string): Ev => {
  const [k, t] = line.split(",")
  return { k, t: Number(t) }
}

/** Tumbling counts and their late records, one string per window or late record, in emission order per batch. */
const pipeline = (events: DStream.DStream<Ev>, into: Array<Array<string>>) => {
  const counts = events.withWatermark((e) => e.t, "2 seconds").keyBy((e) => e.k).countByEventWindow(
    EventTime.tumbling("5 seconds"),
  )
  counts.foreachBatch((b) => {
    into.push(b.map((r) => `${r.key} ${r.start} ${r.end} ${r.value}`))
  })
  counts.late().foreachBatch((b) => {
    if (b.length > 0) into.push(b.map((l) => `late ${l.record[0]} ${l.record[1].t}`))
  })
}

// 4 partitions (the mock's default); Kafka timestamps rise within each partition and are unique,
// event times jitter by up to 4 s around them (some records late for a 2 s watermark delay).
let seed = 11
const rand = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648
const history: Array<Produced> = []
for (let i = 0; i < 400; i++) {
  const timestamp = 1_700_000_000_000 + i * 97
  history.push({
    partition: Math.floor(rand() * 4),
    timestamp,
    key: `k${Math.floor(rand() * 3)}`,
    eventTime: timestamp + Math.floor(rand() * 4000) - 2000,
  })
}
/** Each record's offset: its position among the records of its partition. */
const offsetOf = (records: ReadonlyArray<Produced>): Map<Produced, number> => {
  const next = [0, 0, 0, 0]
  const out = new Map<Produced, number>()
  for (const r of records) out.set(r, next[r.partition]++)
  return out
}

const replayWindows = <A>(source: Replay.ReplaySource<A>, toLine: (a: A) => string) => {
  const into: Array<Array<string>> = []
  return run(
    Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      ssc.checkpoint(nodePath.join(root, unique("cp")))
      pipeline(Replay.input(ssc, source, { recordsPerBatch: 23 }).map((a) => parse(toLine(a))), into)
      yield* Replay.run(ssc)
      return into.filter((b) => b.length > 0)
    }),
  )
}

/** 400 records of the last ~40 s of event time before `now`, 100 per partition, keys k0…k2. */
const recentHistory = (now: number): Array<Produced> =>
  Array.from({ length: 400 }, (_, i) => ({
    partition: i % 4,
    timestamp: now - 40_000 + i * 100,
    key: `k${i % 3}`,
    eventTime: now - 40_000 + i * 100,
  }))

describe("replay from Kafka", () => {
  it("a bounded replay of offset ranges gives the windows of a replay of the same records from an array", {
    timeout: 60_000,
  }, async () => {
    const topic = unique("replay-bounded")
    await produceAll(topic, history)
    const offsets = offsetOf(history)
    const lineOf = (r: Produced) => `${r.key},${r.eventTime}`
    const client = { brokers: cluster.brokers, retry: fast.retry, topics: [topic], value: Schema.String }
    const record = (r: Kafka.KafkaRecord<string, string>) => r.value

    // the whole topic, in Kafka-timestamp order (unique timestamps: the order of `history`)
    const expected = await replayWindows(Replay.fromIterable(history.map(lineOf)), (l) => l)
    assert.ok(expected.length >= 8, `only ${expected.length} batches with windows`)
    assert.ok(expected.some((b) => b[0].startsWith("late")), "the data has late records")
    assert.deepEqual(await replayWindows(Replay.fromKafka({ ...client, from: "earliest" }), record), expected)

    // a range: partition 0 from offset 10, partition 2 until offset 30 (the others whole)
    const inRange = (r: Produced) =>
      !(r.partition === 0 && offsets.get(r)! < 10) && !(r.partition === 2 && offsets.get(r)! >= 30)
    const expectedRange = await replayWindows(Replay.fromIterable(history.filter(inRange).map(lineOf)), (l) => l)
    assert.notDeepEqual(expectedRange, expected)
    const ranged = Replay.fromKafka({
      ...client,
      from: { offsets: [{ topic, partition: 0, offset: 10 }] },
      until: { offsets: [{ topic, partition: 2, offset: 30 }] },
    })
    assert.deepEqual(await replayWindows(ranged, record), expectedRange)

    // an offset the partition does not hold is a typed error naming it
    const exit = await runExit(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      Replay.input(
        ssc,
        Replay.fromKafka({ ...client, from: { offsets: [{ topic, partition: 1, offset: 100_000 }] } }),
        { recordsPerBatch: 10 },
      ).print()
      yield* Replay.run(ssc)
    }))
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError && error.cause instanceof Replay.ReplayError, String(error))
    assert.match(error.cause.message, /partition 1 from offset 100000: the partition ends at offset \d+/)
  })

  it("replay then live: the history runs on the virtual clock, then the same pipeline and state go on live", {
    timeout: 60_000,
  }, async () => {
    const topic = unique("replay-live")
    const now = Date.now()
    const past = recentHistory(now)
    await produceAll(topic, past)
    const batches: Array<{ readonly time: number; readonly records: number; readonly wall: number }> = []
    // session windows per key (gap 10 minutes, update mode): one session spans the switch
    const sessions = new Map<string, number>()
    const program = Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
      ssc.checkpoint(nodePath.join(root, unique("cp")))
      const stream = Replay.kafkaThenLive(ssc, {
        brokers: cluster.brokers,
        groupId: unique("g"),
        topics: [topic],
        value: Schema.String,
        from: { offsets: [{ topic, partition: 3, offset: 40 }] }, // partition 3 skips its first 40
        maxRatePerPartition: 25, // 5 records per partition per 200 ms batch: at least 20 history batches
        ...fast,
      })
      stream.foreachBatch((records, time) => {
        batches.push({ time, records: records.length, wall: Date.now() })
      })
      stream.map((r) => parse(r.value)).withWatermark((e) => e.t, "10 minutes").keyBy((e) => e.k)
        .countByEventWindow(EventTime.session("10 minutes"), { mode: "update" })
        .foreachBatch((b) => {
          for (const r of b) sessions.set(r.key, r.value)
        })
      yield* Replay.start(ssc)
      return ssc
    })
    const ssc = await run(program)
    const fiber = Effect.runFork(ssc.awaitTermination)
    try {
      const historyRecords = 400 - 40
      await eventually(() => batches.reduce((n, b) => n + b.records, 0) >= historyRecords, 30_000, "the history")
      const last = batches.findIndex((_, i) =>
        batches.slice(0, i + 1).reduce((n, b) => n + b.records, 0) === historyRecords
      )
      const history = batches.slice(batches.findIndex((b) => b.records > 0), last + 1)
      assert.ok(history.length >= 20, `${history.length} history batches`)
      // many batches in little wall time: far faster than one per 200 ms
      const span = history[history.length - 1].wall - history[0].wall
      assert.ok(span < history.length * 200 / 2, `${history.length} batches took ${span} ms`)
      assert.deepEqual(sessions, new Map([["k0", 120], ["k1", 120], ["k2", 120]]))
      // live: records produced after the switch, with event times after the history's
      const switched = batches.length
      const live: Array<Produced> = Array.from({ length: 30 }, (_, i) => ({
        partition: i % 4,
        timestamp: Date.now(),
        key: `k${i % 3}`,
        eventTime: Date.now(),
      }))
      await produceAll(topic, live)
      await eventually(
        () => [...sessions.values()].every((n) => n === 130),
        20_000,
        `the live records in the sessions (${JSON.stringify([...sessions])})`,
      )
      await eventually(() => batches.length >= switched + 5, 20_000, "more live batches")
      // one timeline: batch times one interval apart across the switch
      for (let i = 1; i < batches.length; i++) assert.equal(batches[i].time - batches[i - 1].time, 200)
      // after the switch, batches come at real-time pace: one per 200 ms of wall time
      const after = batches.slice(switched)
      const pace = (after[after.length - 1].wall - after[0].wall) / (after.length - 1)
      assert.ok(pace > 150 && pace < 600, `${after.length} live batches, one per ${pace} ms`)
    } finally {
      await run(ssc.stop())
      const exit = await Effect.runPromise(Fiber.await(fiber))
      assert.ok(Exit.isSuccess(exit), String(failureOf(exit)))
    }
  })

  it("replay then live resumes from its checkpoint: the offsets and state of the checkpoint, not `from` again", {
    timeout: 60_000,
  }, async () => {
    const topic = unique("replay-resume")
    const now = Date.now()
    const past = recentHistory(now)
    await produceAll(topic, past)
    const dir = nodePath.join(root, unique("cp"))
    const groupId = unique("g")
    const sessions = new Map<string, number>()
    const times: Array<number> = []
    const attempt = (failAfter: number) =>
      Effect.gen(function* () {
        let seen = 0
        const ssc = yield* StreamingContext.getOrCreate(dir, (ssc) => {
          const stream = Replay.kafkaThenLive(ssc, {
            brokers: cluster.brokers,
            groupId,
            topics: [topic],
            value: Schema.String,
            from: { offsets: [{ topic, partition: 3, offset: 40 }] },
            maxRatePerPartition: 25,
            ...fast,
          })
          stream.map((r) => parse(r.value)).withWatermark((e) => e.t, "10 minutes").keyBy((e) => e.k)
            .countByEventWindow(EventTime.session("10 minutes"), { mode: "update" })
            .checkpoint("1 second")
            .foreachBatch((b, time) => {
              times.push(time)
              for (const r of b) sessions.set(r.key, r.value)
            })
          stream.foreachBatch((records) => {
            seen += records.length
            return seen > failAfter ? Effect.fail("output down") : Effect.void
          })
        }, { batchInterval: "200 millis" })
        yield* Replay.start(ssc)
        return ssc
      })
    // first run: an output fails after 250 records (12 batches, checkpoints every 5); the context stops
    const first = await run(attempt(250))
    const exit1 = await Effect.runPromise(Effect.exit(first.awaitTermination))
    assert.ok(Exit.isFailure(exit1))
    assert.ok(fs.readdirSync(dir).some((n) => n.startsWith("checkpoint-")))
    const before = new Map(sessions)
    const total = [...before.values()].reduce((a, b) => a + b, 0)
    assert.ok(total > 0 && total < 360, `first run counted ${total}`)
    const lastTime = times[times.length - 1]
    // second run: resumes from the checkpoint (its batch time, its offsets, its state) and catches up
    times.length = 0
    const second = await run(attempt(Infinity))
    try {
      await eventually(
        () => [...sessions.values()].reduce((a, b) => a + b, 0) >= 360,
        30_000,
        `the history (${JSON.stringify([...sessions])})`,
      )
      // exactly once: a second start at `from` would count partition 3's records twice
      assert.deepEqual(sessions, new Map([["k0", 120], ["k1", 120], ["k2", 120]]))
      assert.ok(times[0] <= lastTime + 200, `resumed at ${times[0]}, the first run's last batch was ${lastTime}`)
    } finally {
      await run(second.stop())
    }
  })

  it("bad Kafka replay setups are typed errors naming what is wrong", async () => {
    const base = { brokers: ["127.0.0.1:1"], value: Schema.String }
    const invalid = (f: () => unknown, pattern: RegExp) =>
      assert.throws(f, (e) => e instanceof ValidationError && pattern.test(e.message))
    invalid(() => Replay.fromKafka({ ...base, topics: [], from: "earliest" }), /needs one or more topic names: \[\]/)
    invalid(
      // @ts-expect-error "latest" is not a start of history
      () => Replay.fromKafka({ ...base, topics: ["t"], from: "latest" }),
      /from must be "earliest", \{ offsets \} or \{ timestamp \}: "latest"/,
    )
    invalid(
      () => Replay.fromKafka({ ...base, topics: ["t"], from: { timestamp: Number.NaN } }),
      /timestamp must be epoch milliseconds/,
    )
    const ssc = await run(StreamingContext.make({ batchInterval: "1 second" }))
    invalid(
      () =>
        Replay.kafkaThenLive(ssc, {
          ...base,
          groupId: "g",
          topics: ["t"],
          offsets: [{ topic: "t", partition: 0, offset: 1 }],
          from: "earliest",
        }),
      /give no `offsets`/,
    )
    invalid(
      () => Replay.kafkaThenLive(ssc, { ...base, groupId: "g", pattern: /t.*/, from: "earliest" }),
      /not a pattern/,
    )
    await run(ssc.stop())
  })
})
