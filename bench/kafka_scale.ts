/**
 * Scale-out throughput: the same program run as 1, 2 and 3 member processes of one consumer
 * group over a 4-partition topic holding LINES lines of 4 words, stateless (the input records
 * counted per batch) and stateful (words repartitioned by word into a running count per word,
 * with its changelog). Every run uses a fresh group reading the topic from the beginning; the
 * members load, then start their contexts on one signal, so they join in the first generation
 * (the mock cluster waits 3 s for them); an attempt in which a member was assigned partitions
 * twice anyway (a rebalance while processing) is discarded and run again (up to 3 attempts). Throughput = records / (last record processed
 * − first record processed, across the members). The baseline is the 1-process run of the same
 * round, doing the same work; rounds alternate the order (1, 2, 3 then 3, 2, 1) and the median
 * and range per process count are printed, with the scaling ratio. 4 partitions over 3 members
 * split 2/1/1, and this machine has 2 cores shared with other work: read the ratios with that.
 *
 *   deno run -A bench/kafka_scale.ts     bun bench/kafka_scale.ts
 *   (optional: LINES=150000 ROUNDS=2 MODES=stateless,stateful; without KAFKA_BROKERS the
 *    benchmark starts librdkafka's mock cluster through kcat)
 */
import process from "node:process"
import { type ChildProcess, spawn } from "node:child_process"
import { Effect, Option, Schema } from "effect"
import kafkajs from "kafkajs"
import { KafkaScale, Runtime, StreamingContext } from "../mod.ts"
import { kcat, startMockCluster } from "../receivers/_kafka_mock.ts"
import { runtimeName } from "./_runtime.ts"

const words = Array.from({ length: 500 }, (_, i) => `word${i}`)

