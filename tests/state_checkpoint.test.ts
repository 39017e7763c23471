/**
 * Checkpoint stores and recovery: one conformance suite run against the memory and the
 * file-system store, the framing (checksum, newest kept, fallback on a corrupt newest, format
 * version), and getOrCreate recovery under TestClock (re-running pending and missed batches,
 * Schema-encoded state surviving an upgrade, clear errors on mismatch). Spark's CheckpointSuite
 * "recovery with updateStateByKey" / MapWithStateSuite "driver failure recovery" cases: the
 * batches after recovery equal those of an uninterrupted run.
 */
import { after, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { Effect, Option, Schema } from "effect"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Checkpoint, type State, StateSpec, StreamingContext, Testing, ValidationError } from "../mod.ts"
import { failureOf, run, runExit } from "./_support/run.ts"
import { type Build, runFrom, withStore } from "./_support/recovery.ts"

const tmpRoot = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-ckpt-"))
after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }))
let dirCount = 0
const freshDir = () => nodePath.join(tmpRoot, `d${dirCount++}`)

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b))

const stores: ReadonlyArray<
  readonly [string, () => Effect.Effect<Checkpoint.CheckpointStoreShape, Checkpoint.CheckpointError>]
> = [
  ["memory", () => Checkpoint.makeMemory()],
  ["file system", () => Checkpoint.makeFileSystem(freshDir()).pipe(Effect.provide(NodeServices.layer))],
]

for (const [name, makeStore] of stores) {
  describe(`CheckpointStore conformance (${name})`, () => {
    it("write then read returns the bytes; a missing name reads as undefined", async () => {
      const store = await run(makeStore())
      await run(store.write("a", bytes("hello")))
      assert.equal(text(await run(store.read("a"))), "hello")
      assert.equal(await run(store.read("missing")), undefined)
    })

    it("write replaces the whole content (atomically), list shows only committed names", async () => {
      const store = await run(makeStore())
      await run(store.write("a", bytes("a much longer first version")))
      await run(store.write("a", bytes("v2")))
      await run(store.write("b", bytes("b")))
      assert.equal(text(await run(store.read("a"))), "v2")
      assert.deepEqual([...(await run(store.list))].sort(), ["a", "b"])
    })

    it("remove deletes a name and tolerates a missing one", async () => {
      const store = await run(makeStore())
      await run(store.write("a", bytes("x")))
      await run(store.remove("a"))
      await run(store.remove("a"))
      assert.deepEqual(await run(store.list), [])
      assert.equal(await run(store.read("a")), undefined)
    })

    it("Checkpoint.write keeps the newest few and readLatest returns the newest", async () => {
      const store = await run(makeStore())
      for (const t of [1000, 2000, 3000, 4000, 5000]) await run(Checkpoint.write(store, t, { t }))
      assert.deepEqual([...(await run(store.list))].sort(), ["checkpoint-3000", "checkpoint-4000", "checkpoint-5000"])
      const latest = await run(Checkpoint.readLatest(store))
      assert.deepEqual(latest, Option.some({ time: 5000, payload: { t: 5000 } }))
    })

    it("readLatest falls back to the previous checkpoint when the newest is truncated or corrupt", async () => {
      const store = await run(makeStore())
      await run(Checkpoint.write(store, 1000, { n: 1 }))
      await run(Checkpoint.write(store, 2000, { n: 2 }))
      await run(Checkpoint.write(store, 3000, { n: 3 }))
      const newest = (await run(store.read("checkpoint-3000")))!
      await run(store.write("checkpoint-3000", newest.subarray(0, newest.length - 3)))
      const flipped = (await run(store.read("checkpoint-2000")))!.slice()
      flipped[flipped.length - 2] ^= 0xff
      await run(store.write("checkpoint-2000", flipped))
      assert.deepEqual(await run(Checkpoint.readLatest(store)), Option.some({ time: 1000, payload: { n: 1 } }))
    })

    it("readLatest fails clearly when every checkpoint is corrupt, and on another format version", async () => {
      const store = await run(makeStore())
      await run(store.write("checkpoint-1000", bytes("garbage")))
      const error = failureOf(await runExit(Checkpoint.readLatest(store)))
      assert.ok(error instanceof Checkpoint.CheckpointError)
      assert.match(error.message, /every checkpoint is corrupt/)

      const other = await run(makeStore())
      await run(other.write("checkpoint-1000", bytes("EFFECT-DSTREAM-CHECKPOINT 99 2 0\n{}")))
      const versionError = failureOf(await runExit(Checkpoint.readLatest(other)))
      assert.ok(versionError instanceof Checkpoint.CheckpointError)
      assert.match(versionError.message, /written in checkpoint format 99, this build reads format 1/)
    })
  })
}

