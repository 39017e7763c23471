/**
 * The scale-out engine's parts that need no broker: Kafka's partitioner, the changelog restore
 * (confirmed batches, appends cut by a crash, zombies, claims, compaction), exactly-once
 * admission of replayed and twice-produced records, and shards written and read back.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Buffer } from "node:buffer"
import { Option, Schema } from "effect"
import kafkajs from "kafkajs"
import { controlKey, controlRecord, decodeCache, encodeCache, Restorer } from "../lib/_internal/changelog.ts"
import type { OutgoingRecord, RawRecord } from "../lib/_internal/kafkaClient.ts"
import { murmur2, noteAppend, partitionFor, readSource, withSource } from "../lib/_internal/repartition.ts"
import {
  admit,
  appendRecords,
  correctionRecords,
  restoredShard,
  Shard,
  shardCodec,
  ShardMapper,
  shardPoint,
  type ShardRecord,
  updateShard,
} from "../lib/_internal/shards.ts"
import { createHash } from "node:crypto"
import { StateSpec } from "../lib/State.ts"
import type * as State from "../lib/State.ts"

/** One changelog partition in memory: appends get offsets, reads give raw records. */
class Log {
  readonly records: Array<RawRecord> = []
  append(records: ReadonlyArray<OutgoingRecord>): number {
    const base = this.records.length
    for (const r of records) {
      const bytes = (u: Uint8Array | string | null) => (u === null ? null : typeof u === "string" ? Buffer.from(u) : u)
      const headers: Record<string, Uint8Array> = {}
      for (const [k, v] of Object.entries(r.headers ?? {})) headers[k] = bytes(v)!
      this.records.push({
        topic: r.topic,
        partition: r.partition ?? 0,
        offset: this.records.length,
        timestamp: 0,
        key: bytes(r.key),
        value: bytes(r.value),
        headers,
      })
    }
    return base
  }
  /** Keeps only the last record of every key (what log compaction converges to). */
  compacted(): Array<RawRecord> {
    const last = new Map<string, number>()
    this.records.forEach((r, i) => last.set(Buffer.from(r.key!).toString(), i))
    return this.records.filter((r, i) => last.get(Buffer.from(r.key!).toString()) === i)
  }
}

const codec = shardCodec<string, number>(Schema.String, Schema.Number)
const counts = (values: ReadonlyArray<number>, s: Option.Option<number>) =>
  Option.some(values.reduce((a, b) => a + b, Option.getOrElse(s, () => 0)))

const restore = (records: ReadonlyArray<RawRecord>, chunk = 3) => {
  const r = new Restorer()
  for (let i = 0; i < records.length; i += chunk) r.add(records.slice(i, i + chunk))
  r.finish()
  return r
}

const stateOf = (r: Restorer): Record<string, number> =>
  Object.fromEntries([...r.state].map(([k, v]) => [JSON.parse(k), JSON.parse(Buffer.from(v as Uint8Array).toString())]))

/** An owner of shard 0 writing to `log`: restores, claims, corrects, then appends batches. */
const takeOver = (log: Log, generation = 1) => {
  const restorer = restore(log.records)
  const shard = restoredShard<string, number>(0, restorer, codec, false)
  shard.token = log.append([controlRecord("cl", 0, {
    kind: "claim",
    token: -1,
    base: restorer.lastControl,
    batch: -1,
    applied: shard.applied,
    sources: [],
    generation,
  }, 0)])
  log.append(correctionRecords(shard, "cl", restorer.corrections, codec, false, generation, 0))
  return {
    shard,
    restorer,
    /** Applies records (offset, word, source offset) and appends the changes; returns the records. */
    batch: (records: ReadonlyArray<readonly [number, string, number]>, write = true) => {
      const rs: Array<ShardRecord<string, number>> = records.map(([offset, key, src]) => ({
        offset,
        key,
        value: 1,
        source: { partition: 0, offset: src, index: 0 },
      }))
      updateShard<string, number, number>(shard, rs, 0, (_t, _k, vs, s) => counts(vs, s), [])
      const out = appendRecords(shard, "cl", codec, false, generation, 0)!
      if (write) log.append(out)
      return out
    },
  }
}

