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
 *   (optional: WORDS=4000000 SMALL_WORDS=200000 BATCHES=20 ROUNDS=7)
 */
import process from "node:process"
import { Effect, Exit, Scope } from "effect"
import { Runtime, type StreamingContext, StreamingUI, Testing } from "../mod.ts"
import { Collector } from "../lib/_internal/ui/collector.ts"
import { runtimeName } from "./_runtime.ts"

const totalWords = Number(process.env.WORDS ?? 2_000_000)
const smallWords = Number(process.env.SMALL_WORDS ?? 200_000)
const numBatches = Number(process.env.BATCHES ?? 20)
const rounds = Number(process.env.ROUNDS ?? 7)
const wordsPerLine = 10
const vocabulary = Array.from({ length: 5000 }, (_, i) => `w${(i * 7919) % 100_003}`)

/** Deterministic input: numBatches batches of lines, `words` words in all. */
const makeBatches = (words: number): Array<Array<string>> => {
  let seed = 42
  const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648)
  const out: Array<Array<string>> = []
  for (let b = 0; b < numBatches; b++) {
    const lines: Array<string> = []
    for (let l = 0; l < words / numBatches / wordsPerLine; l++) {
      const line: Array<string> = []
      for (let w = 0; w < wordsPerLine; w++) line.push(vocabulary[next() % vocabulary.length])
      lines.push(line.join(" "))
    }
    out.push(lines)
  }
  return out
}
let batches = makeBatches(totalWords)

/** The baseline: split + Map count per batch. */
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

// The pipeline's three lambdas, shared by the pipeline and the loop that calls them.
const splitLine = (line: string): Array<string> => line.split(" ")
const pairOf = (word: string): readonly [string, number] => [word, 1]
const add = (a: number, b: number): number => a + b

/**
 * The hand-written loop calling the pipeline's three lambdas (split, `[word, 1]`, `+`) as the
 * pipeline does: what is left between it and the pipeline is the engine's.
 */
const handWithLambdas = (): number => {
  let distinct = 0
  for (const batch of batches) {
    const counts = new Map<string, number>()
    for (const line of batch) {
      const words = splitLine(line)
      for (let i = 0; i < words.length; i++) {
        const kv = pairOf(words[i])
        const c = counts.get(kv[0])
        counts.set(kv[0], c === undefined ? kv[1] : add(c, kv[1]))
      }
    }
    distinct += counts.size
  }
  return distinct
}

/**
 * The fastest plain-JavaScript word count we know: one charCode scan per line hashing each word
 * as it goes (FNV-1a) into an open-addressing table that compares characters in place, so no
 * substring is made except for a word's first occurrence, and no array of words at all.
 */
const charCodeScan = (): number => {
  let distinct = 0
  let capacity = 1 << 14
  let keys: Array<string | undefined> = new Array(capacity)
  let hashes = new Int32Array(capacity)
  let counts = new Int32Array(capacity)
  for (const batch of batches) {
    keys.fill(undefined)
    counts.fill(0)
    let size = 0
    for (let l = 0; l < batch.length; l++) {
      const line = batch[l]
      const n = line.length
      let i = 0
      while (i < n) {
        const start = i
        let h = 0x811c9dc5
        let c: number
        while (i < n && (c = line.charCodeAt(i)) !== 32) {
          h = Math.imul(h ^ c, 0x01000193)
          i++
        }
        const len = i - start
        i++ // the space
        if (len === 0) continue
        let mask = capacity - 1
        let slot = h & mask
        while (true) {
          const key = keys[slot]
          if (key === undefined) {
            if (2 * (size + 1) > capacity) {
              // grow and rehash, then insert
              const oldKeys = keys, oldHashes = hashes, oldCounts = counts
              capacity *= 2
              mask = capacity - 1
              keys = new Array(capacity)
              hashes = new Int32Array(capacity)
              counts = new Int32Array(capacity)
              for (let j = 0; j < oldKeys.length; j++) {
                const k = oldKeys[j]
                if (k === undefined) continue
                let s = oldHashes[j] & mask
                while (keys[s] !== undefined) s = (s + 1) & mask
                keys[s] = k
                hashes[s] = oldHashes[j]
                counts[s] = oldCounts[j]
              }
              slot = h & mask
              while (keys[slot] !== undefined) slot = (slot + 1) & mask
            }
            keys[slot] = line.slice(start, start + len)
            hashes[slot] = h
            counts[slot] = 1
            size++
            break
          }
          if (hashes[slot] === h && key.length === len) {
            let j = 0
            while (j < len && key.charCodeAt(j) === line.charCodeAt(start + j)) j++
            if (j === len) {
              counts[slot]++
              break
            }
          }
          slot = (slot + 1) & mask
        }
      }
    }
    distinct += size
  }
  return distinct
}

