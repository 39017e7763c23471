/**
 * Word-count throughput: queueStream → flatMap → mapToPair → reduceByKey → foreachBatch,
 * against a hand-written loop (split + Map count per batch) over the same batches, in the
 * same run. Batches are driven by TestClock, so the figure is processing cost, not waiting.
 * The pipeline's time is the wall-clock time from each batch's BatchStarted event to its
 * BatchCompleted event (the engine's whole per-batch work: job generation, the operators,
 * the output, events, forgetting old batches), summed over the batches; the end-to-end time,
 * which adds creating, starting and stopping the context once, is printed as well.
 *
 *   deno run -A bench/word_count.ts     bun bench/word_count.ts
 *   (optional: WORDS=4000000 BATCHES=20 ROUNDS=5)
 */
import process from "node:process"
import { Effect } from "effect"
import { type StreamingContext, Testing } from "../mod.ts"
import { runtimeName } from "./_runtime.ts"

const totalWords = Number(process.env.WORDS ?? 2_000_000)
const numBatches = Number(process.env.BATCHES ?? 20)
const rounds = Number(process.env.ROUNDS ?? 5)
const wordsPerLine = 10
const vocabulary = Array.from({ length: 5000 }, (_, i) => `w${(i * 7919) % 100_003}`)

// Deterministic input: numBatches batches of lines, totalWords words in all.
let seed = 42
const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648)
const batches: Array<Array<string>> = []
for (let b = 0; b < numBatches; b++) {
  const lines: Array<string> = []
  for (let l = 0; l < totalWords / numBatches / wordsPerLine; l++) {
    const words: Array<string> = []
    for (let w = 0; w < wordsPerLine; w++) words.push(vocabulary[next() % vocabulary.length])
    lines.push(words.join(" "))
  }
  batches.push(lines)
}

const handWritten = (): number => {
  let distinct = 0
  for (const batch of batches) {
    const counts = new Map<string, number>()
    for (const line of batch) {
      for (const word of line.split(" ")) counts.set(word, (counts.get(word) ?? 0) + 1)
    }
    distinct += counts.size
  }
  return distinct
}

/** Runs the pipeline; returns [distinct words summed over batches, summed batch processing ms]. */
const pipeline = async (): Promise<[number, number]> => {
  let distinct = 0
  let processing = 0
  let batchStart = 0
  await Effect.runPromise(
    Testing.run((ssc: StreamingContext.StreamingContext) => {
      ssc.addStreamingListener((e) => {
        if (e._tag === "BatchStarted") batchStart = performance.now()
        else if (e._tag === "BatchCompleted") processing += performance.now() - batchStart
      })
      const counts = ssc.queueStream(batches.slice())
        .flatMap((line) => line.split(" "))
        .mapToPair((word) => [word, 1])
        .reduceByKey((a, b) => a + b)
      counts.foreachBatch((batch) => {
        distinct += batch.length
      })
      return counts
    }, { numBatches }),
  )
  return [distinct, processing]
}

const time = async (f: () => number | Promise<number>): Promise<[number, number]> => {
  const start = performance.now()
  const result = await f()
  return [performance.now() - start, result]
}

const runtime = runtimeName

// Warm up both, then alternate rounds (alternating which goes first) and keep the best of each.
await time(handWritten)
await pipeline()
let bestLoop = Infinity
let bestPipeline = Infinity
let bestEndToEnd = Infinity
for (let r = 0; r < rounds; r++) {
  const runLoop = () => time(handWritten)
  const runPipeline = async (): Promise<[number, number, number]> => {
    const start = performance.now()
    const [distinct, processing] = await pipeline()
    return [performance.now() - start, processing, distinct]
  }
  let loop: [number, number]
  let pipe: [number, number, number]
  if (r % 2 === 0) {
    loop = await runLoop()
    pipe = await runPipeline()
  } else {
    pipe = await runPipeline()
    loop = await runLoop()
  }
  if (loop[1] !== pipe[2]) {
    throw new Error(`Results differ: hand-written ${loop[1]} distinct words, pipeline ${pipe[2]}`)
  }
  bestLoop = Math.min(bestLoop, loop[0])
  bestEndToEnd = Math.min(bestEndToEnd, pipe[0])
  bestPipeline = Math.min(bestPipeline, pipe[1])
}
const rate = (ms: number) => Math.round(totalWords / (ms / 1000)).toLocaleString("en-US")
console.log(
  `word_count on ${runtime}: ${totalWords.toLocaleString("en-US")} words in ${numBatches} batches, best of ${rounds}`,
)
console.log(`  hand-written loop          : ${bestLoop.toFixed(1)} ms  (${rate(bestLoop)} words/s)`)
console.log(`  effect-dstream, batches    : ${bestPipeline.toFixed(1)} ms  (${rate(bestPipeline)} words/s)`)
console.log(`  effect-dstream, end to end : ${bestEndToEnd.toFixed(1)} ms  (context start and stop included)`)
console.log(`  ratio (pipeline batch throughput / loop throughput): ${(bestLoop / bestPipeline).toFixed(2)}`)
console.log(`  ratio, end to end: ${(bestLoop / bestEndToEnd).toFixed(2)}`)
