/**
 * Word-count throughput: queueStream → flatMap → mapToPair → reduceByKey → foreachBatch,
 * against a hand-written loop (split + Map count per batch) over the same batches, in the
 * same run. Batches are driven by TestClock, so the figure is processing cost, not waiting.
 * The pipeline's time is the wall-clock time from each batch's BatchStarted event to its
 * BatchCompleted event (the engine's whole per-batch work: job generation, the operators,
 * the output, events, forgetting old batches), summed over the batches; the end-to-end time,
 * which adds creating, starting and stopping the context once, is printed as well.
 *
 * The live UI's cost, in the same run: a third variant runs the pipeline with StreamingUI
 * attached (its listener, its metrics, a server on a free port and a client fetching
 * /api/snapshot every second as an open page does). Its throughput is printed, but on a
 * shared machine the difference is below the noise, so the cost is also measured directly:
 * the time spent in the UI's listeners (timed by listeners registered just before and just
 * after it) over the batches' processing time, and the time one /api/snapshot answer takes to
 * build with 1000 retained batches (the page polls it once a second).
 *
 *   deno run -A bench/word_count.ts     bun bench/word_count.ts
 *   (optional: WORDS=4000000 BATCHES=20 ROUNDS=5)
 */
import process from "node:process"
import { Effect, Exit, Scope } from "effect"
import { Runtime, type StreamingContext, StreamingUI, Testing } from "../mod.ts"
import { Collector } from "../lib/_internal/ui/collector.ts"
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

/**
 * Runs the pipeline, with the live UI attached when `withUI`; returns [distinct words summed
 * over batches, summed batch processing ms, ms spent in the UI's listeners].
 */
const pipeline = async (withUI = false): Promise<[number, number, number]> => {
  let distinct = 0
  let processing = 0
  let batchStart = 0
  let uiMark = 0
  let uiMillis = 0
  const scope = Effect.runSync(Scope.make())
  let poller: ReturnType<typeof setInterval> | undefined
  try {
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
        if (!withUI) return counts
        ssc.addStreamingListener(() => {
          uiMark = performance.now()
        })
        return StreamingUI.serve(ssc, { port: 0 }).pipe(
          Scope.provide(scope),
          Effect.provide(Runtime.layer),
          Effect.map((ui) => {
            ssc.addStreamingListener(() => {
              uiMillis += performance.now() - uiMark
            })
            poller = setInterval(() => {
              fetch(`${ui.url}api/snapshot`).then((r) => r.text()).catch(() => undefined)
            }, 1000)
            return counts
          }),
          Effect.orDie,
        )
      }, { numBatches }),
    )
  } finally {
    if (poller !== undefined) clearInterval(poller)
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
  return [distinct, processing, uiMillis]
}

/** Milliseconds to build one /api/snapshot answer with `retained` completed batches. */
const snapshotMillis = (retained: number): number => {
  const collector = new Collector(undefined, 1000, retained, () => undefined)
  for (let i = 1; i <= retained; i++) {
    const t = i * 1000
    const inputs = { 0: { streamId: 0, name: "socket", numRecords: 1000 + i } }
    const info = {
      batchTime: t,
      streamIdToInputInfo: inputs,
      submissionTime: t,
      processingStartTime: t + 1,
      processingEndTime: t + 20,
      outputOperationInfos: [
        { batchTime: t, id: 0, name: "print", startTime: t + 1, endTime: t + 20, failureReason: undefined },
      ],
      schedulingDelay: 1,
      processingDelay: 19,
      totalDelay: 20,
      numRecords: 1000 + i,
    }
    collector.onEvent({ _tag: "BatchSubmitted", batchInfo: info })
    collector.onEvent({ _tag: "BatchStarted", batchInfo: info })
    collector.onEvent({ _tag: "BatchCompleted", batchInfo: info })
  }
  const answer = () =>
    JSON.stringify({
      status: collector.status(retained * 1000),
      timeline: collector.timeline(),
      batches: collector.batches(100),
      receivers: collector.receivers(),
      state: collector.state(),
      kafka: collector.kafka(),
    })
  for (let i = 0; i < 20; i++) answer()
  const n = 100
  const start = performance.now()
  for (let i = 0; i < n; i++) answer()
  return (performance.now() - start) / n
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
await pipeline(true)
let bestLoop = Infinity
let bestPipeline = Infinity
let bestEndToEnd = Infinity
let bestUI = Infinity
const uiShares: Array<number> = []
for (let r = 0; r < rounds; r++) {
  const runLoop = () => time(handWritten)
  const runPipeline = async (withUI = false): Promise<[number, number, number, number]> => {
    const start = performance.now()
    const [distinct, processing, uiMillis] = await pipeline(withUI)
    return [performance.now() - start, processing, distinct, uiMillis]
  }
  let loop: [number, number]
  let pipe: [number, number, number, number]
  let ui: [number, number, number, number]
  if (r % 2 === 0) {
    loop = await runLoop()
    pipe = await runPipeline()
    ui = await runPipeline(true)
  } else {
    ui = await runPipeline(true)
    pipe = await runPipeline()
    loop = await runLoop()
  }
  if (ui[2] !== pipe[2]) throw new Error(`Results differ: with the UI ${ui[2]} distinct words, without ${pipe[2]}`)
  bestUI = Math.min(bestUI, ui[1])
  uiShares.push(ui[3] / ui[1])
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
console.log(`  with the live UI, batches  : ${bestUI.toFixed(1)} ms  (${rate(bestUI)} words/s)`)
console.log(`  ratio (pipeline batch throughput / loop throughput): ${(bestLoop / bestPipeline).toFixed(2)}`)
console.log(`  ratio, end to end: ${(bestLoop / bestEndToEnd).toFixed(2)}`)
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const snapshot = snapshotMillis(1000)
console.log(
  `  live UI: its listeners take ${(median(uiShares) * 100).toFixed(2)} % of the batches' processing time ` +
    `(median of ${rounds}); throughput with / without it: ${(bestPipeline / bestUI).toFixed(2)}`,
)
console.log(
  `  live UI: one /api/snapshot with 1000 retained batches takes ${snapshot.toFixed(2)} ms ` +
    `(${(snapshot / 10).toFixed(2)} % of a core at the page's one poll per second)`,
)
