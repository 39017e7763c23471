/**
 * Peers (issue 12, target 7): the word-count workload of bench/word_count.ts (2 M words in 20
 * batches of lines, a count per word per batch) written in other stream libraries, next to the
 * hand-written loop and effect-dstream, in the same process:
 *
 * - hand loop: `split` + a `Map` count per batch (the baseline every ratio is against);
 * - effect-dstream: queueStream → flatMap → mapToPair → reduceByKey → foreachBatch, the whole
 *   run (context creation, start and stop included);
 * - RxJS: lines → `bufferCount(lines per batch)` → a count per buffer (batched, as a DStream
 *   batch), and per word: `mergeMap(split)` → `map([word, 1])` → `bufferCount(words per batch)`
 *   → a count per buffer;
 * - Effect `Stream`: lines → `Stream.grouped(lines per batch)` → a count per group (batched), and
 *   per word: `flatMap(split)` → `map([word, 1])` → `grouped(words per batch)` → a count;
 * - `node:stream`: `Readable.from(lines)` → a `Writable` (object mode) counting and cutting a batch
 *   every `lines per batch` lines (batched), and per word: a `Transform` pushing each word → a
 *   `Writable` counting `[word, 1]` pairs, cutting a batch every `words per batch` words.
 *
 * Every contender must find the same number of distinct words per batch (summed over batches).
 * Rounds alternate the order (forward, then reversed); each contender's figure is the median of
 * its per-round ratios to the hand loop of the same round (throughput: loop ms / contender ms),
 * with the range, and the same ratio of process CPU time (less disturbed by other processes on
 * a shared machine; it includes the runtime's GC threads).
 *
 *   deno run -A bench/peers.ts     bun bench/peers.ts     (optional: WORDS=2000000 BATCHES=20 ROUNDS=7)
 */
import process from "node:process"
import { Readable, Transform, Writable } from "node:stream"
import { pipeline as pipe } from "node:stream/promises"
import { Effect, Stream } from "effect"
import { bufferCount, from, lastValueFrom, map, mergeMap, reduce } from "rxjs"
import { type StreamingContext, Testing } from "../mod.ts"
import { runtimeName } from "./_runtime.ts"

const totalWords = Number(process.env.WORDS ?? 2_000_000)
const numBatches = Number(process.env.BATCHES ?? 20)
const rounds = Number(process.env.ROUNDS ?? 7)
const wordsPerLine = 10
const linesPerBatch = totalWords / numBatches / wordsPerLine
const wordsPerBatch = linesPerBatch * wordsPerLine
const vocabulary = Array.from({ length: 5000 }, (_, i) => `w${(i * 7919) % 100_003}`)

// The same deterministic input as bench/word_count.ts.
let seed = 42
const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648)
const batches: Array<Array<string>> = []
for (let b = 0; b < numBatches; b++) {
  const lines: Array<string> = []
  for (let l = 0; l < linesPerBatch; l++) {
    const words: Array<string> = []
    for (let w = 0; w < wordsPerLine; w++) words.push(vocabulary[next() % vocabulary.length])
    lines.push(words.join(" "))
  }
  batches.push(lines)
}
const allLines = batches.flat()

/** Distinct words of a batch of lines (a `Map` count, as the hand loop). */
const countLines = (lines: ReadonlyArray<string>): number => {
  const counts = new Map<string, number>()
  for (const line of lines) {
    for (const word of line.split(" ")) counts.set(word, (counts.get(word) ?? 0) + 1)
  }
  return counts.size
}

/** Distinct words of a batch of `[word, 1]` pairs. */
const countPairs = (pairs: ReadonlyArray<readonly [string, number]>): number => {
  const counts = new Map<string, number>()
  for (const [word, n] of pairs) counts.set(word, (counts.get(word) ?? 0) + n)
  return counts.size
}

const handLoop = (): number => {
  let distinct = 0
  for (const batch of batches) distinct += countLines(batch)
  return distinct
}

const dstream = async (): Promise<number> => {
  let distinct = 0
  await Effect.runPromise(
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
  )
  return distinct
}

const rxBatched = (): Promise<number> =>
  lastValueFrom(from(allLines).pipe(bufferCount(linesPerBatch), map(countLines), reduce((a, n) => a + n, 0)))

const rxPerWord = (): Promise<number> =>
  lastValueFrom(
    from(allLines).pipe(
      mergeMap((line) => line.split(" ")),
      map((word) => [word, 1] as const),
      bufferCount(wordsPerBatch),
      map(countPairs),
      reduce((a, n) => a + n, 0),
    ),
  )

const effectBatched = (): Promise<number> =>
  Effect.runPromise(
    Stream.fromArray(allLines).pipe(
      Stream.grouped(linesPerBatch),
      Stream.map(countLines),
      Stream.runFold(() => 0, (a, n) => a + n),
    ),
  )