/** Where the pipeline's run went outside the batches (performance.now() marks). */
interface Marks {
  /** When the context published StreamingStarted. */
  started: number
  /** When the last batch completed. */
  lastCompleted: number
}

/**
 * Runs the pipeline, with the live UI attached when `withUI`; returns [distinct words summed
 * over batches, summed batch processing ms, ms spent in the UI's listeners]; `marks` receives
 * when the context started and when its last batch completed.
 */
const pipeline = async (withUI = false, marks?: Marks): Promise<[number, number, number]> => {
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
          else if (e._tag === "BatchCompleted") {
            const now = performance.now()
            processing += now - batchStart
            if (marks !== undefined) marks.lastCompleted = now
          } else if (e._tag === "StreamingStarted" && marks !== undefined) marks.started = performance.now()
        })
        const counts = ssc.queueStream(batches.slice())
          .flatMap(splitLine)
          .mapToPair(pairOf)
          .reduceByKey(add)
        counts.foreachBatch((batch) => {
          distinct += batch.length
        })
        // nothing collected: Testing.run would deep-copy every output batch of a returned stream
        if (!withUI) return {}
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
            return {}
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

const sorted = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)
const median = (xs: ReadonlyArray<number>) => sorted(xs)[Math.floor(xs.length / 2)]
/** `median (min–max)` of per-round figures. */
const spread = (xs: ReadonlyArray<number>, digits = 2) =>
  `${median(xs).toFixed(digits)} (${sorted(xs)[0].toFixed(digits)}–${sorted(xs)[xs.length - 1].toFixed(digits)})`
const rate = (words: number, ms: number) => Math.round(words / (ms / 1000)).toLocaleString("en-US")

interface Round {
  readonly loop: number
  readonly lambdas: number
  readonly scan: number
  /** Summed batch processing time. */
  readonly batches: number
  /** Context creation, start, batches and stop. */
  readonly endToEnd: number
  /** From the run's start to StreamingStarted (creating and starting the context). */
  readonly start: number
  /** From the last BatchCompleted to the run's end (stopping the context). */
  readonly stop: number
  readonly ui?: { readonly batches: number; readonly share: number } | undefined
}

/**
 * Rounds at one input size, alternating which side goes first; every round checks that all
 * sides found the same distinct words.
 */
const measure = async (words: number, withUI: boolean): Promise<Array<Round>> => {
  batches = makeBatches(words)
  // warm-up
  await time(handWritten)
  await time(handWithLambdas)
  await time(charCodeScan)
  await pipeline()
  if (withUI) await pipeline(true)
  const out: Array<Round> = []
  for (let r = 0; r < rounds; r++) {
    const loops = async () => {
      const loop = await time(handWritten)
      const lambdas = await time(handWithLambdas)
      const scan = await time(charCodeScan)
      return { loop, lambdas, scan }
    }
    const marks: Marks = { started: 0, lastCompleted: 0 }
    let phases: [number, number] = [0, 0]
    const runPipeline = async (ui: boolean): Promise<[number, number, number, number]> => {
      const start = performance.now()
      const [distinct, processing, uiMillis] = await pipeline(ui, ui ? undefined : marks)
      const end = performance.now()
      if (!ui) phases = [marks.started - start, end - marks.lastCompleted]
      return [end - start, processing, distinct, uiMillis]
    }
    let l: Awaited<ReturnType<typeof loops>>
    let pipe: [number, number, number, number]
    let ui: [number, number, number, number] | undefined
    if (r % 2 === 0) {
      l = await loops()
      pipe = await runPipeline(false)
      if (withUI) ui = await runPipeline(true)
    } else {
      if (withUI) ui = await runPipeline(true)
      pipe = await runPipeline(false)
      l = await loops()
    }
    for (const [name, found] of [["with lambdas", l.lambdas[1]], ["charCode scan", l.scan[1]], ["pipeline", pipe[2]]]) {
      if (found !== l.loop[1]) {
        throw new Error(`Results differ: hand-written ${l.loop[1]} distinct words, ${name} ${found}`)
      }
    }
    if (ui !== undefined && ui[2] !== pipe[2]) {
      throw new Error(`Results differ: with the UI ${ui[2]} distinct words, without ${pipe[2]}`)
    }
    out.push({
      loop: l.loop[0],
      lambdas: l.lambdas[0],
      scan: l.scan[0],
      batches: pipe[1],
      endToEnd: pipe[0],
      start: phases[0],
      stop: phases[1],
      ui: ui === undefined ? undefined : { batches: ui[1], share: ui[3] / ui[1] },
    })
  }
  return out
}

