/**
 * Recording the keys changed between checkpoints (issue 12): when the changes outgrow any
 * delta — loading a large initial state, or a batch touching most keys — the state stops
 * recording them (no second table of every key), the next checkpoint is a full one, and
 * recovery from it and the deltas after it equals an uninterrupted run.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Option } from "effect"
import { Checkpoint, type DStream, type State, StateSpec, type StreamingContext, Testing } from "../mod.ts"
import { isIncremental } from "../lib/_internal/state.ts"
import { run } from "./_support/run.ts"
import { runFrom, withStore } from "./_support/recovery.ts"

const numKeys = 120_000
const initial = Array.from({ length: numKeys }, (_, i) => [`key-${i}`, i % 5] as const)
const input = [
  ["key-1", "key-2"],
  ["key-1", "new-1"],
  ["key-3"],
  ["new-1", "key-119999"],
  ["key-2", "new-2"],
  ["key-1"],
]

/** Change counts seen after each batch, by batch time. */
const counts = new Map<number, number>()

const build = (ssc: StreamingContext.StreamingContext): DStream.DStream<unknown> => {
  const stream = Testing.input(ssc, input).map((w) => [w, 1] as const).mapWithState(
    StateSpec.function((_k: string, v: Option.Option<number>, s: State.State<number>) => {
      s.update(Option.getOrElse(s.getOption(), () => 0) + Option.getOrElse(v, () => 0))
      return s.get()
    }).initialState(initial),
  ).checkpoint("2 seconds")
  const node = stream.node
  stream.foreachBatch((_batch, time) => {
    if (isIncremental(node)) counts.set(time, node.changeCount().changed)
  })
  return stream
}

describe("keyed state: changes between checkpoints", () => {
  it("a change record larger than any delta is dropped; the next checkpoint is full and recovery is exact", async () => {
    const uninterrupted = await run(
      runFrom(build, { startAt: 0, numBatches: 6 }).pipe(withStore(await run(Checkpoint.makeMemory()))),
    )
    assert.equal(counts.get(1000), Number.POSITIVE_INFINITY, "the initial load's 120 000 changes are not recorded")
    assert.equal(counts.get(3000), 1, "after the full checkpoint at 2 s, one key changed")
    assert.equal(counts.get(4000), 3)

    const store = await run(Checkpoint.makeMemory())
    const first = await run(runFrom(build, { startAt: 0, numBatches: 4 }).pipe(withStore(store)))
    const headers = await Promise.all(
      [2000, 4000].map(async (t) =>
        (await run(Checkpoint.inspect((await run(store.read(Checkpoint.fileName(t))))!))).previous
      ),
    )
    assert.deepEqual(headers, [undefined, 2000], "a full checkpoint at 2 s, a delta on it at 4 s")
    const recovered = await run(runFrom(build, { startAt: 4500, numBatches: 2 }).pipe(withStore(store)))
    assert.deepEqual([...first, ...recovered], uninterrupted)
    assert.deepEqual(uninterrupted.map(([, b]) => b), [[2, 3], [1, 3], [4], [2, 5], [1, 4], [4]])
  })
})