describe("Kafka scale-out: partitioning", () => {
  it("partitionFor() picks the partition of kafkajs's default (Java-compatible) partitioner", () => {
    const partitioner = kafkajs.Partitioners.DefaultPartitioner()
    for (const n of [1, 3, 4, 7, 12]) {
      const partitionMetadata = Array.from({ length: n }, (_, i) => ({
        partitionId: i,
        leader: 1,
        partitionErrorCode: 0,
        replicas: [1],
        isr: [1],
      }))
      for (let i = 0; i < 300; i++) {
        const key = i % 3 === 0 ? `word-${i}` : i % 3 === 1 ? "é".repeat(i % 9) + i : String.fromCharCode(65 + i % 50)
        const expected = partitioner({ topic: "t", partitionMetadata, message: { key: Buffer.from(key), value: null } })
        assert.equal(partitionFor(key, n), expected, `key ${JSON.stringify(key)}, ${n} partitions`)
      }
    }
  })

  it("murmur2() matches Kafka's reference values", () => {
    // values from Kafka's UtilsTest.testMurmur2
    assert.equal(murmur2(Buffer.from("21")), -973932308)
    assert.equal(murmur2(Buffer.from("foobar")), -790332482)
    assert.equal(murmur2(Buffer.from("a-little-bit-long-string")), -985981536)
    assert.equal(murmur2(Buffer.from("a-little-bit-longer-string")), -1486304829)
    assert.equal(murmur2(Buffer.from("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8")), -58897971)
  })
})

describe("Kafka scale-out: provenance of repartitioned records", () => {
  it("withSource() and readSource() round-trip the source and the value (text, bytes, null)", () => {
    const bytes = (u: Uint8Array | string) => (typeof u === "string" ? Buffer.from(u) : u)
    const text = readSource(bytes(withSource(3, 123456789012, 7, "é|x:1")))
    assert.deepEqual(text?.source, { partition: 3, offset: 123456789012, index: 7 })
    assert.equal(Buffer.from(text!.value!).toString(), "é|x:1")
    const raw = readSource(bytes(withSource(0, 0, 0, new Uint8Array([0, 124, 255]))))
    assert.deepEqual([...raw!.value!], [0, 124, 255])
    assert.deepEqual(readSource(bytes(withSource(1, 2, 3, null))), {
      source: { partition: 1, offset: 2, index: 3 },
      value: null,
    })
    for (const bad of ["", "1:2|x", "1:2:|x", "a:1:2|x", "1:2:3", "1:2:3:4|x"]) {
      assert.equal(readSource(Buffer.from(bad)), undefined, JSON.stringify(bad))
    }
    assert.equal(readSource(null), undefined)
  })
})

describe("Kafka scale-out: exactly-once admission", () => {
  it("admit() skips a replay of the shard's own partition and a source record produced twice", () => {
    const shard = new Shard<string, number>(0)
    assert.equal(admit(shard, 0, { partition: 1, offset: 10, index: 0 }), true)
    assert.equal(admit(shard, 1, { partition: 1, offset: 10, index: 1 }), true)
    assert.equal(admit(shard, 2, { partition: 2, offset: 5, index: 0 }), true)
    // replayed from the shard's partition
    assert.equal(admit(shard, 1, { partition: 1, offset: 10, index: 1 }), false)
    // the producer of source partition 1 crashed before committing: offsets 10.. produced again
    assert.equal(admit(shard, 3, { partition: 1, offset: 10, index: 0 }), false)
    assert.equal(admit(shard, 4, { partition: 1, offset: 10, index: 1 }), false)
    assert.equal(admit(shard, 5, { partition: 1, offset: 11, index: 0 }), true)
    assert.equal(shard.applied, 5)
    assert.equal(shard.duplicates, 3)
    assert.deepEqual([...shard.sources], [[1, [11, 0]], [2, [5, 0]]])
  })

  it("admit() takes the pairs of one input record when the input partition is the shard", () => {
    const shard = new Shard<string, number>(0)
    const pairs = (offset: number) => [0, 1, 2].map((index) => admit(shard, offset, { partition: 0, offset, index }))
    assert.deepEqual(pairs(7), [true, true, true])
    assert.deepEqual(pairs(7), [false, false, false])
    assert.deepEqual(pairs(8), [true, true, true])
  })

  it("a replayed batch does not change the state", () => {
    const shard = new Shard<string, number>(0)
    const batch: Array<ShardRecord<string, number>> = [
      { offset: 0, key: "a", value: 1, source: { partition: 3, offset: 0, index: 0 } },
      { offset: 1, key: "b", value: 1, source: { partition: 3, offset: 0, index: 1 } },
      { offset: 2, key: "a", value: 1, source: { partition: 3, offset: 1, index: 0 } },
    ]
    const run = () => updateShard<string, number, number>(shard, batch, 0, (_t, _k, vs, s) => counts(vs, s), [])
    run()
    run()
    assert.deepEqual(shard.state.entries(), [["a", 2], ["b", 1]])
  })
})

