/**
 * Checkpoint format 2: binary blobs in the framing, keyed state as columns, delta checkpoints
 * building on a full one (compacted into a new full one every `fullEvery` checkpoints), and
 * recovery from a delta chain: its batches equal those of an uninterrupted run. A torn newest
 * delta, or a corrupt link in the chain, falls back to the newest checkpoint whose chain reads;
 * a format-1 (all-JSON) checkpoint of an older build is still read, and the next checkpoint is
 * written in format 2.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import * as zlib from "node:zlib"
import { Deferred, Effect, Fiber, Option, Schema } from "effect"
import { TestClock } from "effect/testing"
import { BatchJobError, Checkpoint, type State, StateSpec, StreamingContext, Testing } from "../mod.ts"
import { failureOf, run, runExit } from "./_support/run.ts"
import { decodeColumn, encodeColumn } from "../lib/_internal/columns.ts"
import { type Build, runFrom, withStore } from "./_support/recovery.ts"

// Keys come and go (timeouts remove them), some are multi-byte, one needs a surrogate pair.
const input = [
  ["a", "ü"],
  ["a", "b"],
  ["a", "b", "c"],
  ["😀", "b"],
  ["a"],
  ["c"],
  ["b", "c", "ü"],
  [],
  ["a"],
  ["d"],
  ["d", "😀"],
  [],
  ["e"],
  ["a", "e"],
  ["f"],
  [],
  ["a"],
  ["b"],
]

/** mapWithState with a timeout, checkpointed every batch: every checkpoint is a delta or a full one. */
const mapping: Build = (ssc) =>
  Testing.input(ssc, input).map((w) => [w, 1] as const).mapWithState(
    StateSpec.function((_k: string, v: Option.Option<number>, s: State.State<number>) => {
      if (s.isTimingOut()) return -1
      s.update(Option.getOrElse(s.getOption(), () => 0) + Option.getOrElse(v, () => 0))
      return s.get()
    }).timeout("3 seconds"),
  ).checkpoint("1 second").stateSnapshots()

/** updateStateByKey with Schema-encoded tuple keys (a JSON column) and object states. */
const Key = Schema.Tuple([Schema.String, Schema.Number])
const Count = Schema.Struct({ count: Schema.Number })
const updating: Build = (ssc) =>
  Testing.input(ssc, input).map((w) => [[w, w.length], 1] as const).updateStateByKey(
    (values: ReadonlyArray<number>, state: Option.Option<{ readonly count: number }>) => {
      const count = values.length + Option.getOrElse(Option.map(state, (s) => s.count), () => 0)
      return count >= 4 ? Option.none() : Option.some({ count })
    },
    { schemas: { key: Key, state: Count }, name: "counts" },
  ).checkpoint("1 second")

const headerOf = async (store: Checkpoint.CheckpointStoreShape, time: number) =>
  await run(Checkpoint.inspect((await run(store.read(Checkpoint.fileName(time))))!))

/** A memory store that records the header of every checkpoint written to it. */
const recording = async () => {
  const inner = await run(Checkpoint.makeMemory())
  const headers = new Map<number, Checkpoint.Header>()
  const store: Checkpoint.CheckpointStoreShape = {
    ...inner,
    write: (name, bytes) =>
      Effect.andThen(
        Effect.tap(Checkpoint.inspect(bytes), (h) => Effect.sync(() => headers.set(Number(name.slice(11)), h))),
        inner.write(name, bytes),
      ),
  }
  return { store, headers }
}

const names = async (store: Checkpoint.CheckpointStoreShape) =>
  [...(await run(store.list))].map((n) => Number(n.slice("checkpoint-".length))).sort((a, b) => a - b)

