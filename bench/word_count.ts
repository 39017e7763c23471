/**
 * Word-count throughput: queueStream → flatMap → mapToPair → reduceByKey → foreachBatch,
 * against a hand-written loop (split + Map count per batch) over the same batches, in the
 * same run. Batches are driven by TestClock, so the figure is processing cost, not waiting.
 *
 *   deno run -A bench/word_count.ts     bun bench/word_count.ts
 *   (optional: WORDS=4000000 BATCHES=20 ROUNDS=5)
 */
import process from "node:process"
import { Effect } from "effect"
import { StreamingContext, Testing } from "../mod.ts"

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

const pipeline = (): Promise<number> => {
  let distinct = 0
  return Effect.runPromise(
    Testing.run((ssc: StreamingContext.StreamingContext) => {
      const counts = ssc.queueStream(batches.slice())
        .flatMap((line) => line.split(" "))
        .mapToPair((word) => [word, 1])
        .reduceByKey((a, b) => a + b)
      counts.foreachBatch((batch) => {
        distinct += batch.length
      })
      return counts
    }, { numBatches }),
  ).then(() => distinct)
}

const time = async (f: () => number | Promise<number>): Promise<[number, number]> => {
  const start = performance.now()
  const result = await f()
  return [performance.now() - start, result]
}

const runtime = typeof (globalThis as any).Bun !== "undefined"
  ? `bun ${(globalThis as any).Bun.version}`
  : typeof (globalThis as any).Deno !== "undefined"
  ? `deno ${(globalThis as any).Deno.version.deno}`
  : `node ${process.version}`

// Warm up both, then alternate rounds and keep the best of each.
await time(handWritten)
await time(pipeline)
let bestLoop = Infinity
let bestPipeline = Infinity
for (let r = 0; r < rounds; r++) {
  const [loopMs, a] = await time(handWritten)
  const [pipeMs, b] = await time(pipeline)
  if (a !== b) throw new Error(`Results differ: hand-written ${a} distinct words, pipeline ${b}`)
  bestLoop = Math.min(bestLoop, loopMs)
  bestPipeline = Math.min(bestPipeline, pipeMs)
}
const rate = (ms: number) => Math.round(totalWords / (ms / 1000)).toLocaleString("en-US")
console.log(`word_count on ${runtime}: ${totalWords.toLocaleString("en-US")} words in ${numBatches} batches, best of ${rounds}`)
console.log(`  hand-written loop : ${bestLoop.toFixed(1)} ms  (${rate(bestLoop)} words/s)`)
console.log(`  effect-dstream    : ${bestPipeline.toFixed(1)} ms  (${rate(bestPipeline)} words/s)`)
console.log(`  ratio (pipeline throughput / loop throughput): ${(bestLoop / bestPipeline).toFixed(2)}`)