describe("file-system checkpoint store", () => {
  it("a checkpoint directory that cannot be created fails start with a clear CheckpointError (context STOPPED)", async () => {
    const file = nodePath.join(tmpRoot, "not-a-directory")
    fs.writeFileSync(file, "x")
    const dir = nodePath.join(file, "checkpoint")
    const result = await run(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        ssc.checkpoint(dir)
        Testing.input(ssc, [["a"]]).map((w) => [w, 1] as const).updateStateByKey(counting).print()
        const exit = yield* Effect.exit(ssc.start)
        return { exit, state: yield* ssc.state }
      }).pipe(Effect.provide(NodeServices.layer)),
    )
    const error = failureOf(result.exit)
    assert.ok(error instanceof Checkpoint.CheckpointError)
    assert.ok(error.message.startsWith(`Cannot create the checkpoint directory "${dir}"`), error.message)
    assert.equal(result.state, "STOPPED")
  })

  it("writes are temp file + rename: no temp file is left behind", async () => {
    const dir = freshDir()
    const store = await run(Checkpoint.makeFileSystem(dir).pipe(Effect.provide(NodeServices.layer)))
    await run(Checkpoint.write(store, 1000, { a: 1 }))
    assert.deepEqual(fs.readdirSync(dir), ["checkpoint-1000"])
  })
})

// ---- recovery -----------------------------------------------------------------------------------

const counting = (values: ReadonlyArray<number>, state: Option.Option<number>) =>
  Option.some(values.reduce((a, b) => a + b, 0) + Option.getOrElse(state, () => 0))

const input = [["a"], ["a", "b"], ["a", "b", "c"], ["a", "b"], ["a"], ["c"], ["b", "c"], [], ["a"], ["d"], ["d"], []]

const stateful: Build = (ssc) =>
  Testing.input(ssc, input).map((w) => [w, 1] as const).updateStateByKey(counting).checkpoint("2 seconds")