describe("Kafka scale-out: changelog restore", () => {
  it("restores confirmed batches, removals as tombstones, and the applied position", () => {
    const log = new Log()
    const a = takeOver(log)
    a.batch([[0, "x", 0], [1, "y", 1]])
    a.batch([[2, "x", 2]])
    updateShard<string, number, number>(
      a.shard,
      [],
      0,
      (_t, k, vs, s) => (k === "y" ? Option.none() : counts(vs, s)),
      [],
    )
    log.append(appendRecords(a.shard, "cl", codec, false, 1, 0)!)
    const r = restore(log.records)
    assert.deepEqual(stateOf(r), { x: 2 })
    assert.equal(r.position.applied, 2)
    assert.deepEqual([...r.position.sources], [[0, [2, 0]]])
    assert.equal(r.corrections.size, 0)
  })

  it("keeps no view of a fetched response: values read as views of one shared buffer are held as their own text", () => {
    const log = new Log()
    const a = takeOver(log)
    a.batch([[0, "x", 0], [1, "y", 1]])
    // as a client delivers them: every key and value a view into one large fetch response
    const response = Buffer.alloc(1 << 20)
    let at = 0
    const view = (u: Uint8Array | null) => {
      if (u === null) return null
      response.set(u, at)
      at += u.length
      return response.subarray(at - u.length, at)
    }
    const r = restore(log.records.map((rec) => ({ ...rec, key: view(rec.key), value: view(rec.value) })))
    assert.deepEqual(stateOf(r), { x: 1, y: 1 })
    for (const [k, v] of r.state) {
      assert.ok(
        !(v instanceof Uint8Array && v.buffer === response.buffer),
        `the value of ${k} is a view of the response`,
      )
    }
  })

  it("ignores an append cut by a crash (no marker yet) and names its keys for correction", () => {
    const log = new Log()
    const a = takeOver(log)
    a.batch([[0, "x", 0]])
    const cut = a.batch([[1, "x", 1], [2, "z", 2]], false)
    log.append(cut.slice(0, -1)) // the crash came before the marker
    const r = restore(log.records)
    assert.deepEqual(stateOf(r), { x: 1 })
    assert.equal(r.position.applied, 0)
    assert.deepEqual([...r.corrections].sort(), ['"x"', '"z"'])
  })

  it("a new owner's claim drops the previous owner's cut append; its corrections and batches count", () => {
    const log = new Log()
    const a = takeOver(log)
    a.batch([[0, "x", 0]])
    log.append(a.batch([[1, "x", 1], [2, "z", 2]], false).slice(0, -1))
    const b = takeOver(log, 2)
    assert.deepEqual(b.shard.state.entries(), [["x", 1]])
    b.batch([[1, "x", 1], [2, "z", 2]]) // replayed from offset 1 (applied 0)
    const r = restore(log.records)
    assert.deepEqual(stateOf(r), { x: 2, z: 1 })
    assert.equal(r.position.applied, 2)
    assert.equal(r.dropped, 2) // a's cut append (x, z) went at b's claim; b's corrections and batch count
  })

  it("ignores a zombie's appends after a newer owner's claim", () => {
    const log = new Log()
    const a = takeOver(log)
    a.batch([[0, "x", 0]])
    const b = takeOver(log, 2)
    // a lost the shard without knowing: its batch lands after b's claim, marker included
    a.batch([[1, "x", 1], [2, "zombie", 2]])
    b.batch([[1, "y", 1]])
    const r = restore(log.records)
    assert.deepEqual(stateOf(r), { x: 1, y: 1 })
    assert.equal(r.position.applied, 1)
    assert.ok(r.zombies >= 3, `zombies ${r.zombies}`)
    assert.ok(r.corrections.has('"zombie"'))
  })

  it("a compacted changelog (last record per key) restores the same state", () => {
    const log = new Log()
    const a = takeOver(log)
    a.batch([[0, "x", 0], [1, "y", 1]])
    a.batch([[2, "x", 2]])
    log.append(a.batch([[3, "w", 3]], false).slice(0, -1)) // cut by a crash
    const b = takeOver(log, 2)
    b.batch([[3, "v", 3], [4, "x", 4]])
    b.batch([[5, "y", 5]])
    const full = restore(log.records)
    assert.deepEqual(stateOf(full), { x: 3, y: 2, v: 1 })
    const compacted = log.compacted()
    assert.ok(compacted.length < log.records.length)
    const r = restore(compacted)
    assert.deepEqual(stateOf(r), stateOf(full))
    assert.equal(r.position.applied, full.position.applied)
  })

  it("fails with a message naming the offset when a control record is malformed", () => {
    const r = new Restorer()
    assert.throws(
      () =>
        r.add([{
          topic: "cl",
          partition: 2,
          offset: 41,
          timestamp: 0,
          key: Buffer.from(controlKey),
          value: Buffer.from('{"kind":"marker"}'),
          headers: {},
        }]),
      /malformed control record at offset 41 of "cl" \[2\]/,
    )
  })
})