// ---- a member process: `kafka_scale.ts child <brokers> <topic> <appId> <stateless|stateful>` ----
if (process.argv[2] === "child") {
  const [brokers, topic, applicationId, mode] = process.argv.slice(3)
  Runtime.runMain(Effect.gen(function* () {
    const ssc = yield* StreamingContext.make({ batchInterval: "100 millis" })
    const lines = KafkaScale.scaleOut(ssc, {
      brokers: brokers.split(","),
      applicationId,
      topic,
      value: Schema.String,
      sessionTimeout: 6000,
      heartbeatInterval: 500,
      maxWaitTimeInMs: 100,
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
    })
    let count = 0
    let first = 0
    let last = 0
    let assignments = 0
    ssc.addStreamingListener((e) => {
      if (e._tag === "KafkaShards" && e.kind === "assigned") assignments++
    })
    const report = (n: number) => {
      const now = Date.now()
      if (n > 0 && first === 0) first = now
      if (n > 0) last = now
      count += n
      process.stdout.write(`${JSON.stringify({ count, first, last, assignments })}\n`)
    }
    if (mode === "stateless") {
      lines.foreachBatch((records) => report(records.length))
    } else {
      let total = 0
      lines
        .repartitionByKey({
          name: "words",
          by: (r) => r.value.split(" ").map((w) => [w, 1] as const),
          key: Schema.String,
          value: Schema.NumberFromString,
        })
        .updateStateByKey(
          (ones: ReadonlyArray<number>, s: Option.Option<number>) =>
            Option.some(ones.length + Option.getOrElse(s, () => 0)),
          { schemas: { state: Schema.Number } },
        )
        .foreachBatch((state) => {
          let sum = 0
          for (const [, n] of state) sum += n
          report(sum - total)
          total = sum
        })
    }
    if (process.env.SCALE_DEBUG) {
      ssc.addStreamingListener((e) => {
        if (e._tag === "BatchCompleted" && e.batchInfo.numRecords > 0) {
          process.stderr.write(
            `batch ${e.batchInfo.numRecords} records, processing ${e.batchInfo.processingDelay} ms\n`,
          )
        } else if (e._tag === "KafkaShards" && e.kind === "assigned") {
          process.stderr.write(`assigned ${e.partitions.map((p) => `${p.topic}[${p.partition}]`).join(" ")}\n`)
        }
      })
    }
    // start together: wait for the bench's "go" (so every member joins the first generation)
    process.stdout.write("ready\n")
    yield* Effect.promise(() => new Promise<void>((resolve) => process.stdin.once("data", () => resolve())))
    yield* ssc.start
    yield* ssc.awaitTermination
  }))
} else {
  const lines = Number(process.env.LINES ?? 150_000)
  const rounds = Number(process.env.ROUNDS ?? 2)
  const modes = (process.env.MODES ?? "stateless,stateful").split(",")
  const mock = process.env.KAFKA_BROKERS ? undefined : await startMockCluster()
  const brokers = process.env.KAFKA_BROKERS?.split(",") ?? [mock!.bootstrap]
  const topic = `scale-bench-${Date.now().toString(36)}`
  if (mock !== undefined) await kcat(["-L", "-b", mock.bootstrap, "-t", topic])

  // ---- the input: LINES lines of 4 words, spread over the partitions ----
  {
    const kafka = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING })
    const producer = kafka.producer()
    await producer.connect()
    for (let i = 0; i < lines; i += 10_000) {
      const messages = []
      for (let j = i; j < Math.min(lines, i + 10_000); j++) {
        const line = [0, 1, 2, 3].map((k) => words[(j * 7 + k * 131) % words.length]).join(" ")
        messages.push({ key: `k${j}`, value: line })
      }
      await producer.send({ topic, messages })
    }
    await producer.disconnect()
  }

  interface Progress {
    ready: boolean
    assignments: number
    count: number
    first: number
    last: number
  }

  const command = (): [string, Array<string>] =>
    "Deno" in globalThis
      ? [process.execPath, ["run", "-A", "bench/kafka_scale.ts"]]
      : [process.execPath, ["bench/kafka_scale.ts"]]

  /** Runs in which a member was assigned partitions more than once (a rebalance while processing). */
  const rebalanced: Array<string> = []

  /** A run in which no member was assigned partitions twice (up to 3 attempts); records/s. */
  const run = async (mode: string, members: number, round: number): Promise<number> => {
    for (let attempt = 1;; attempt++) {
      const r = await attemptRun(mode, members, round)
      if (!r.rebalanced || attempt === 3) return r.rate
      rebalanced.push(`${mode} × ${members} (round ${round + 1}, attempt ${attempt})`)
    }
  }

  /** One attempt: `members` processes until every record is counted. */
  const attemptRun = async (
    mode: string,
    members: number,
    round: number,
  ): Promise<{ readonly rate: number; readonly rebalanced: boolean }> => {
    const app = `scale-${mode}-${members}-${round}-${Date.now().toString(36)}`
    const expected = mode === "stateless" ? lines : lines * 4
    const progress: Array<Progress> = []
    const children: Array<ChildProcess> = []
    for (let m = 0; m < members; m++) {
      const [cmd, args] = command()
      const child = spawn(cmd, [...args, "child", brokers.join(","), topic, app, mode], {
        stdio: ["pipe", "pipe", process.env.SCALE_DEBUG ? "inherit" : "ignore"],
      })
      const p: Progress = { count: 0, first: 0, last: 0, ready: false, assignments: 0 }
      progress.push(p)
      let buf = ""
      child.stdout!.on("data", (d: Uint8Array) => {
        buf += new TextDecoder().decode(d)
        let i
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i)
          buf = buf.slice(i + 1)
          if (line.startsWith("{")) Object.assign(p, JSON.parse(line))
          else if (line === "ready") p.ready = true
        }
      })
      children.push(child)
    }
    const deadline = Date.now() + 120_000
    try {
      while (!progress.every((p) => p.ready)) {
        if (Date.now() > deadline) throw new Error(`${mode} with ${members} members did not start`)
        await new Promise((r) => setTimeout(r, 50))
      }
      for (const c of children) c.stdin!.write("go\n")
      while (progress.reduce((a, p) => a + p.count, 0) < expected) {
        if (Date.now() > deadline) {
          throw new Error(
            `${mode} with ${members} members did not finish: ${
              progress.map((p) => p.count).join(" + ")
            } of ${expected} records`,
          )
        }
        await new Promise((r) => setTimeout(r, 100))
      }
    } finally {
      for (const c of children) c.kill("SIGKILL")
    }
    const first = Math.min(...progress.filter((p) => p.first > 0).map((p) => p.first))
    const last = Math.max(...progress.map((p) => p.last))
    return { rate: expected / ((last - first) / 1000), rebalanced: progress.some((p) => p.assignments > 1) }
  }

  const median = (xs: ReadonlyArray<number>) => {
    const s = [...xs].sort((a, b) => a - b)
    const m = Math.floor(s.length / 2)
    return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
  }
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US")
  console.log(`runtime ${runtimeName}: ${fmt(lines)} lines of 4 words, 4 partitions, ${rounds} rounds`)
  console.log("| mode | processes | records/s (median) | range | × 1 process (median of per-round ratios) |")
  console.log("|---|---|---|---|---|")
  for (const mode of modes) {
    const rates = new Map<number, Array<number>>([[1, []], [2, []], [3, []]])
    const ratios = new Map<number, Array<number>>([[1, []], [2, []], [3, []]])
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [1, 2, 3] : [3, 2, 1]
      const got = new Map<number, number>()
      for (const n of order) got.set(n, await run(mode, n, round))
      for (const n of [1, 2, 3]) {
        rates.get(n)!.push(got.get(n)!)
        ratios.get(n)!.push(got.get(n)! / got.get(1)!)
      }
    }
    for (const n of [1, 2, 3]) {
      const rs = rates.get(n)!
      console.log(
        `| ${mode} | ${n} | ${fmt(median(rs))} | ${fmt(Math.min(...rs))}–${fmt(Math.max(...rs))} | ${
          median(ratios.get(n)!).toFixed(2)
        } |`,
      )
    }
  }
  console.log(`attempts discarded for a rebalance while processing: ${rebalanced.join(", ") || "none"}`)
  await mock?.stop()
  process.exit(0)
}
