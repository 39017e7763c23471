/**
 * The receivers' write-ahead log (lib/_internal/wal.ts) on the real file system: records read
 * back after reopening, segments roll on the clock, covered segments are deleted, a torn last
 * record is tolerated; and, in a context, `store` returns only once the block is in the log,
 * the log needs a checkpoint directory, and what was stored but not processed is replayed.
 */
import { after, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as zlib from "node:zlib"
import { Buffer } from "node:buffer"
import { Effect, Exit } from "effect"
import { TestClock } from "effect/testing"
import { type Listener, Receiver, StreamingContext, ValidationError } from "../mod.ts"
import { runningSum } from "./_support/child.ts"
import * as Wal from "../lib/_internal/wal.ts"
import { live, waitFor } from "./_support/live.ts"

const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-wal-unit-"))
after(() => fs.rmSync(root, { recursive: true, force: true }))
/** A directory of its own, inside `root` (so the marker a checkpoint directory gets beside it goes too). */
const tempDir = () => fs.mkdtempSync(nodePath.join(root, "d-"))
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
            yield* wal.appendAllocation(1000, [{ id: 0, count: 2 }, { id: 1, count: 1 }])
            const c = yield* wal.appendBlock(2, 1, bytes(`["d"]`))
            yield* wal.appendCheckpointed({ time: 1000, nextBlockId: 2, pending: [] })
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
      assert.deepEqual([...r.allocatedCounts], [[0, 2], [1, 1]])
      assert.equal(r.checkpointed, 1000)
      assert.deepEqual(r.coverage, { time: 1000, nextBlockId: 2, pending: [] })
      assert.deepEqual(r.damaged, [])
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
            yield* wal.appendAllocation(1000, [{ id: 0, count: 1 }])
            yield* TestClock.adjust(1000)
            yield* wal.appendBlock(1, 1, bytes(`[1]`)) // segment 1: block 1 unallocated for now
            yield* TestClock.adjust(1000)
            yield* wal.appendBlock(2, 1, bytes(`[2]`)) // segment 2
            yield* wal.appendAllocation(2000, [{ id: 2, count: 1 }])
            yield* TestClock.adjust(1000)
            yield* wal.appendCheckpointed({ time: 2000, nextBlockId: 3, pending: [[1, 2]] }) // segment 3 (current)
            const first = yield* wal.cleanup(2000) // segment 1 holds an unallocated block: stop there
            yield* wal.appendAllocation(3000, [{ id: 1, count: 1 }]) // segment 3
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

  it("skips a torn or corrupt last record, reports it, and keeps appending to a new segment", async () => {
    for (const damage of ["truncate", "flip", "garbage"] as const) {
      const dir = tempDir()
      try {
        await live(withLog(dir, (wal) =>
          Effect.gen(function* () {
            yield* wal.appendBlock(0, 1, bytes(`["x"]`))
            yield* wal.appendAllocation(1000, [{ id: 0, count: 1 }])
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
        assert.equal(result.first.damaged.length, 1, damage)
        assert.equal(result.first.damaged[0].segment, "log-0000000000")
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

/** A format-1 record (the framing of earlier builds): [length][CRC-32 of body][body]. */
const v1Record = (body: Uint8Array): Uint8Array => {
  const out = new Uint8Array(8 + body.length)
  const view = new DataView(out.buffer)
  view.setUint32(0, body.length)
  view.setUint32(4, zlib.crc32(body))
  out.set(body, 8)
  return out
}

/** Every record of every segment in `dir`: segment, offset, length, record. */
const recordsIn = (dir: string) =>
  fs.readdirSync(dir).sort().flatMap((segment) =>
    Wal.decodeSegment(fs.readFileSync(nodePath.join(dir, segment))).records.map((r) => ({ segment, ...r }))
  )

describe("write-ahead log damage", () => {
  it("a flipped bit anywhere in a record of an older segment or of the last one skips exactly that record and reports its range", async () => {
    const dir = tempDir()
    try {
      // three segments of 6 blocks and 3 allocations each
      await live(
        withLog(dir, (wal) =>
          Effect.gen(function* () {
            let id = 0
            for (let segment = 0; segment < 3; segment++) {
              for (let k = 0; k < 3; k++) {
                yield* wal.appendBlock(id, 2, bytes(JSON.stringify([`r${id}a`, `r${id}b`])))
                yield* wal.appendBlock(id + 1, 1, bytes(JSON.stringify([`r${id + 1}`])))
                yield* wal.appendAllocation(1000 * (id + 1), [{ id, count: 2 }, { id: id + 1, count: 1 }])
                id += 2
              }
              yield* TestClock.adjust(1000)
            }
          }), 1000).pipe(Effect.provide(TestClock.layer())),
      )
      const all = recordsIn(dir)
      assert.deepEqual([...new Set(all.map((r) => r.segment))], ["log-0000000000", "log-0000000001", "log-0000000002"])
      const pristine = new Map(fs.readdirSync(dir).map((name) => [name, fs.readFileSync(nodePath.join(dir, name))]))
      const restore = () => {
        for (const [name, data] of pristine) fs.writeFileSync(nodePath.join(dir, name), data)
      }
      // a block in the middle of the oldest segment, an allocation in the middle of the last one,
      // the last record, a segment header
      const targets = [
        all.filter((r) => r.segment === "log-0000000000" && r.record._tag === "Block")[2],
        all.filter((r) => r.segment === "log-0000000002" && r.record._tag === "Allocation")[1],
        all[all.length - 1], // the very last record
        // the 16-byte header of the middle segment (format version and its CRC)
        { ...all.find((r) => r.segment === "log-0000000001")!, offset: 0, length: 16 },
      ]
      for (const target of targets) {
        for (let byte = 0; byte < target.length; byte++) {
          restore()
          const file = nodePath.join(dir, target.segment)
          const data = fs.readFileSync(file)
          const bit = 1 << Math.floor(Math.random() * 8)
          data[target.offset + byte] ^= bit
          fs.writeFileSync(file, data)
          const what = `${target.record._tag} at ${target.segment}:${target.offset}, byte ${byte} bit ${bit}`
          const r = await live(withLog(dir, (wal) => Effect.succeed(wal.recovered)))
          assert.deepEqual(r.damaged.map((d) => [d.segment, d.offset, d.bytes]), [[
            target.segment,
            target.offset,
            target.length,
          ]], what)
          // every other record is read back exactly
          const expectedBlocks = all.filter((x) => x.record._tag === "Block" && x !== target).map((x) =>
            x.record._tag === "Block" ? x.record.id : -1
          )
          assert.deepEqual([...r.blocks.keys()], expectedBlocks, what)
          for (const x of all) {
            if (x === target || x.record._tag !== "Block") continue
            assert.deepEqual(r.blocks.get(x.record.id)!.location, {
              segment: x.segment,
              offset: x.offset,
              length: x.length,
            })
          }
          const expectedAllocated = all.flatMap(({ record }, i) =>
            record._tag === "Allocation" && all[i] !== target ? record.blocks.map((id) => [id, record.time]) : []
          )
          assert.deepEqual([...r.allocatedTo].sort((a, b) => a[0] - b[0]), expectedAllocated, what)
          // the reopened log has a new segment: remove it for the next trial
          for (const name of fs.readdirSync(dir)) if (!pristine.has(name)) fs.rmSync(nodePath.join(dir, name))
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("reads segments of format 1 (earlier builds), and fails clearly on a newer format", async () => {
    const dir = tempDir()
    try {
      const block = new Uint8Array(13 + 5)
      block[0] = 1
      new DataView(block.buffer).setFloat64(1, 7)
      new DataView(block.buffer).setUint32(9, 1)
      block.set(bytes(`["x"]`), 13)
      const allocation = new Uint8Array(13 + 8)
      allocation[0] = 2
      new DataView(allocation.buffer).setFloat64(1, 3000)
      new DataView(allocation.buffer).setUint32(9, 1)
      new DataView(allocation.buffer).setFloat64(13, 7)
      const marker = new Uint8Array(9)
      marker[0] = 3
      new DataView(marker.buffer).setFloat64(1, 2000)
      fs.writeFileSync(
        nodePath.join(dir, "log-0000000000"),
        Buffer.concat([v1Record(block), v1Record(allocation), v1Record(marker)]),
      )
      const r = await live(withLog(dir, (wal) =>
        Effect.gen(function* () {
          const data = yield* wal.readBlock(wal.recovered.blocks.get(7)!.location)
          return { recovered: wal.recovered, data: text(data) }
        })))
      assert.deepEqual([...r.recovered.blocks.keys()], [7])
      assert.equal(r.data, `["x"]`)
      assert.deepEqual([...r.recovered.allocatedTo], [[7, 3000]])
      assert.equal(r.recovered.checkpointed, 2000)
      assert.equal(r.recovered.coverage, undefined)
      assert.deepEqual(r.recovered.damaged, [])

      // a segment whose (valid) header names format 9
      const header = Wal.segmentHeader()
      new DataView(header.buffer).setUint32(8, 9)
      new DataView(header.buffer).setUint32(12, zlib.crc32(header.subarray(0, 12)))
      fs.writeFileSync(nodePath.join(dir, "log-0000000005"), header)
      const exit = await live(Effect.exit(withLog(dir, () => Effect.void)))
      assert.ok(Exit.isFailure(exit))
      const error = exit.cause.reasons.find((x) => x._tag === "Fail")
      assert.ok(error !== undefined && error._tag === "Fail" && error.error instanceof Wal.WalError)
      assert.match(
        error.error.message,
        /log-0000000005": it was written in write-ahead log format 9, this build reads formats 1 and 2$/,
      )
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

/**
 * One run of a counting pipeline over a receiver with the write-ahead log: the receiver stores
 * `records` (3 per store), the state counts each number; returns the last state and the events.
 */
const countingRun = (dir: string, records: ReadonlyArray<number>) =>
  live(Effect.gen(function* () {
    let state: ReadonlyArray<readonly [number, number]> = []
    let batches = 0
    const events: Array<Listener.StreamingEvent> = []
    const ssc = yield* StreamingContext.getOrCreate(dir, (ssc) => {
      ssc.addStreamingListener((e) => {
        events.push(e)
      })
      ssc.receiverStream(Receiver.make<number>({
        name: "numbers",
        writeAheadLog: true,
        run: (store) =>
          Effect.gen(function* () {
            for (let i = 0; i < records.length; i += 3) {
              yield* store.all(records.slice(i, i + 3))
              yield* Effect.sleep("30 millis")
            }
            yield* Effect.never
          }),
      })).mapToPair((n) => [n, 1]).updateStateByKey(runningSum).checkpoint("100 millis")
        .foreachBatch((batch) => {
          state = batch
          batches++
        })
    }, { batchInterval: "100 millis" })
    yield* ssc.start
    const stored = records.length
    yield* waitFor(() => state.length >= new Set(records).size || (stored === 0 && batches > 0), "the records")
    const after = batches
    yield* waitFor(() => batches >= after + 3, "three more batches (a checkpoint after the last record)")
    yield* ssc.stop()
    return { state: new Map(state), events }
  }))

describe("write-ahead log recovery with damage", () => {
  it("a lost allocation record never counts its blocks twice; a damaged processed block loses nothing; each damage is an event", async () => {
    const dir = tempDir()
    try {
      const numbers = Array.from({ length: 30 }, (_, i) => i)
      const first = await countingRun(dir, numbers)
      assert.deepEqual([...first.state].sort((a, b) => a[0] - b[0]), numbers.map((n) => [n, 1]))
      // damage two records of the (processed, checkpointed) log: the first allocation record and
      // a block in the middle
      const logDir = nodePath.join(dir, "receivedData", "0")
      const all = recordsIn(logDir)
      const allocation = all.find((r) => r.record._tag === "Allocation")!
      const blocks = all.filter((r) => r.record._tag === "Block")
      const block = blocks[Math.floor(blocks.length / 2)]
      for (const target of [allocation, block]) {
        const file = nodePath.join(logDir, target.segment)
        const data = fs.readFileSync(file)
        data[target.offset + 12 + 3] ^= 0x10 // a bit of the body
        fs.writeFileSync(file, data)
      }
      const second = await countingRun(dir, [])
      // every number exactly once: nothing replayed twice, nothing lost
      assert.deepEqual([...second.state].sort((a, b) => a[0] - b[0]), numbers.map((n) => [n, 1]))
      const damage = second.events.flatMap((e) => e._tag === "WriteAheadLogDamaged" ? [e.damage] : [])
      assert.deepEqual(
        damage.map((d) => [d.streamId, d.receiver, d.segment, d.offset, d.bytes, d.reason]),
        [allocation, block].sort((a, b) => a.offset - b.offset).map((t) => [
          0,
          "numbers",
          nodePath.join(logDir, t.segment),
          t.offset,
          t.length,
          "checksum mismatch",
        ]),
      )
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
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
