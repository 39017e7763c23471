/**
 * The Kafka crash loop shared by tests/kafka_recovery.test.ts and bench/kafka_crash_loop.ts: a
 * producer adds records with unique values while a child process (tests/_support/kafka_child.ts:
 * direct stream → updateStateByKey count per value, getOrCreate) is SIGKILLed at random points
 * and restarted; at the end every value must be counted exactly once.
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"
import kafkajs from "kafkajs"
import { type Child, kill, sleep, startChild } from "./child.ts"
import { ensureTopic, unique } from "./kafka.ts"

export interface CrashLoopOptions {
  readonly brokers: ReadonlyArray<string>
  readonly bootstrap: string
  /** A fresh directory for the checkpoint and the child's output. */
  readonly dir: string
  readonly kills: number
  /** Outputs sometimes slower than a batch (recorded batches ahead of checkpoints). */
  readonly slow: boolean
  /** Records produced per 100 ms while the child is being killed. */
  readonly rate?: number | undefined
  /** How long the last child may take to catch up and count everything (default 40 s). */
  readonly finalWaitMillis?: number | undefined
  readonly log?: ((line: string) => void) | undefined
}

export interface CrashLoopResult {
  readonly produced: number
  /** Values never counted. */
  readonly lost: number
  /** Extra counts (a value counted n > 1 times adds n − 1), plus values never produced. */
  readonly duplicated: number
  readonly kills: number
  /** Restarts that logged a recovery from a checkpoint (a killed child may not flush its log). */
  readonly recovered: number
  /** The last child (which ran to the end) recovered from a checkpoint. */
  readonly lastRecovered: boolean
  /** The last child processed batches up to the present (else "lost" may only be late). */
  readonly caughtUp: boolean
  /** The last child's log, for failure messages. */
  readonly lastLog: string
  readonly killedAfter: ReadonlyArray<string>
}

const readOutput = (file: string): { readonly time: number; readonly counts: Record<string, number> } | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"))
  } catch {
    return undefined
  }
}

const waitFor = async (predicate: () => boolean, ms: number): Promise<boolean> => {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) return false
    await sleep(20)
  }
  return true
}

/** Runs the crash loop; the caller owns `dir` (and removes it). */
export const crashLoop = async (options: CrashLoopOptions): Promise<CrashLoopResult> => {
  const topic = unique("crash")
  const groupId = unique("crash-g")
  await ensureTopic(options.bootstrap, topic)
  const checkpointDir = nodePath.join(options.dir, "checkpoint")
  const outFile = nodePath.join(options.dir, "counts.json")
  const args = [options.brokers.join(","), topic, groupId, checkpointDir, outFile, options.slow ? "slow" : ""]
  const start = (): Child => startChild("tests/_support/kafka_child.ts", args)

  // ---- the producer: unique values, spread over the partitions by key ----
  const kafka = new kafkajs.Kafka({
    brokers: [...options.brokers],
    logLevel: kafkajs.logLevel.NOTHING,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  const producer = kafka.producer()
  await producer.connect()
  let produced = 0
  let producing = true
  const rate = options.rate ?? 20
  const producing$ = (async () => {
    while (producing) {
      const messages = Array.from({ length: rate }, (_, i) => ({ key: `k${produced + i}`, value: `v${produced + i}` }))
      await producer.send({ topic, messages, acks: -1 })
      produced += messages.length
      await sleep(100)
    }
  })()

  let child = start()
  const children: Array<Child> = [child]
  const killedAfter: Array<string> = []
  try {
    for (let k = 0; k < options.kills; k++) {
      if (Math.random() < 0.15) {
        // anywhere in start-up: runtime start, recovery, the group join
        const ms = Math.floor(Math.random() * 2500)
        await sleep(ms)
        killedAfter.push(`${ms} ms after spawn`)
      } else {
        const started = await waitFor(() => child.log.join("").includes("started\n"), 30_000)
        if (!started) throw new Error(`The child did not start within 30 s; its log:\n${child.log.join("")}`)
        const ms = 100 + Math.floor(Math.random() * 1400)
        await sleep(ms)
        killedAfter.push(`${ms} ms after start`)
      }
      await kill(child)
      options.log?.(`kill ${k + 1}/${options.kills}: ${killedAfter[killedAfter.length - 1]}, ${produced} produced`)
      child = start()
      children.push(child)
    }
    producing = false
    await producing$
    // the last child runs until it has caught up with the batches missed while it was down, and
    // then until every value is counted (or it counts nothing new for 4 s: records were lost)
    let keys = -1
    let changed = Date.now()
    let caughtUp: number | undefined
    const before = readOutput(outFile)?.time ?? 0
    const done = await waitFor(() => {
      const out = readOutput(outFile)
      const n = Object.keys(out?.counts ?? {}).length
      const now = Date.now()
      if (n !== keys) {
        keys = n
        changed = now
      }
      // caught up: the last child itself wrote a batch of about now
      if (caughtUp === undefined && out !== undefined && out.time > before && out.time >= now - 1000) caughtUp = now
      // every value counted is not the end yet: until the child has caught up, it may still re-run
      // batches (a duplicate would show then), so the caught-up check comes first
      return caughtUp !== undefined && (n >= produced || now - Math.max(changed, caughtUp) > 4000)
    }, options.finalWaitMillis ?? 40_000)
    if (done) await sleep(1000)
    const counts = readOutput(outFile)?.counts ?? {}
    let lost = 0
    let duplicated = 0
    for (let i = 0; i < produced; i++) {
      const n = counts[`v${i}`] ?? 0
      if (n === 0) lost++
      else duplicated += n - 1
    }
    for (const [value, n] of Object.entries(counts)) {
      const i = Number(value.slice(1))
      if (!(value.startsWith("v") && Number.isInteger(i) && i >= 0 && i < produced)) duplicated += n
    }
    const recovered = children.slice(1).filter((c) => /Recovered from checkpoint/.test(c.log.join(""))).length
    const lastLog = child.log.join("")
    const lastRecovered = /Recovered from checkpoint/.test(lastLog)
    return {
      produced,
      lost,
      duplicated,
      kills: options.kills,
      recovered,
      lastRecovered,
      caughtUp: caughtUp !== undefined,
      lastLog,
      killedAfter,
    }
  } finally {
    producing = false
    await producing$.catch(() => undefined)
    await producer.disconnect().catch(() => undefined)
    await kill(child)
  }
}
