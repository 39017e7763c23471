/**
 * The Kafka crash loop, long: a child process (tests/_support/kafka_child.ts: direct stream →
 * updateStateByKey count per unique value, getOrCreate with a checkpoint directory) is SIGKILLed
 * at random points KILLS times (default 24) and restarted each time while a producer adds
 * records; at the end it prints how many produced records the recovered state lost and how many
 * it counted twice (both must be 0). Runs on the runtime running it, against librdkafka's mock
 * cluster (kcat) or KAFKA_BROKERS.
 *
 *   node_modules/.bin/deno run -A bench/kafka_crash_loop.ts     node_modules/.bin/bun bench/kafka_crash_loop.ts
 *   (optional: KILLS=24 SLOW=1 RATE=20 KAFKA_BROKERS=host:9092)
 */
import process from "node:process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { startCluster } from "../tests/_support/kafka.ts"
import { crashLoop } from "../tests/_support/kafka_crash.ts"
import { runtimeName } from "./_runtime.ts"

const kills = Number(process.env.KILLS ?? 24)
const slow = (process.env.SLOW ?? "1") !== "0"
const rate = Number(process.env.RATE ?? 20)

const cluster = await startCluster()
const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-kafka-crash-"))
const began = Date.now()
try {
  const result = await crashLoop({
    brokers: cluster.brokers,
    bootstrap: cluster.bootstrap,
    dir,
    kills,
    slow,
    rate,
    finalWaitMillis: 120_000,
    log: (line) => console.log(line),
  })
  const seconds = ((Date.now() - began) / 1000).toFixed(1)
  console.log(
    `${runtimeName}: ${result.kills} kills (${result.recovered} restarts recovered from a checkpoint), ${result.produced} records produced, lost ${result.lost}, duplicated ${result.duplicated}${
      result.caughtUp ? "" : " (the last child did not catch up in time)"
    } (${seconds} s, ${cluster.kind} cluster)`,
  )
  if (result.lost !== 0 || result.duplicated !== 0 || !result.caughtUp) {
    console.log(`last child's log:\n${result.lastLog.slice(-4000)}`)
    process.exitCode = 1
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
  await cluster.stop()
}