describe("getOrCreate recovery", () => {
  it("recovers updateStateByKey state, re-runs pending and missed batches, and matches an uninterrupted run", async () => {
    const uninterrupted = await run(
      runFrom(stateful, { startAt: 0, numBatches: 12 }).pipe(withStore(await run(Checkpoint.makeMemory()))),
    )
    const store = await run(Checkpoint.makeMemory())
    // First run: batches 1 s … 5 s; checkpoints at 2 s and 4 s; then the process dies.
    const firstRun = await run(runFrom(stateful, { startAt: 0, numBatches: 5 }).pipe(withStore(store)))
    assert.deepEqual(firstRun, uninterrupted.slice(0, 5))
    assert.deepEqual([...(await run(store.list))].sort(), ["checkpoint-2000", "checkpoint-4000"])
    // Back at 7.5 s: batches 5, 6, 7 s (pending at the crash or missed while down) run first.
    const recovered = await run(runFrom(stateful, { startAt: 7500, numBatches: 5 }).pipe(withStore(store)))
    assert.deepEqual(recovered.map(([t]) => t), [5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000])
    assert.deepEqual(recovered, uninterrupted.slice(4))
  })

  it("recovers mapWithState state and its timeouts (MapWithStateSuite: driver failure recovery)", async () => {
    const build: Build = (ssc) =>
      Testing.input(ssc, input).map((w) => [w, 1] as const).mapWithState(
        StateSpec.function((_k: string, v: Option.Option<number>, s: State.State<number>) => {
          if (s.isTimingOut()) return -1
          s.update(Option.getOrElse(s.getOption(), () => 0) + Option.getOrElse(v, () => 0))
          return s.get()
        }).timeout("4 seconds"),
      ).checkpoint("3 seconds").stateSnapshots()
    const uninterrupted = await run(
      runFrom(build, { startAt: 0, numBatches: 12 }).pipe(withStore(await run(Checkpoint.makeMemory()))),
    )
    // checkpoint (full-scan) batches at 3, 6, 9, 12 s: b and c (last data at 7 s) are not idle
    // at 9 s (7 ≥ 9 − 4) but time out at 12 s (7 < 12 − 4)
    assert.deepEqual(uninterrupted[8], [9000, [["a", 6], ["b", 4], ["c", 3]]])
    assert.deepEqual(uninterrupted[11], [12000, [["a", 6], ["d", 2]]])
    const store = await run(Checkpoint.makeMemory())
    await run(runFrom(build, { startAt: 0, numBatches: 4 }).pipe(withStore(store)))
    const recovered = await run(runFrom(build, { startAt: 4200, numBatches: 8 }).pipe(withStore(store)))
    assert.deepEqual(recovered, uninterrupted.slice(3))
  })

  it("getOrCreate without a checkpoint creates a fresh context checkpointing into the directory", async () => {
    const store = await run(Checkpoint.makeMemory())
    const out = await run(runFrom(stateful, { startAt: 0, numBatches: 2 }).pipe(withStore(store)))
    assert.deepEqual(out, [[1000, [["a", 1]]], [2000, [["a", 2], ["b", 1]]]])
    assert.deepEqual(await run(store.list), ["checkpoint-2000"])
  })

  it("a corrupt newest checkpoint falls back to the previous one", async () => {
    const uninterrupted = await run(
      runFrom(stateful, { startAt: 0, numBatches: 8 }).pipe(withStore(await run(Checkpoint.makeMemory()))),
    )
    const store = await run(Checkpoint.makeMemory())
    await run(runFrom(stateful, { startAt: 0, numBatches: 5 }).pipe(withStore(store)))
    const newest = (await run(store.read("checkpoint-4000")))!
    await run(store.write("checkpoint-4000", newest.subarray(0, 20)))
    const recovered = await run(runFrom(stateful, { startAt: 5000, numBatches: 3 }).pipe(withStore(store)))
    // recovered from 2 s: 3, 4, 5 s re-run, then 6, 7, 8 s
    assert.deepEqual(recovered, uninterrupted.slice(2, 8))
  })

  it("Schema-encoded state written by an older build is read by a newer one", async () => {
    const V1 = Schema.Struct({ count: Schema.Number })
    const V2 = Schema.Struct({ count: Schema.Number, label: Schema.optional(Schema.String) })
    const Key = Schema.Tuple([Schema.String, Schema.Number])
    const build = (schema: typeof V1 | typeof V2): Build => (ssc) =>
      Testing.input(ssc, input).map((w) => [[w, w.length], 1] as const).updateStateByKey(
        (values: ReadonlyArray<number>, state: Option.Option<{ readonly count: number; readonly label?: string }>) =>
          Option.some({
            count: values.length + Option.getOrElse(Option.map(state, (s) => s.count), () => 0),
            label: "v",
          }),
        { schemas: { key: Key, state: schema as typeof V2 }, name: "counts" },
      ).checkpoint("2 seconds")
    const store = await run(Checkpoint.makeMemory())
    await run(runFrom(build(V1), { startAt: 0, numBatches: 4 }).pipe(withStore(store)))
    const recovered = await run(runFrom(build(V2), { startAt: 4000, numBatches: 1 }).pipe(withStore(store)))
    assert.deepEqual(recovered[0], [5000, [[["a", 1], { count: 5, label: "v" }], [["b", 1], { count: 3, label: "v" }], [
      ["c", 1],
      { count: 1, label: "v" },
    ]]])
  })

  it("state that does not match the pipeline's Schema fails start with a clear CheckpointError", async () => {
    const store = await run(Checkpoint.makeMemory())
    await run(runFrom(stateful, { startAt: 0, numBatches: 2 }).pipe(withStore(store)))
    const mismatched: Build = (ssc) =>
      Testing.input(ssc, input).map((w) => [w, 1] as const).updateStateByKey(
        (_values: ReadonlyArray<number>, state: Option.Option<{ readonly total: number }>) => state,
        { schemas: { state: Schema.Struct({ total: Schema.Number }) } },
      )
    const error = failureOf(await runExit(runFrom(mismatched, { startAt: 3000, numBatches: 1 }).pipe(withStore(store))))
    assert.ok(error instanceof Checkpoint.CheckpointError)
    assert.match(
      error.message,
      /^Cannot decode "StateDStream#0" from checkpoint checkpoint-2000 in "memory": Expected object/,
    )
  })

  it("a checkpoint holding state no operator of the pipeline has fails start clearly", async () => {
    const store = await run(Checkpoint.makeMemory())
    await run(runFrom(stateful, { startAt: 0, numBatches: 2 }).pipe(withStore(store)))
    const renamed: Build = (ssc) =>
      Testing.input(ssc, input).map((w) => [w, 1] as const).updateStateByKey(counting, { name: "renamed" })
    const error = failureOf(await runExit(runFrom(renamed, { startAt: 3000, numBatches: 1 }).pipe(withStore(store))))
    assert.ok(error instanceof Checkpoint.CheckpointError)
    assert.match(error.message, /holds state "StateDStream#0" that no operator of this pipeline has/)
  })

  it("queueStream with checkpointing fails start clearly", async () => {
    const result = await run(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        ssc.checkpoint("checkpoint")
        ssc.queueStream([["a"]]).print()
        const exit = yield* Effect.exit(ssc.start)
        return { exit, state: yield* ssc.state }
      }).pipe(Effect.provide(Checkpoint.layerMemory)),
    )
    const error = failureOf(result.exit)
    assert.ok(error instanceof ValidationError)
    assert.match(error.message, /^queueStream doesn't support checkpointing/)
    assert.equal(result.state, "STOPPED")
  })
})