describe("checkpoint format 2", () => {
  it("columns round-trip strings (multi-byte, surrogate pairs, empty), numbers and JSON values", () => {
    for (
      const values of [
        ["a", "", "ü", "😀x", "key-1"],
        [1, -2.5, 1e300, 0],
        [["a", 1], { count: 2 }, null, "s"],
        [],
      ]
    ) {
      assert.deepEqual(Array.from(decodeColumn(encodeColumn(values))), values)
    }
    const numbers = encodeColumn([1, 2])
    assert.throws(() => decodeColumn(numbers.subarray(0, 12)), /malformed number column/)
  })

  it("Checkpoint.write carries binary blobs and a delta's previous checkpoint; readLatest returns the chain", async () => {
    const store = await run(Checkpoint.makeMemory())
    await run(Checkpoint.write(store, 1000, { blob: new Uint8Array([1, 2, 3]), n: 1 }))
    await run(Checkpoint.write(store, 2000, { n: 2 }, 3, 1000))
    await run(Checkpoint.write(store, 3000, { n: 3 }, 3, 2000))
    assert.deepEqual(await headerOf(store, 1000), { version: 2, previous: undefined })
    assert.deepEqual(await headerOf(store, 3000), { version: 2, previous: 2000 })
    const latest = Option.getOrThrow(await run(Checkpoint.readLatest(store)))
    assert.deepEqual(latest, {
      time: 3000,
      payload: { n: 3 },
      chain: [{ time: 1000, payload: { blob: new Uint8Array([1, 2, 3]), n: 1 } }, { time: 2000, payload: { n: 2 } }],
    })
    // The newest three are recovery points; 4000 builds on 3000 … 1000, so nothing is removed
    // until a full checkpoint ends the chain and three points build on it.
    await run(Checkpoint.write(store, 4000, { n: 4 }, 3, 3000))
    assert.deepEqual(await names(store), [1000, 2000, 3000, 4000])
    await run(Checkpoint.write(store, 5000, { n: 5 }))
    await run(Checkpoint.write(store, 6000, { n: 6 }, 3, 5000))
    assert.deepEqual(await names(store), [1000, 2000, 3000, 4000, 5000, 6000])
    await run(Checkpoint.write(store, 7000, { n: 7 }, 3, 6000))
    assert.deepEqual(await names(store), [5000, 6000, 7000])
  })

  it("mapWithState: deltas after a full checkpoint, compaction into a full one, recovery equal to an uninterrupted run", async () => {
    const uninterrupted = await run(
      runFrom(mapping, { startAt: 0, numBatches: 18 }).pipe(withStore(await run(Checkpoint.makeMemory()))),
    )
    // From a chain: full 1 s, deltas 2 … 5 s.
    const { store, headers } = await recording()
    await run(runFrom(mapping, { startAt: 0, numBatches: 5 }).pipe(withStore(store)))
    assert.deepEqual(await headerOf(store, 1000), { version: 2, previous: undefined })
    for (const t of [2000, 3000, 4000, 5000]) {
      assert.deepEqual(await headerOf(store, t), { version: 2, previous: t - 1000 })
    }
    const recovered = await run(runFrom(mapping, { startAt: 5000, numBatches: 13 }).pipe(withStore(store)))
    assert.deepEqual(recovered, uninterrupted.slice(5))
    // The recovered run goes on with the chain (full 1 s, deltas 2 … 10 s); the tenth
    // checkpoint (11 s) is full again, and once three recovery points build on it the older
    // chain is removed.
    for (let t = 6000; t <= 10000; t += 1000) assert.deepEqual(headers.get(t), { version: 2, previous: t - 1000 })
    assert.deepEqual(headers.get(11000), { version: 2, previous: undefined })
    assert.deepEqual(headers.get(16000), { version: 2, previous: 15000 })
    assert.deepEqual(headers.get(18000), { version: 2, previous: 17000 })
    assert.deepEqual(await names(store), [11000, 12000, 13000, 14000, 15000, 16000, 17000, 18000])
    // And from the compacted checkpoint's chain.
    const again = await run(runFrom(mapping, { startAt: 18000, numBatches: 0 }).pipe(withStore(store)))
    assert.deepEqual(again, [])
  })

  it("updateStateByKey with Schema-encoded tuple keys and removals recovers from deltas", async () => {
    const uninterrupted = await run(
      runFrom(updating, { startAt: 0, numBatches: 12 }).pipe(withStore(await run(Checkpoint.makeMemory()))),
    )
    const store = await run(Checkpoint.makeMemory())
    await run(runFrom(updating, { startAt: 0, numBatches: 7 }).pipe(withStore(store)))
    assert.deepEqual(await headerOf(store, 7000), { version: 2, previous: 6000 })
    const recovered = await run(runFrom(updating, { startAt: 7000, numBatches: 5 }).pipe(withStore(store)))
    assert.deepEqual(recovered, uninterrupted.slice(7))
  })

  it("a torn newest delta falls back to the previous one; a corrupt link falls back past the deltas building on it", async () => {
    const uninterrupted = await run(
      runFrom(mapping, { startAt: 0, numBatches: 10 }).pipe(withStore(await run(Checkpoint.makeMemory()))),
    )
    for (const [broken, from] of [[[5000], 4000], [[3000], 2000]] as const) {
      const store = await run(Checkpoint.makeMemory())
      await run(runFrom(mapping, { startAt: 0, numBatches: 5 }).pipe(withStore(store)))
      for (const t of broken) {
        const bytes = (await run(store.read(Checkpoint.fileName(t))))!
        assert.equal((await run(Checkpoint.inspect(bytes))).previous, t - 1000)
        await run(store.write(Checkpoint.fileName(t), bytes.subarray(0, bytes.length - 7)))
      }
      const latest = Option.getOrThrow(await run(Checkpoint.readLatest(store)))
      assert.equal(latest.time, from)
      const recovered = await run(runFrom(mapping, { startAt: 5000, numBatches: 5 }).pipe(withStore(store)))
      // batches after `from` re-run, then the clock's
      assert.deepEqual(recovered, uninterrupted.slice(from / 1000, 10))
    }
  })

  it("a chain whose full checkpoint is gone fails clearly when nothing else is readable", async () => {
    const store = await run(Checkpoint.makeMemory())
    await run(runFrom(mapping, { startAt: 0, numBatches: 3 }).pipe(withStore(store)))
    await run(store.remove(Checkpoint.fileName(1000)))
    const error = failureOf(await runExit(Checkpoint.readLatest(store)))
    assert.ok(error instanceof Checkpoint.CheckpointError)
    assert.match(
      error.message,
      /every checkpoint is corrupt \(checkpoint-3000: the checkpoint it builds on, checkpoint-1000, is missing/,
    )
  })

  it("a format-1 (all-JSON) checkpoint of an older build is read; the next checkpoint is written in format 2", async () => {
    const payload = {
      time: 2000,
      zeroTime: 0,
      batchMillis: 1000,
      nodes: {
        counts: {
          hasState: true,
          lastTime: 2000,
          entries: [[["a", 1], { count: 2 }], [["ü", 1], { count: 1 }], [["b", 1], { count: 1 }]],
        },
      },
    }
    const body = new TextEncoder().encode(JSON.stringify(payload))
    const header = new TextEncoder().encode(
      `EFFECT-DSTREAM-CHECKPOINT 1 ${body.length} ${zlib.crc32(body).toString(16)}\n`,
    )
    const bytes = new Uint8Array(header.length + body.length)
    bytes.set(header)
    bytes.set(body, header.length)
    const store = await run(Checkpoint.makeMemory())
    await run(store.write(Checkpoint.fileName(2000), bytes))
    const uninterrupted = await run(
      runFrom(updating, { startAt: 0, numBatches: 7 }).pipe(withStore(await run(Checkpoint.makeMemory()))),
    )
    const recovered = await run(runFrom(updating, { startAt: 2000, numBatches: 3 }).pipe(withStore(store)))
    assert.deepEqual(recovered, uninterrupted.slice(2, 5))
    // The run goes on with the chain: its checkpoints are format-2 deltas building on the format-1 one.
    assert.deepEqual(await headerOf(store, 2000), { version: 1, previous: undefined })
    assert.deepEqual(await headerOf(store, 3000), { version: 2, previous: 2000 })
    assert.deepEqual(await headerOf(store, 5000), { version: 2, previous: 4000 })
    const again = await run(runFrom(updating, { startAt: 5000, numBatches: 2 }).pipe(withStore(store)))
    assert.deepEqual(again, uninterrupted.slice(5, 7))
  })

  it("a checkpoint is written after its batch completed, by a writer the batch does not wait for; stop waits for it", {
    timeout: 20_000,
  }, async () => {
    const out = await run(
      Effect.gen(function* () {
        const inner = yield* Checkpoint.makeMemory()
        const gate = yield* Deferred.make<void>()
        let blocked = 0
        const store: Checkpoint.CheckpointStoreShape = {
          ...inner,
          write: (name, bytes) =>
            Effect.andThen(
              Effect.andThen(Effect.sync(() => blocked++), Deferred.await(gate)),
              inner.write(name, bytes),
            ),
        }
        const completed = yield* Deferred.make<number>()
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        ssc.checkpoint("checkpoint")
        Testing.input(ssc, input).map((w) => [w, 1] as const).updateStateByKey(
          (values: ReadonlyArray<number>, state: Option.Option<number>) =>
            Option.some(values.length + Option.getOrElse(state, () => 0)),
        ).checkpoint("1 second").foreachBatch(() => {})
        ssc.addStreamingListener((e) => {
          if (e._tag === "BatchCompleted") Deferred.doneUnsafe(completed, Effect.succeed(e.batchInfo.batchTime))
        })
        yield* Effect.provideService(ssc.start, Checkpoint.CheckpointStore, store)
        yield* TestClock.adjust("1 second")
        const time = yield* Deferred.await(completed)
        // the batch completed; its checkpoint's write starts after it and is still held
        while (blocked === 0) yield* Effect.promise(() => new Promise<void>((r) => setTimeout(r, 5)))
        const whileBlocked = [...(yield* inner.list)]
        const stopping = yield* Effect.forkChild(ssc.stop())
        yield* Effect.promise(() => new Promise<void>((r) => setTimeout(r, 50)))
        const stateWhileWriting = yield* ssc.state
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(stopping)
        return { time, whileBlocked, stateWhileWriting, after: [...(yield* inner.list)] }
      }).pipe(Effect.provide(TestClock.layer())),
    )
    assert.equal(out.time, 1000)
    assert.deepEqual(out.whileBlocked, [])
    assert.equal(out.stateWhileWriting, "ACTIVE") // stop is waiting for the write
    assert.deepEqual(out.after, ["checkpoint-1000"])
  })

  it("a state the writer cannot encode (no Schema) stops the context with a CheckpointError naming the operator", async () => {
    const exit = await run(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
        ssc.checkpoint("checkpoint")
        Testing.input(ssc, input).map((w) => [w, 1] as const).updateStateByKey(
          (values: ReadonlyArray<number>, state: Option.Option<bigint>) =>
            Option.some(BigInt(values.length) + Option.getOrElse(state, () => 0n)),
        ).checkpoint("1 second").foreachBatch(() => {})
        yield* Effect.provideService(ssc.start, Checkpoint.CheckpointStore, yield* Checkpoint.makeMemory())
        yield* TestClock.adjust("1 second")
        return yield* Effect.exit(ssc.awaitTermination)
      }).pipe(Effect.provide(TestClock.layer())),
    )
    const error = failureOf(exit)
    assert.ok(error instanceof BatchJobError, String(error))
    assert.ok(error.cause instanceof Checkpoint.CheckpointError, String(error.cause))
    assert.match(
      error.cause.message,
      /^Cannot encode "StateDStream#0" for the checkpoint of 1000 ms: .*BigInt.*; give the stateful operator Schemas/,
    )
  })
})
