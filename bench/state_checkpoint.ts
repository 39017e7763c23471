/**
 * Checkpoints of large keyed state (issue 12): mapWithState with 1 M keys in state and 30 k
 * updates per 1-second batch, checkpointing to a file-system store every 5 batches. Prints, in
 * the same run:
 *
 * 1. the processing time of a checkpoint batch (BatchStarted to BatchCompleted, real time,
 *    which includes capturing the checkpoint) against a normal batch, and the ratio (target ≤ 1.2);
 *    the background writes (encode + durable write) are timed separately. Batches are driven by
 *    TestClock; between batches the bench waits (real time) for the writer to finish, as the
 *    1-second interval does in production.
 * 2. recovery: from `getOrCreate` to a started context with the state restored, reading the
 *    newest checkpoint's chain (format 2), against the same state written in format 1 (all
 *    JSON, as the previous build wrote it) in the same run; target < 300 ms.
 * 3. heap per key after a full GC, the restored state against a plain `Map` of the same keys
 *    and states (target ≤ 1.2×).
 *
 *   deno run -A --v8-flags=--expose-gc bench/state_checkpoint.ts     bun bench/state_checkpoint.ts
 *   (optional: KEYS=1000000 UPDATES=30000 BATCHES=50 FORMAT1=0; UPDATES=150000 makes every
 *   checkpoint after the first a full one: five batches then touch more than half the keys)
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import process from "node:process"
import * as zlib from "node:zlib"
import { Effect, Option } from "effect"
import { TestClock } from "effect/testing"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Checkpoint, type State, StateSpec, StreamingContext, Testing } from "../mod.ts"
import { canCollectGarbage, collectGarbage, runtimeName } from "./_runtime.ts"

const numKeys = Number(process.env.KEYS ?? 1_000_000)
const updatesPerBatch = Number(process.env.UPDATES ?? 30_000)
const numBatches = Number(process.env.BATCHES ?? 50) // a multiple of `every`: nothing to re-run on recovery
const every = 5 // checkpoint interval, in batches
/** FORMAT1=0 skips recovering the same state from format 1 (one JSON string: too big at 10 M keys). */
const format1 = process.env.FORMAT1 !== "0"