const sha256 = (t: string) => createHash("sha256").update(t).digest("hex")

/** Appends an owner's records to `log` as the engine does, following its offsets (noteAppend). */
const tracked = (log: Log, shard: Shard<string, unknown>, records: ReadonlyArray<OutgoingRecord>) => {
  const baseOffset = log.append(records)
  noteAppend(shard, "cl", records, [{ records, results: [{ topic: "cl", partition: 0, baseOffset }] }])
}

describe("Kafka scale-out: restore points (local cache, standby)", () => {
  it("a shard's cache continued with the rest of the log restores what the whole log does, across owners and a zombie", () => {
    const log = new Log()
    const a = takeOver(log)
    a.shard.logEnd = log.records.length // claim and corrections: a's own
    tracked(log, a.shard, a.batch([[0, "x", 0], [1, "y", 1]], false))
    tracked(log, a.shard, a.batch([[2, "x", 2]], false))
    const point = shardPoint(a.shard, "cl", codec, false, 1)
    assert.ok(point !== undefined)
    const cache = encodeCache(point, sha256)
    // then another owner, a cut append and a zombie
    log.append(a.batch([[3, "w", 3]], false).slice(0, -1))
    const b = takeOver(log, 2)
    a.batch([[4, "zombie", 4]])
    b.batch([[3, "v", 3], [4, "x", 4]])
    const full = restore(log.records)
    const fromCache = Restorer.fromPoint(decodeCache(cache, "cl", 0, sha256), "cache")
    fromCache.add(log.records.slice(point.next))
    fromCache.finish()
    assert.deepEqual(
      Object.fromEntries([...fromCache.state].map(([k, v]) => [k, String(v)])),
      Object.fromEntries([...full.state].map(([k, v]) => [k, Buffer.from(v as Uint8Array).toString()])),
    )
    assert.deepEqual(stateOf(full), { x: 3, y: 1, v: 1 })
    assert.equal(fromCache.position.applied, full.position.applied)
    assert.deepEqual([...fromCache.position.sources], [...full.position.sources])
    assert.equal(fromCache.latest, full.latest)
  })

  it("an owner whose appends another writer came between is no restore point", () => {
    const log = new Log()
    const a = takeOver(log)
    a.shard.logEnd = log.records.length
    tracked(log, a.shard, a.batch([[0, "x", 0]], false))
    assert.ok(shardPoint(a.shard, "cl", codec, false, 1) !== undefined)
    takeOver(log, 2) // a newer claim: a is a zombie from here
    tracked(log, a.shard, a.batch([[1, "x", 1]], false))
    assert.equal(a.shard.logEnd, -1)
    assert.equal(shardPoint(a.shard, "cl", codec, false, 1), undefined)
  })

  it("a damaged cache, or another partition's, is a clear error", () => {
    const log = new Log()
    const a = takeOver(log)
    a.shard.logEnd = log.records.length
    tracked(log, a.shard, a.batch([[0, "x", 0]], false))
    const cache = encodeCache(shardPoint(a.shard, "cl", codec, false, 1)!, sha256)
    assert.throws(() => decodeCache(cache.replace('"applied":0', '"applied":9'), "cl", 0, sha256), /checksum mismatch/)
    assert.throws(() => decodeCache(cache.slice(0, -5), "cl", 0, sha256), /checksum mismatch/)
    assert.throws(() => decodeCache(cache, "cl", 1, sha256), /it is the cache of "cl" \[0\], not of "cl" \[1\]/)
    assert.throws(() => decodeCache("garbage", "cl", 0, sha256), /no checksum line/)
  })
})

