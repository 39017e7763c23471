/**
 * The keyed-state table under checkpoints (issue 12): a copy-on-write snapshot is the table as
 * it was when taken, however the table changes before the writer copies it; a table restored
 * from columns (keys left in one decoded string under an index) answers every operation as a
 * `Map` holding the same entries would, through deltas, removals and snapshots.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { decodeStrings, encodeColumn } from "../lib/_internal/columns.ts"
import { KeyMap } from "../lib/_internal/keyMap.ts"

const sorted = <K, V>(c: { readonly keys: ReadonlyArray<K>; readonly values: ReadonlyArray<V> }) =>
  c.keys.map((k, i) => [k, c.values[i]] as const).sort((a, b) => String(a[0]).localeCompare(String(b[0])))

const entriesOf = <K, V>(m: ReadonlyMap<K, V>) =>
  [...m].map(([k, v]) => [k, v] as const).sort((a, b) => String(a[0]).localeCompare(String(b[0])))

/** A table restored from columns holding `entries` (string keys). */
const restored = <V>(entries: ReadonlyArray<readonly [string, V]>, values?: Float64Array): KeyMap<string, V> => {
  const { text, lengths, utf8 } = decodeStrings(encodeColumn(entries.map(([k]) => k)))!
  const table = new KeyMap<string, V>()
  table.restoreColumns(text, lengths, values ?? entries.map(([, v]) => v), utf8)
  return table
}

/** Applies a delta the way recovery does: removed keys, then set keys, as string columns. */
const applyDelta = <V>(
  table: KeyMap<string, V>,
  removed: ReadonlyArray<string>,
  set: ReadonlyArray<readonly [string, V]>,
): void => {
  if (removed.length > 0) {
    const r = decodeStrings(encodeColumn(removed))!
    table.applyColumns(r.text, r.lengths, undefined)
  }
  if (set.length > 0) {
    const s = decodeStrings(encodeColumn(set.map(([k]) => k)))!
    table.applyColumns(s.text, s.lengths, set.map(([, v]) => v))
  }
}

/** A deterministic pseudo-random sequence. */
const random = (seed: number) => () => {
  seed = (Math.imul(seed, 1_664_525) + 1_013_904_223) >>> 0
  return seed / 4_294_967_296
}

describe("keyed-state table: copy-on-write snapshots", () => {
  it("a snapshot holds the table as it was when taken, whatever changed before the copy", () => {
    const table = new KeyMap<string, number>()
    for (let i = 0; i < 100; i++) table.set(`k${i}`, i)
    const expected = entriesOf(new Map(table.entries()))
    const take = table.snapshot()
    table.set("k1", 1000) // changed
    table.set("k1", 2000) // changed again: the first previous value counts
    table.set("new", 1) // added
    table.delete("k2") // removed
    table.delete("k3")
    table.set("k3", 3000) // removed and added again
    table.delete("absent") // removing a key that never was
    assert.deepEqual(sorted(take()), expected)
    assert.deepEqual(sorted(take()), expected, "a second call returns the same copy")
    assert.equal(table.get("k1"), 2000)
    assert.equal(table.get("k2"), undefined)
    assert.equal(table.size, 100)
  })

  it("a later snapshot, or a switch to structural keys, copies the pending one first", () => {
    const table = new KeyMap<unknown, number>()
    table.set("a", 1)
    table.set("b", 2)
    const first = table.snapshot()
    table.set("a", 10)
    const second = table.snapshot()
    table.set("b", 20)
    table.set(["tuple", 1], 3) // switches the table to structural keys
    table.set("c", 4)
    assert.deepEqual(sorted(first()), [["a", 1], ["b", 2]])
    assert.deepEqual(sorted(second()), [["a", 10], ["b", 2]])
    assert.equal(table.get(["tuple", 1]), 3)
    assert.equal(table.size, 4)
  })
})

