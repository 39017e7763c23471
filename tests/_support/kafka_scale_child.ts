/**
 * The scale-out tests' member process: lines from a topic → words repartitioned by word →
 * a running count per word, sharded over the consumer group (updateStateByKey, or mapWithState
 * with a timeout). After every batch it writes the state it owns, its shards and its restores
 * to `out` (temp + rename), and appends that line to `out.history` whenever the shards it owns
 * change (so a test sees the first batch after a takeover), and its `KafkaShards` listener
 * events to `out.events`. Prints `started` once the context runs.
 * Usage: kafka_scale_child.ts <brokers> <topic> <applicationId> <mode> <out file>, where mode is
 * `update`, `mapWithState` or `partitioned`, optionally followed by `+cache=<directory>` (shard
 * caches there), `+checkpoint=<directory>` (the context's checkpoint directory: shard caches in its
 * `kafka-scale/<applicationId>`) and `+standbys` (standby shards of every partition not owned).
 */
import process from "node:process"
import { appendFileSync, renameSync, writeFileSync } from "node:fs"
import { Effect, Option, Schema } from "effect"
import { KafkaScale, type State, StateSpec, StreamingContext } from "../../mod.ts"
import { Runtime } from "../../mod.ts"

const [brokers, topic, applicationId, modeArg, outFile] = process.argv.slice(2)
const [mode, ...flags] = modeArg.split("+")
const cacheDir = flags.find((f) => f.startsWith("cache="))?.slice("cache=".length)
const standbys = flags.includes("standbys")
const checkpointDir = flags.find((f) => f.startsWith("checkpoint="))?.slice("checkpoint=".length)

Runtime.runMain(Effect.gen(function* () {
  const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
  if (checkpointDir !== undefined) ssc.checkpoint(checkpointDir)
  const lines = KafkaScale.scaleOut(ssc, {
    brokers: brokers.split(","),
    applicationId,
    topic,
    value: Schema.String,
    sessionTimeout: 3000,
    heartbeatInterval: 300,
    maxWaitTimeInMs: 100,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
    ...(cacheDir !== undefined ? { stateDirectory: cacheDir, cacheInterval: "200 millis" } : {}),
    ...(standbys ? { standbys: true, standbyInterval: "300 millis" } : {}),
  })
  // `partitioned`: every record is one word keyed by itself (the input is partitioned by the word)
  const words = mode === "partitioned"
    ? lines.repartitionByKey({
      name: "words",
      by: (r) => [[r.value, 1] as const],
      key: Schema.String,
      partitionedByKey: true,
    })
    : lines.repartitionByKey({
      name: "words",
      by: (r) => r.value.split(" ").filter((w) => w.length > 0).map((w) => [w, 1] as const),
      key: Schema.String,
      value: Schema.NumberFromString,
    })
  const state = mode === "mapWithState"
    ? words.mapWithState(
      StateSpec.function((word: string, one: Option.Option<number>, s: State.State<number>) => {
        const n = Option.getOrElse(one, () => 0) + Option.getOrElse(s.getOption(), () => 0)
        if (!s.isTimingOut()) s.update(n)
        return [word, n] as const
      }).timeout("1 hour").withSchemas({ state: Schema.Number }),
    ).stateSnapshots()
    : words.updateStateByKey(
      (ones: ReadonlyArray<number>, s: Option.Option<number>) =>
        Option.some(ones.reduce((a, b) => a + b, Option.getOrElse(s, () => 0))),
      { schemas: { state: Schema.Number } },
    )
  let owned = ""
  state.foreachBatch((counts, time) =>
    Effect.gen(function* () {
      const shards = yield* lines.shards
      const restores = yield* lines.restores
      const standbyShards = yield* lines.standbys
      const line = JSON.stringify({
        time,
        pid: process.pid,
        counts: Object.fromEntries(counts),
        shards,
        restores,
        standbys: standbyShards,
      })
      const tmp = `${outFile}.tmp`
      writeFileSync(tmp, line)
      renameSync(tmp, outFile)
      const now = shards.map((s) => s.partition).join(",")
      if (now !== owned) {
        owned = now
        appendFileSync(`${outFile}.history`, line + "\n")
      }
    })
  )
  // the shard events, one JSON line each
  ssc.addStreamingListener((e) => {
    if (e._tag === "KafkaShards") appendFileSync(`${outFile}.events`, JSON.stringify(e) + "\n")
  })
  yield* ssc.start
  process.stdout.write("started\n")
  yield* ssc.awaitTermination
}))