const key = (i: number) => `key-${i}`
const makeBatch = (b: number): Array<readonly [string, number]> => {
  let seed = (7 + Math.imul(b, 2_654_435_761)) >>> 0
  const batch: Array<readonly [string, number]> = []
  for (let u = 0; u < updatesPerBatch; u++) {
    seed = (Math.imul(seed, 1_664_525) + 1_013_904_223) >>> 0
    batch.push([key(Math.floor((seed / 4_294_967_296) * numKeys)), 1])
  }
  return batch
}
function* initial(): Generator<readonly [string, number]> {
  for (let i = 0; i < numKeys; i++) yield [key(i), 0]
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const fmt = (ms: number) => `${ms.toFixed(1)} ms`
/**
 * Heap plus the memory of array buffers (checkpoint bytes, restored columns), each counted once:
 * V8 (Deno) reports buffers in `external` only (its `arrayBuffers` reads 0), JavaScriptCore
 * (Bun) already counts them in `heapUsed` (as extra memory) and again in `arrayBuffers`, so the
 * former `heapUsed + arrayBuffers` counted them twice on Bun and not at all on Deno.
 */
const heap = (): number => {
  collectGarbage()
  collectGarbage()
  const m = process.memoryUsage()
  return "Bun" in globalThis ? m.heapUsed : m.heapUsed + m.external
}
const realSleep = (ms: number) => Effect.promise(() => new Promise<void>((r) => setTimeout(r, ms)))

const counting = () =>
  StateSpec.function((_k: string, v: Option.Option<number>, s: State.State<number>) => {
    const n = Option.getOrElse(s.getOption(), () => 0) + Option.getOrElse(v, () => 0)
    s.update(n)
    return n
  })

/** A file-system store that times its writes and notes which checkpoints are full ones. */
const timedStore = (dir: string, writes: Array<number>, fulls: Set<number>) =>
  Effect.map(Checkpoint.makeFileSystem(dir), (inner): Checkpoint.CheckpointStoreShape => ({
    ...inner,
    write: (name, bytes) =>
      Effect.gen(function* () {
        const t0 = performance.now()
        yield* inner.write(name, bytes)
        writes.push(performance.now() - t0)
        const header = yield* Checkpoint.inspect(bytes)
        if (header.previous === undefined) fulls.add(Number(name.slice("checkpoint-".length)))
      }),
  }))

/** Part 1: the batches of a run from scratch, checkpointing every `every` batches into `dir`. */
const runBatches = (dir: string) =>
  Effect.gen(function* () {
    const writes: Array<number> = []
    const fulls = new Set<number>()
    const store = yield* timedStore(dir, writes, fulls)
    return yield* Effect.provideService(runWith(dir), Checkpoint.CheckpointStore, store).pipe(
      Effect.map((times) => ({ times, writes, fulls })),
    )
  })

const runWith = (dir: string) =>
  Effect.gen(function* () {
    const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
    ssc.checkpoint(dir)
    const batchNumbers = Array.from({ length: numBatches }, (_, b) => [b])
    Testing.input(ssc, batchNumbers).mapPartitions((bs) => makeBatch(bs[0]))
      .mapWithState(counting().initialState(initial())).checkpoint(`${every} seconds`)
      .foreachBatch(() => {})
    // The scheduler's processing time of each batch (BatchStarted to BatchCompleted, which
    // includes capturing the checkpoint), in real time: TestClock's would read 0.
    const times: Array<number> = []
    let started = 0
    ssc.addStreamingListener((e) => {
      if (e._tag === "BatchStarted") started = performance.now()
      else if (e._tag === "BatchCompleted") times.push(performance.now() - started)
    })
    yield* ssc.start
    for (let k = 1; k <= numBatches; k++) {
      yield* TestClock.adjust(1000)
      yield* ssc.awaitBatch(k * 1000)
      yield* realSleep(k % every === 0 ? 400 : 20) // the rest of the interval: the writer runs
    }
    yield* ssc.stop()
    return times
  }).pipe(Effect.provide(TestClock.layer()))

/** Part 2: restart from `dir`: getOrCreate + start, until the state is restored. */
const recover = (dir: string, startAt: number) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(startAt)
    const t0 = performance.now()
    const ssc = yield* StreamingContext.getOrCreate(dir, (ssc) => {
      Testing.input(ssc, [[0]]).mapPartitions((bs) => makeBatch(bs[0]))
        .mapWithState(counting()).checkpoint(`${every} seconds`)
        .foreachBatch(() => {})
    })
    yield* ssc.start
    const ms = performance.now() - t0
    const heapWithState = heap()
    // The first batch after the restart (on the restored state, 30 k updates), timed as part 1's.
    let started = 0
    let firstBatch = 0
    ssc.addStreamingListener((e) => {
      if (e._tag === "BatchStarted") started = performance.now()
      else if (e._tag === "BatchCompleted") firstBatch = performance.now() - started
    })
    yield* TestClock.adjust(500)
    yield* ssc.awaitBatch(startAt + 500)
    yield* ssc.stop()
    return { ms, heapWithState, firstBatch }
  }).pipe(Effect.provide(TestClock.layer()))

/** The same state as a format-1 checkpoint (all JSON), as the previous build wrote it. */
const writeFormat1 = (dir: string, time: number) => {
  const entries: Array<readonly [string, number, number]> = []
  for (let i = 0; i < numKeys; i++) entries.push([key(i), i % 7, time])
  const payload = {
    time,
    zeroTime: 0,
    batchMillis: 1000,
    nodes: { "MapWithStateDStream#0": { initialized: true, lastTime: time, entries } },
  }
  const body = new TextEncoder().encode(JSON.stringify(payload))
  const header = new TextEncoder().encode(
    `EFFECT-DSTREAM-CHECKPOINT 1 ${body.length} ${zlib.crc32(body).toString(16)}\n`,
  )
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(nodePath.join(dir, Checkpoint.fileName(time)), Buffer.concat([header, body]))
}