describe("keyed-state table: restored from columns", () => {
  const keys = ["a", "ü", "😀", "key-1", "key-2", "", "naïve café", "key-10"]

  it("answers get, has, size, forEach and columns as a Map of the same entries", () => {
    const entries = keys.map((k, i) => [k, i * 1.5] as const)
    const table = restored(entries, Float64Array.from(entries, ([, v]) => v))
    const model = new Map<string, number>(entries)
    assert.equal(table.size, model.size)
    for (const k of [...keys, "b", "key-", "key-100", "😀x"]) {
      assert.equal(table.get(k), model.get(k), `get ${JSON.stringify(k)}`)
      assert.equal(table.has(k), model.has(k), `has ${JSON.stringify(k)}`)
    }
    const seen = new Map<string, number>()
    table.forEach((v, k) => seen.set(k, v))
    assert.deepEqual(entriesOf(seen), entriesOf(model))
    assert.deepEqual(sorted(table.columns()), entriesOf(model))
  })

  it("stays equal to a Map through random sets, deletes, deltas and snapshots", () => {
    const next = random(12)
    const universe = Array.from({ length: 400 }, (_, i) => i % 7 === 0 ? `ü-${i}` : `key-${i}`)
    const initial = universe.filter((_, i) => i % 2 === 0).map((k, i) => [k, i] as const)
    const table = restored<unknown>(initial, Float64Array.from(initial, ([, v]) => v))
    const model = new Map<string, unknown>(initial)
    const pending: Array<{ take: () => unknown; expected: unknown }> = []
    for (let step = 0; step < 4000; step++) {
      const k = universe[Math.floor(next() * universe.length)]
      const op = next()
      if (op < 0.4) {
        // Mostly numbers; now and then an object, which the restored number column must take.
        const v = next() < 0.05 ? { n: step } : step
        table.set(k, v)
        model.set(k, v)
      } else if (op < 0.6) {
        table.delete(k)
        model.delete(k)
      } else if (op < 0.62) {
        const removed = universe.filter(() => next() < 0.02)
        const set = universe.filter((r) => !removed.includes(r) && next() < 0.05).map((r) => [r, -step] as const)
        applyDelta(table, removed, set)
        for (const r of removed) model.delete(r)
        for (const [r, v] of set) model.set(r, v)
      } else if (op < 0.63) {
        pending.push({ take: table.snapshot(), expected: entriesOf(model) })
      } else {
        assert.equal(table.get(k), model.get(k), `get ${k} at step ${step}`)
        assert.equal(table.has(k), model.has(k), `has ${k} at step ${step}`)
      }
      assert.equal(table.size, model.size, `size at step ${step}`)
    }
    assert.ok(pending.length > 10)
    for (const { take, expected } of pending) {
      assert.deepEqual(sorted(take() as { keys: Array<string>; values: Array<unknown> }), expected)
    }
    assert.deepEqual(sorted(table.columns()), entriesOf(model))
  })

  it("lets forEach update the entry it visits and delete entries, as the stateful operators do", () => {
    const entries = Array.from({ length: 50 }, (_, i) => [`k${i}`, i] as const)
    const table = restored(entries)
    table.set("fresh", 100)
    const gone: Array<string> = []
    table.forEach((v, k) => {
      if (v % 3 === 0) gone.push(k)
      else table.set(k, v + 1000)
    })
    for (const k of gone) table.delete(k)
    const model = new Map<string, number>([...entries, ["fresh", 100]])
    for (const [k, v] of [...model]) {
      if (v % 3 === 0) model.delete(k)
      else model.set(k, v + 1000)
    }
    assert.deepEqual(sorted(table.columns()), entriesOf(model))
  })

  it("moves visited keys into the Map a few per scan, staying equal to a Map", () => {
    const entries = Array.from({ length: 40 }, (_, i) => [`k${i}`, i] as const)
    const table = restored(entries)
    const model = new Map<string, number>(entries)
    for (let scan = 0; scan < 12; scan++) {
      const gone: Array<string> = []
      table.forEach((v, k) => {
        if ((v + scan) % 11 === 0) gone.push(k)
        else table.set(k, v + 1)
      }, 3)
      for (const k of gone) table.delete(k)
      for (const [k, v] of [...model]) {
        if ((v + scan) % 11 === 0) model.delete(k)
        else model.set(k, v + 1)
      }
      table.set(`new${scan}`, scan)
      model.set(`new${scan}`, scan)
      assert.equal(table.size, model.size, `size after scan ${scan}`)
      assert.deepEqual(sorted(table.columns()), entriesOf(model), `after scan ${scan}`)
      for (const k of ["k0", "k5", "k39", `new${scan}`]) assert.equal(table.get(k), model.get(k))
    }
  })

  it("forEachWhere visits the entries whose values pass, in the Map and in the restored columns", () => {
    const table = restored(Array.from({ length: 30 }, (_, i) => [`k${i}`, i] as const))
    table.set("fresh", 100)
    table.set("k3", 1000)
    table.delete("k6")
    const seen: Array<readonly [string, number]> = []
    table.forEachWhere((v) => v % 3 === 0 || v >= 100, (v, k) => seen.push([k, v]))
    const expected = [...table.entries()].filter(([, v]) => v % 3 === 0 || v >= 100)
    assert.deepEqual(seen.sort(), expected.sort())
    assert.equal(seen.length, 10) // k0 k9 … k27 (not k3, now 1000, nor k6, removed), k3 and fresh
  })

  it("moves the restored keys into the structural table when a tuple key arrives", () => {
    const table = restored<number>([["a", 1], ["b", 2]]) as KeyMap<unknown, number>
    table.set(["a", 1], 3)
    table.set("a", 10)
    assert.equal(table.size, 3)
    assert.equal(table.get("a"), 10)
    assert.equal(table.get("b"), 2)
    assert.equal(table.get(["a", 1]), 3)
  })

  it("refuses lengths that do not add up to the text, and a table that is not empty", () => {
    const table = new KeyMap<string, number>()
    assert.throws(
      () => table.restoreColumns("abc", Uint32Array.of(1, 1), Float64Array.of(1, 2)),
      /malformed keyed state: 3 characters, lengths sum to 2/,
    )
    assert.throws(() => table.restoreColumns("ab", Uint32Array.of(1, 1), Float64Array.of(1)), /2 keys, 1 values/)
    table.set("x", 1)
    assert.throws(() => table.restoreColumns("a", Uint32Array.of(1), Float64Array.of(1)), /needs an empty table/)
  })
})