const report = (words: number, rs: ReadonlyArray<Round>) => {
  const m = (f: (r: Round) => number) => median(rs.map(f))
  const n = words.toLocaleString("en-US")
  console.log(
    `word_count on ${runtimeName}: ${n} words in ${numBatches} batches; median of ${rounds} alternating rounds (range)`,
  )
  console.log(
    `  hand-written loop          : ${m((r) => r.loop).toFixed(1)} ms  (${rate(words, m((r) => r.loop))} words/s)`,
  )
  console.log(
    `  effect-dstream, batches    : ${m((r) => r.batches).toFixed(1)} ms  (${
      rate(words, m((r) => r.batches))
    } words/s)`,
  )
  console.log(`  effect-dstream, end to end : ${m((r) => r.endToEnd).toFixed(1)} ms  (context start and stop included)`)
  const between = (r: Round) => (r.endToEnd - r.batches - r.start - r.stop) / numBatches
  console.log(
    `  outside the batches        : creating and starting the context ${m((r) => r.start).toFixed(2)} ms, ` +
      `stopping it ${m((r) => r.stop).toFixed(2)} ms, between batches ${
        (m(between) * 1000).toFixed(0)
      } µs per batch (the batch clock under TestClock, cutting and handing over the batch)`,
  )
  console.log(`  ratio, batches (loop time / pipeline time)   : ${spread(rs.map((r) => r.loop / r.batches))}`)
  console.log(`  ratio, whole run (context start and stop in) : ${spread(rs.map((r) => r.loop / r.endToEnd))}`)
  console.log(
    `  hand loop calling the pipeline's three lambdas: ${m((r) => r.lambdas).toFixed(1)} ms; ` +
      `loop / it ${spread(rs.map((r) => r.loop / r.lambdas))} (the lambdas' own cost), ` +
      `it / pipeline's whole run ${spread(rs.map((r) => r.lambdas / r.endToEnd))} (the engine's)`,
  )
  console.log(
    `  charCode scan into a hash table (no split, no substrings): ${m((r) => r.scan).toFixed(1)} ms ` +
      `(${rate(words, m((r) => r.scan))} words/s); hand loop / it ${spread(rs.map((r) => r.scan / r.loop))}`,
  )
}

const big = await measure(totalWords, true)
report(totalWords, big)
const uiRounds = big.filter((r) => r.ui !== undefined)
const snapshot = snapshotMillis(1000)
console.log(
  `  live UI: its listeners take ${(median(uiRounds.map((r) => r.ui!.share)) * 100).toFixed(2)} % of the batches' ` +
    `processing time; throughput with / without it: ${spread(uiRounds.map((r) => r.batches / r.ui!.batches))}`,
)
console.log(
  `  live UI: one /api/snapshot with 1000 retained batches takes ${snapshot.toFixed(2)} ms ` +
    `(${(snapshot / 10).toFixed(2)} % of a core at the page's one poll per second)`,
)
if (smallWords > 0) report(smallWords, await measure(smallWords, false))