const program = Effect.gen(function* () {
  console.log(
    `${runtimeName}: ${numKeys} keys in state, ${updatesPerBatch} updates per batch, ${numBatches} batches, a checkpoint every ${every} batches${
      canCollectGarbage ? "" : " (no forced GC: heap figures are rough; deno needs --v8-flags=--expose-gc)"
    }`,
  )
  const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-bench-ckpt-"))
  try {
    // 1. checkpoint batches against normal ones
    const dir = nodePath.join(root, "run")
    const { fulls, times, writes } = yield* runBatches(dir)
    const checkpointBatches = times.map((t, i) => [i + 1, t] as const).filter(([b]) => b % every === 0)
    const deltaBatches = checkpointBatches.filter(([b]) => !fulls.has(b * 1000)).map(([, t]) => t)
    // The first checkpoint batch is left out: it comes right after the initial state's load.
    const fullBatches = checkpointBatches.filter(([b]) => fulls.has(b * 1000) && b > every)
    const normal = times.filter((_, i) => i > 0 && (i + 1) % every !== 0)
    const normalMedian = median(normal)
    const summary = (name: string, xs: ReadonlyArray<number>) =>
      xs.length === 0
        ? `no ${name} checkpoint batch`
        : `${name} checkpoint batch (${xs.length}): median ${fmt(median(xs))}, max ${fmt(Math.max(...xs))}; ratio ${
          (median(xs) / normalMedian).toFixed(2)
        } (target ≤ 1.2)`
    console.log(`normal batch: median ${fmt(normalMedian)}; ${summary("delta", deltaBatches)}`)
    console.log(
      `${
        summary("full", fullBatches.map(([, t]) => t))
      } (compactions, all ${numKeys} keys; the first, after the initial load: ${
        fmt(checkpointBatches[0][1])
      }); background writes: ${writes.map((w) => w.toFixed(0)).join(", ")} ms`,
    )
    console.log(`all batches: ${times.map((t) => t.toFixed(0)).join(" ")} ms`)
    const sizes = fs.readdirSync(dir).filter((n) => n.startsWith("checkpoint-")).map((n) =>
      `${n} ${(fs.statSync(nodePath.join(dir, n)).size / 1024 / 1024).toFixed(1)} MB`
    )
    console.log(`files: ${sizes.join(", ")}`)

    // 2. recovery, format 2 (the chain just written) against format 1 of the same size
    const heapBefore = heap()
    const v2 = yield* recover(dir, numBatches * 1000 + 500)
    const dir1 = nodePath.join(root, "format1")
    if (format1) writeFormat1(dir1, 5000)
    const v1 = format1 ? (yield* recover(dir1, 5500)).ms : undefined
    // Baseline: the floor of any restore into a hash table, a plain Map built from as many
    // freshly made string keys (restoring makes its keys too), and its heap.
    const base = heap()
    const t0 = performance.now()
    const plain = new Map<string, number>()
    for (let i = 0; i < numKeys; i++) plain.set(key(i), i % 7)
    const mapMs = performance.now() - t0
    console.log(
      `recovery of ${numKeys} keys, getOrCreate to started: format 2 ${
        fmt(v2.ms)
      } (target < 300 ms); baseline, a plain Map of as many fresh keys: ${fmt(mapMs)}, ratio ${
        (v2.ms / mapMs).toFixed(2)
      }${v1 === undefined ? "" : `; format 1 (JSON, the previous build): ${fmt(v1)}`}`,
    )
    console.log(
      `first batch after the restart: ${fmt(v2.firstBatch)} (a normal batch of part 1: ${fmt(normalMedian)})`,
    )

    // 3. heap per key: the restored state against a plain Map of the same keys and states
    const plainBytes = heap() - base
    const stateBytes = v2.heapWithState - heapBefore
    console.log(
      `heap (+ array buffers) per key after a full GC: mapWithState ${(stateBytes / numKeys).toFixed(0)} B, plain Map ${
        (plainBytes / numKeys).toFixed(0)
      } B; ratio ${(stateBytes / plainBytes).toFixed(2)} (target ≤ 1.2)`,
    )
    if (plain.size !== numKeys) throw new Error("unreachable")
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})

Effect.runPromise(program.pipe(Effect.provide(NodeServices.layer))).catch((e) => {
  console.error(e)
  process.exit(1)
})
