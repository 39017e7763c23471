/**
 * The receivers' write-ahead log (lib/_internal/wal.ts) on the real file system: records read
 * back after reopening, segments roll on the clock, covered segments are deleted, a torn last
 * record is tolerated; and, in a context, `store` returns only once the block is in the log,
 * the log needs a checkpoint directory, and what was stored but not processed is replayed.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { Effect, Exit } from "effect"
import { TestClock } from "effect/testing"
import { Receiver, StreamingContext, ValidationError } from "../mod.ts"
import * as Wal from "../lib/_internal/wal.ts"
import { live, waitFor } from "./_support/live.ts"

const tempDir = () => fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-wal-unit-"))
const bytes = (text: string) => new TextEncoder().encode(text)
const text = (data: Uint8Array) => new TextDecoder().decode(data)

/** Opens the log in `dir`, runs `f` with it, closes it. */
const withLog = <A>(dir: string, f: (wal: Wal.WriteAheadLog) => Effect.Effect<A, unknown>, rollMillis = 60_000) =>
  Effect.scoped(Effect.flatMap(Wal.open(dir, { rollMillis }), f))

describe("write-ahead log", () => {
  it("reads back blocks, allocations and checkpoint markers after reopening, and blocks by location", async () => {
    const dir = tempDir()
    try {
      const result = await live(Effect.gen(function* () {
        const locations = yield* withLog(dir, (wal) =>
          Effect.gen(function* () {
            const a = yield* wal.appendBlock(0, 2, bytes(`["a","b"]`))
            const b = yield* wal.appendBlock(1, 1, bytes(`["c"]`))
            yield* wal.appendAllocation(1000, [0, 1])
            const c = yield* wal.appendBlock(2, 1, bytes(`["d"]`))
            yield* wal.appendCheckpointed(1000)
            return [a, b, c]
          }))
        return yield* withLog(dir, (wal) =>
          Effect.gen(function* () {
            const read = yield* Effect.forEach(locations, (l) => wal.readBlock(l))
            return { recovered: wal.recovered, read: read.map(text) }
          }))
      }))
      const r = result.recovered
      assert.deepEqual([...r.blocks.keys()], [0, 1, 2])
      assert.deepEqual([...r.blocks.values()].map((b) => b.count), [2, 1, 1])
      assert.deepEqual([...r.allocatedTo], [[0, 1000], [1, 1000]])
      assert.equal(r.checkpointed, 1000)
      assert.deepEqual(r.ignoredTails, [])
      assert.deepEqual(result.read, [`["a","b"]`, `["c"]`, `["d"]`])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("starts a new segment after the rolling interval and on every reopen", async () => {
    const dir = tempDir()
    try {
      const segments = await live(Effect.gen(function* () {
        yield* withLog(dir, (wal) =>
          Effect.gen(function* () {
            yield* wal.appendBlock(0, 1, bytes(`[0]`))
            yield* wal.appendBlock(1, 1, bytes(`[1]`))
            yield* TestClock.adjust(1000)
            yield* wal.appendBlock(2, 1, bytes(`[2]`))
            yield* TestClock.adjust(999)
            yield* wal.appendBlock(3, 1, bytes(`[3]`))
          }), 1000).pipe(Effect.provide(TestClock.layer()))
        return yield* withLog(dir, (wal) =>
          Effect.gen(function* () {
            yield* wal.appendBlock(4, 1, bytes(`[4]`))
            const blocks = [...wal.recovered.blocks].map(([id, b]) => [id, b.location.segment])
            return { names: yield* wal.segments, blocks }
          }))
      }))
      assert.deepEqual(segments.names, ["log-0000000000", "log-0000000001", "log-0000000002"])
      assert.deepEqual(segments.blocks, [
        [0, "log-0000000000"],
        [1, "log-0000000000"],
        [2, "log-0000000001"],
        [3, "log-0000000001"],
      ])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("deletes the oldest segments once all their blocks are allocated to covered batches, never the current one", async () => {
    const dir = tempDir()
    try {
      const steps = await live(Effect.gen(function* () {
        return yield* withLog(dir, (wal) =>
          Effect.gen(function* () {
            yield* wal.appendBlock(0, 1, bytes(`[0]`)) // segment 0
            yield* wal.appendAllocation(1000, [0])
            yield* TestClock.adjust(1000)
            yield* wal.appendBlock(1, 1, bytes(`[1]`)) // segment 1: block 1 unallocated for now
            yield* TestClock.adjust(1000)
            yield* wal.appendBlock(2, 1, bytes(`[2]`)) // segment 2
            yield* wal.appendAllocation(2000, [2])
            yield* TestClock.adjust(1000)
            yield* wal.appendCheckpointed(2000) // segment 3 (current)
            const first = yield* wal.cleanup(2000) // segment 1 holds an unallocated block: stop there
            yield* wal.appendAllocation(3000, [1]) // segment 3
            const notYet = yield* wal.cleanup(2000) // block 1 belongs to batch 3000, not covered
            const second = yield* wal.cleanup(3000)
            return { first, notYet, second, left: yield* wal.segments, files: fs.readdirSync(dir).sort() }
          }), 1000).pipe(Effect.provide(TestClock.layer()))
      }))
      assert.deepEqual(steps.first, ["log-0000000000"])
      assert.deepEqual(steps.notYet, [])
      assert.deepEqual(steps.second, ["log-0000000001", "log-0000000002"])
      assert.deepEqual(steps.left, ["log-0000000003"])
      assert.deepEqual(steps.files, ["log-0000000003"])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("ignores a torn or corrupt last record and keeps appending to a new segment", async () => {
    for (const damage of ["truncate", "flip", "garbage"] as const) {
      const dir = tempDir()
      try {
        await live(withLog(dir, (wal) =>
          Effect.gen(function* () {
            yield* wal.appendBlock(0, 1, bytes(`["x"]`))
            yield* wal.appendAllocation(1000, [0])
            yield* wal.appendBlock(1, 1, bytes(`["y"]`))
          })))
        const file = nodePath.join(dir, "log-0000000000")
        const data = fs.readFileSync(file)
        if (damage === "truncate") fs.writeFileSync(file, data.subarray(0, data.length - 3))
        else if (damage === "flip") {
          data[data.length - 1] ^= 0xff
          fs.writeFileSync(file, data)
        } else fs.appendFileSync(file, new Uint8Array([0, 0, 0, 9, 1, 2]))
        const result = await live(Effect.gen(function* () {
          const first = yield* withLog(dir, (wal) =>
            Effect.gen(function* () {
              yield* wal.appendBlock(2, 1, bytes(`["z"]`))
              return wal.recovered
            }))
          const second = yield* withLog(dir, (wal) => Effect.succeed(wal.recovered))
          return { first, second }
        }))
        const expected = damage === "garbage" ? [0, 1] : [0]
        assert.deepEqual([...result.first.blocks.keys()], expected, damage)
        assert.equal(result.first.ignoredTails.length, 1, damage)
        assert.equal(result.first.ignoredTails[0].segment, "log-0000000000")
        assert.deepEqual([...result.first.allocatedTo], [[0, 1000]])
        // the block appended after the damage is readable: it went to a new segment
        assert.deepEqual([...result.second.blocks.keys()], [...expected, 2], damage)
        assert.equal(result.second.blocks.get(2)!.location.segment, "log-0000000001")
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }
  })
})

describe("receivers with the write-ahead log", () => {
  it("fails start with a ValidationError when there is no checkpoint directory", async () => {
    const exit = await live(Effect.exit(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      ssc.receiverStream(Receiver.make<number>({ name: "numbers", run: () => Effect.never, writeAheadLog: true }))
        .foreachBatch(() => {})
      yield* ssc.start
    })))
    assert.ok(Exit.isFailure(exit))
    const error = exit.cause.reasons.find((r) => r._tag === "Fail")
    assert.ok(error !== undefined && error._tag === "Fail")
    assert.ok(error.error instanceof ValidationError, String(error.error))
    assert.match(
      error.error.message,
      /receiver "numbers" has the write-ahead log enabled, which needs a checkpoint directory/,
    )
  })

  it("with memory-and-disk storage, blocks over the memory budget are read back from the log, not spilled again", async () => {
    const dir = tempDir()
    const spill = nodePath.join(dir, "spill")
    try {
      const result = await live(Effect.gen(function* () {
        const received: Array<number> = []
        let peak = 0
        const ssc = yield* StreamingContext.make({ batchInterval: "300 millis" })
        ssc.checkpoint(dir)
        const stream = ssc.receiverStream(Receiver.make<number>({
          name: "numbers",
          writeAheadLog: true,
          storage: "memoryAndDisk",
          spillDirectory: spill,
          maxBufferedRecords: 10,
          run: (store) =>
            Effect.gen(function* () {
              for (let i = 0; i < 20; i++) {
                yield* store.all(Array.from({ length: 5 }, (_, j) => 5 * i + j))
                peak = Math.max(peak, node.heldRecords)
              }
              yield* Effect.never
            }),
        }))
        const node: any = stream.node
        stream.foreachBatch((batch) => {
          received.push(...batch)
        })
        yield* ssc.start
        yield* waitFor(() => received.length >= 100, "every record")
        yield* ssc.stop()
        return { received, peak, spilled: fs.existsSync(spill) ? fs.readdirSync(spill) : [] }
      }))
      assert.deepEqual(result.received, Array.from({ length: 100 }, (_, i) => i))
      assert.ok(result.peak <= 10, `held ${result.peak} records in memory after a store`)
      assert.deepEqual(result.spilled, [])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("store returns once the block is in the log, and a new context replays what was stored but not processed", async () => {
    const dir = tempDir()
    try {
      const logDir = nodePath.join(dir, "receivedData", "0")
      const inLog = () => {
        if (!fs.existsSync(logDir)) return []
        const records: Array<number> = []
        for (const name of fs.readdirSync(logDir).sort()) {
          for (const { record } of Wal.decodeSegment(fs.readFileSync(nodePath.join(logDir, name))).records) {
            if (record._tag === "Block") records.push(...JSON.parse(text(record.data)))
          }
        }
        return records
      }
      // First run: a long batch interval, so the stored records are not processed before the stop.
      const first = await live(Effect.gen(function* () {
        const seenAfterStore: Array<Array<number>> = []
        const done = { value: false }
        const ssc = yield* StreamingContext.getOrCreate(dir, (ssc) => {
          ssc.receiverStream(Receiver.make<number>({
            name: "numbers",
            writeAheadLog: true,
            run: (store) =>
              Effect.gen(function* () {
                for (let i = 0; i < 5; i++) {
                  yield* store.all([3 * i, 3 * i + 1, 3 * i + 2])
                  seenAfterStore.push(inLog())
                }
                done.value = true
                yield* Effect.never
              }),
          })).foreachBatch(() => {})
        }, { batchInterval: "10 seconds" })
        yield* ssc.start
        yield* waitFor(() => done.value, "the receiver to store its records")
        yield* ssc.stop()
        return seenAfterStore
      }))
      // each store.all was durable in the log when it returned
      first.forEach((records, i) => assert.deepEqual(records, Array.from({ length: 3 * (i + 1) }, (_, j) => j)))
      // Second run: the records come back in its first batch, once, and are not stored again.
      const second = await live(Effect.gen(function* () {
        const batches: Array<ReadonlyArray<number>> = []
        const ssc = yield* StreamingContext.getOrCreate(dir, (ssc) => {
          ssc.receiverStream(Receiver.make<number>({ name: "numbers", writeAheadLog: true, run: () => Effect.never }))
            .foreachBatch((batch) => {
              batches.push(batch)
            })
        }, { batchInterval: "200 millis" })
        yield* ssc.start
        yield* waitFor(() => batches.length >= 3, "three batches")
        yield* ssc.stop()
        return batches
      }))
      assert.deepEqual(second[0], Array.from({ length: 15 }, (_, j) => j))
      assert.deepEqual(second.slice(1).flat(), [])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