describe("Kafka scale-out: shard codecs", () => {
  it("round-trips states through their Schema's JSON form, non-finite numbers and structs included", () => {
    const c = shardCodec<string, number>(Schema.String, Schema.Number)
    for (const n of [0, -1.5, 1e300, NaN, Infinity, -Infinity]) {
      assert.ok(Object.is(c.decodeState(JSON.parse(JSON.stringify(c.encodeState(n)))), n), String(n))
    }
    assert.equal(c.parseKey(c.keyText('é "q"')), 'é "q"')
    const Point = Schema.Struct({ x: Schema.Number, at: Schema.Date })
    const p = shardCodec<readonly [string, number], typeof Point.Type>(
      Schema.Tuple([Schema.String, Schema.Number]),
      Point,
    )
    const at = new Date(5)
    assert.deepEqual(p.decodeState(JSON.parse(JSON.stringify(p.encodeState({ x: 1, at })))), { x: 1, at })
    assert.deepEqual(p.parseKey(p.keyText(["a", 2])), ["a", 2])
    assert.throws(() => c.decodeState("not a number"))
  })
})

describe("Kafka scale-out: mapWithState shards", () => {
  const spec = StateSpec.function((k: string, v: Option.Option<number>, s: State.State<number>) => {
    if (s.isTimingOut()) return [k, -1] as const
    const n = Option.getOrElse(v, () => 0) + Option.getOrElse(s.getOption(), () => 0)
    s.update(n)
    return [k, n] as const
  }).timeout("10 seconds")

  it("keeps times in the changelog and times idle keys out (a tombstone follows)", () => {
    const mapper = new ShardMapper(spec.fn, spec.timeoutMillis)
    const shard = new Shard<string, unknown>(0)
    const out: Array<readonly [string, number]> = []
    const rec = (offset: number, key: string) => ({ offset, key, value: 1, source: undefined })
    mapper.apply(shard, [rec(0, "a"), rec(1, "b"), rec(2, "a")], 1000, out)
    mapper.apply(shard, [rec(3, "b")], 9000, out)
    const log = new Log()
    shard.token = 0
    log.append(appendRecords(shard, "cl", codec, true, 1, 0)!)
    const restored = restoredShard<string, number>(0, restore(log.records), codec, true)
    assert.deepEqual(restored.state.entries(), [["a", { state: 2, time: 1000 }], ["b", { state: 2, time: 9000 }]])
    mapper.timeOut(restored, 15_000, out)
    assert.deepEqual(out.slice(-1), [["a", -1]])
    assert.deepEqual(restored.state.entries(), [["b", { state: 2, time: 9000 }]])
    restored.token = 0
    log.append(appendRecords(restored, "cl", codec, true, 1, 0)!)
    assert.deepEqual(restoredShard<string, number>(0, restore(log.records), codec, true).state.entries(), [
      ["b", { state: 2, time: 9000 }],
    ])
  })
})
