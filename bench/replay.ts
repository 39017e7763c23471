/**
 * Replay throughput: an event-time pipeline (watermark 1 s, key by `n % 1000`, tumbling 10 s
 * counts, append mode) over 10 M records, run two ways in one process:
 *
 * - replay: `Replay.input(fromIterable(records), { recordsPerBatch })` + `Replay.run` (the
 *   replay input cuts the batches, the virtual clock moves on as soon as a batch completes);
 * - baseline: the same operators on the same records pre-cut into in-memory batches
 *   (`Testing.input`), driven batch by batch with TestClock.
 *
 * Both include checkpoint snapshots of the window state to an in-memory store. Prints records/s
 * of each and the ratio baseline time / replay time (target ≥ 0.8: replay adds little to the
 * operators' own cost).
 *
 *   deno run -A bench/replay.ts     bun bench/replay.ts
 *   (optional: RECORDS=10000000 PER_BATCH=100000 ROUNDS=3)
 */
import process from "node:process"
import { Clock, Effect } from "effect"
import { TestClock } from "effect/testing"
import { BatchClock, Checkpoint, type DStream, EventTime, Replay, StreamingContext, Testing } from "../mod.ts"
import { collectGarbage, runtimeName } from "./_runtime.ts"

const total = Number(process.env.RECORDS ?? 10_000_000)
const perBatch = Number(process.env.PER_BATCH ?? 100_000)
const rounds = Number(process.env.ROUNDS ?? 3)

// Records are event times (ms): about one per millisecond, out of order by up to 500 ms.
let seed = 42
const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648)
const records: Array<number> = []
for (let i = 0; i < total; i++) records.push(1_000_000 + i + (next() % 500))
const batches: Array<ReadonlyArray<number>> = []
for (let i = 0; i < total; i += perBatch) batches.push(records.slice(i, i + perBatch))

let emitted = 0
const pipeline = (input: DStream.DStream<number>): void => {
  input
    .withWatermark((n) => n, "1 second")
    .keyBy((n) => n % 1000)
    .countByEventWindow(EventTime.tumbling("10 seconds"))
    .checkpoint("10 seconds")
    .foreachBatch((b) => {
      for (const r of b) emitted += r.value
    })
}

const replay = Effect.gen(function* () {
  const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
  ssc.checkpoint("bench")
  pipeline(Replay.input(ssc, Replay.fromIterable(records), { recordsPerBatch: perBatch }))
  yield* Replay.run(ssc)
})

const baseline = Effect.gen(function* () {
  const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
  ssc.checkpoint("bench")
  pipeline(Testing.input(ssc, batches))
  const first = BatchClock.firstBatchTime(yield* Clock.currentTimeMillis, 1000)
  yield* ssc.start
  // The same number of batches as the replay: every input batch, plus one without records.
  for (let k = 0; k <= batches.length; k++) {
    yield* TestClock.adjust(1000)
    yield* ssc.awaitBatch(first + k * 1000)
  }
  yield* ssc.stop()
}).pipe(Effect.provide(TestClock.layer({ warningDelay: "1 day" })))

const time = async (run: Effect.Effect<void, unknown>): Promise<number> => {
  collectGarbage()
  emitted = 0
  const start = performance.now()
  await Effect.runPromise(Effect.provide(run, Checkpoint.layerMemory))
  const ms = performance.now() - start
  if (emitted === 0) throw new Error("The pipeline emitted no windows")
  return ms
}

console.log(`${runtimeName}: ${total} records, ${perBatch} per batch, ${batches.length} batches`)
let bestReplay = Infinity
let bestBaseline = Infinity
let counted = 0
for (let r = 0; r < rounds; r++) {
  // Alternate which side runs first.
  const order = r % 2 === 0 ? ["replay", "baseline"] : ["baseline", "replay"]
  for (const side of order) {
    const ms = await time(side === "replay" ? replay : baseline)
    if (side === "replay") {
      bestReplay = Math.min(bestReplay, ms)
      counted = emitted
    } else bestBaseline = Math.min(bestBaseline, ms)
    console.log(`  ${side.padEnd(8)} ${ms.toFixed(0).padStart(6)} ms  ${(total / ms / 1000).toFixed(2)} M records/s`)
  }
}
console.log(`records counted in emitted windows: ${counted} (the last open windows are not final)`)
console.log(
  `best: replay ${bestReplay.toFixed(0)} ms, baseline ${bestBaseline.toFixed(0)} ms, ratio baseline/replay ${
    (bestBaseline / bestReplay).toFixed(2)
  } (target ≥ 0.8)`,
)
