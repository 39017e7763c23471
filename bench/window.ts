/**
 * Per-batch cost of windowed word counts at a short (2-batch) and a long (600-batch) window
 * over the same input, in one run: `reduceByKeyAndWindow(+, −, window)` (incremental, with an
 * inverse) and, for contrast, the plain `reduceByKeyAndWindow(+, window)`, which re-reduces
 * the whole window every slide. 1-second batches, slide 1 s, driven batch by batch with
 * TestClock; the wall time of each batch (tick → batch completed) is measured after the long
 * window is full. The incremental form should cost the same at both lengths (target ratio
 * 600-batch / 2-batch ≤ 1.5); the plain form grows with the window.
 *
 *   deno run -A bench/window.ts     bun bench/window.ts
 *   (optional: RECORDS=10000 KEYS=1000 MEASURE=100 PLAIN_MEASURE=20 ROUNDS=2)
 */
import os from "node:os"
import process from "node:process"
import { Clock, Effect } from "effect"
import { TestClock } from "effect/testing"
import { BatchClock, type DStream, StreamingContext, Testing } from "../mod.ts"
import { runtimeName } from "./_runtime.ts"

const recordsPerBatch = Number(process.env.RECORDS ?? 10_000)
const numKeys = Number(process.env.KEYS ?? 1_000)
const measured = Number(process.env.MEASURE ?? 100)
const plainMeasured = Number(process.env.PLAIN_MEASURE ?? 20)
const longWindow = 600
const distinctBatches = 50

// Deterministic input: a pool of batches of [word, 1] pairs, cycled over the run.
let seed = 42
const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648)
const vocabulary = Array.from({ length: numKeys }, (_, i) => `w${i}`)
const pool: Array<Array<readonly [string, number]>> = Array.from(
  { length: distinctBatches },
  () => Array.from({ length: recordsPerBatch }, () => [vocabulary[next() % numKeys], 1] as const),
)

type Pairs = DStream.DStream<readonly [string, number]>
const add = (a: number, b: number) => a + b
const sub = (a: number, b: number) => a - b

/** Runs `warmup + measure` batches and returns the wall time (ms) of the measured ones. */
const perBatchMillis = (build: (pairs: Pairs) => Pairs, warmup: number, measure: number): Promise<Array<number>> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const total = warmup + measure
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      const input = Testing.input(ssc, Array.from({ length: total }, (_, i) => pool[i % distinctBatches]))
      let sink = 0
      build(input).foreachBatch((batch) => {
        sink += batch.length
      })
      const first = BatchClock.firstBatchTime(yield* Clock.currentTimeMillis, 1000)
      yield* ssc.start
      const times: Array<number> = []
      for (let k = 0; k < total; k++) {
        const start = performance.now()
        yield* TestClock.adjust(1000)
        yield* ssc.awaitBatch(first + k * 1000)
        if (k >= warmup) times.push(performance.now() - start)
      }
      yield* ssc.stop()
      if (sink === 0) throw new Error("no output")
      return times
    }).pipe(Effect.provide(TestClock.layer())),
  )

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length

const runtime = runtimeName
const cpus = os.cpus()

console.log(`window bench on ${runtime}, ${cpus.length} × ${cpus[0]?.model ?? "unknown CPU"}`)
console.log(
  `  ${recordsPerBatch.toLocaleString("en-US")} records/batch, ${
    numKeys.toLocaleString("en-US")
  } keys, 1-second batches, slide 1 s`,
)

const row = (label: string, xs: ReadonlyArray<number>) =>
  console.log(
    `  ${label.padEnd(44)} median ${median(xs).toFixed(2).padStart(8)} ms   mean ${
      mean(xs).toFixed(2).padStart(8)
    } ms   (${xs.length} batches)`,
  )

/** Alternates the two configurations `rounds` times; keeps each one's run with the lowest median. */
const compare = async (
  short: (pairs: Pairs) => Pairs,
  long: (pairs: Pairs) => Pairs,
  measure: number,
  rounds = Number(process.env.ROUNDS ?? 2),
): Promise<[Array<number>, Array<number>]> => {
  let best: [Array<number>, Array<number>] | undefined
  for (let r = 0; r < rounds; r++) {
    const a = await perBatchMillis(short, longWindow + 10, measure)
    const b = await perBatchMillis(long, longWindow + 10, measure)
    best = best === undefined
      ? [a, b]
      : [median(a) < median(best[0]) ? a : best[0], median(b) < median(best[1]) ? b : best[1]]
  }
  return best!
}

// Incremental form: same warm-up (the long window full) for both lengths.
const inverse = (w: number) => (pairs: Pairs) => pairs.reduceByKeyAndWindow(add, sub, w * 1000)
const [inv2, inv600] = await compare(inverse(2), inverse(longWindow), measured)
row("reduceByKeyAndWindow(+, −,   2 s)", inv2)
row(`reduceByKeyAndWindow(+, −, ${longWindow} s)`, inv600)
const ratio = median(inv600) / median(inv2)
console.log(
  `  incremental ratio ${longWindow}-batch / 2-batch: ${ratio.toFixed(2)} (target ≤ 1.5) ${
    ratio <= 1.5 ? "OK" : "ABOVE TARGET"
  }`,
)

// Plain form, for contrast.
const plain = (w: number) => (pairs: Pairs) => pairs.reduceByKeyAndWindow(add, w * 1000)
const [plain2, plain600] = await compare(plain(2), plain(longWindow), plainMeasured, 1)
row("reduceByKeyAndWindow(+,      2 s)  (plain)", plain2)
row(`reduceByKeyAndWindow(+,    ${longWindow} s)  (plain)`, plain600)
console.log(`  plain ratio ${longWindow}-batch / 2-batch: ${(median(plain600) / median(plain2)).toFixed(2)}`)