const effectPerWord = (): Promise<number> =>
  Effect.runPromise(
    Stream.fromArray(allLines).pipe(
      Stream.flatMap((line) => Stream.fromArray(line.split(" "))),
      Stream.map((word) => [word, 1] as const),
      Stream.grouped(wordsPerBatch),
      Stream.map(countPairs),
      Stream.runFold(() => 0, (a, n) => a + n),
    ),
  )

const nodeBatched = async (): Promise<number> => {
  let distinct = 0
  let counts = new Map<string, number>()
  let lines = 0
  await pipe(
    Readable.from(allLines),
    new Writable({
      objectMode: true,
      write(line: string, _enc, done) {
        for (const word of line.split(" ")) counts.set(word, (counts.get(word) ?? 0) + 1)
        if (++lines === linesPerBatch) {
          distinct += counts.size
          counts = new Map()
          lines = 0
        }
        done()
      },
      final(done) {
        if (lines > 0) distinct += counts.size
        done()
      },
    }),
  )
  return distinct
}

const nodePerWord = async (): Promise<number> => {
  let distinct = 0
  let counts = new Map<string, number>()
  let words = 0
  await pipe(
    Readable.from(allLines),
    new Transform({
      objectMode: true,
      transform(line: string, _enc, done) {
        for (const word of line.split(" ")) this.push([word, 1])
        done()
      },
    }),
    new Writable({
      objectMode: true,
      write(pair: readonly [string, number], _enc, done) {
        counts.set(pair[0], (counts.get(pair[0]) ?? 0) + pair[1])
        if (++words === wordsPerBatch) {
          distinct += counts.size
          counts = new Map()
          words = 0
        }
        done()
      },
      final(done) {
        if (words > 0) distinct += counts.size
        done()
      },
    }),
  )
  return distinct
}

const contenders: ReadonlyArray<readonly [string, () => number | Promise<number>]> = [
  ["hand loop", handLoop],
  ["effect-dstream (whole run)", dstream],
  ["RxJS bufferCount (batched)", rxBatched],
  ["Effect Stream.grouped (batched)", effectBatched],
  ["node:stream (batched)", nodeBatched],
  ["RxJS per word", rxPerWord],
  ["Effect Stream per word", effectPerWord],
  ["node:stream per word", nodePerWord],
]

/** Wall-clock ms, CPU ms of the process (user + system) and the result of `f`. */
const time = async (f: () => number | Promise<number>): Promise<[number, number, number]> => {
  const cpu = process.cpuUsage()
  const start = performance.now()
  const result = await f()
  const wall = performance.now() - start
  const used = process.cpuUsage(cpu)
  return [wall, (used.user + used.system) / 1000, result]
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

// Warm-up: each once, checking they agree.
const expected = handLoop()
for (const [name, f] of contenders) {
  const got = await f()
  if (got !== expected) {
    throw new Error(`Results differ: ${name} found ${got} distinct words, the hand loop ${expected}`)
  }
}
const perContender = () => new Map<string, Array<number>>(contenders.map(([name]) => [name, []]))
const millis = perContender()
const ratios = perContender()
const cpuRatios = perContender()
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? contenders : [...contenders].reverse()
  const round = new Map<string, readonly [number, number]>()
  for (const [name, f] of order) {
    const [ms, cpu, got] = await time(f)
    if (got !== expected) {
      throw new Error(`Results differ: ${name} found ${got} distinct words, the hand loop ${expected}`)
    }
    round.set(name, [ms, cpu])
    millis.get(name)!.push(ms)
  }
  const [loop, loopCpu] = round.get("hand loop")!
  for (const [name, [ms, cpu]] of round) {
    ratios.get(name)!.push(loop / ms)
    cpuRatios.get(name)!.push(loopCpu / cpu)
  }
}
console.log(
  `peers on ${runtimeName}: ${
    totalWords.toLocaleString("en-US")
  } words in ${numBatches} batches, ${rounds} alternating rounds; ` +
    `ratio = hand loop time / contender time in the same round (median, range); the same with process CPU time (median)`,
)
for (const [name] of contenders) {
  const ms = millis.get(name)!
  const rs = ratios.get(name)!
  console.log(
    `  ${name.padEnd(32)} ${median(ms).toFixed(1).padStart(7)} ms (${Math.min(...ms).toFixed(0)}–${
      Math.max(...ms).toFixed(0)
    })  ratio ${median(rs).toFixed(2)} (${Math.min(...rs).toFixed(2)}–${Math.max(...rs).toFixed(2)})  CPU-time ratio ${
      median(cpuRatios.get(name)!).toFixed(2)
    }`,
  )
}
