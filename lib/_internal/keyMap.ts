/**
 * A key → value table for keyed operators: a native `Map` while every key is a primitive (the
 * fast path), switching once to Effect's structural `MutableHashMap` when a tuple or object key
 * appears, so `[a, b]` keys group by value as Spark's `equals`/`hashCode` would.
 *
 * Two additions serve checkpointed state (issue 12):
 *
 * - A restored base ({@link KeyMap.restoreColumns}): string keys restored from a checkpoint stay
 *   in their decoded columns (one string holding every key, their offsets, the values) under an
 *   open-addressing index, instead of 1 M `Map` inserts; lookups fall through to it, updates of
 *   its keys are written into its value column, new keys go into the `Map`. Every operation
 *   sees the whole state from the start.
 * - Copy-on-write snapshots ({@link KeyMap.snapshot}): a checkpoint takes the table's content as
 *   it is now, but copies it only when the writer asks for it, after the batch; if the table is
 *   changed before that, the first change of each key saves its previous value, so the copy is
 *   still the table as it was at the snapshot.
 * @internal
 */
import { MutableHashMap, Option } from "effect"

const isPrimitive = (k: unknown): boolean => (typeof k !== "object" && typeof k !== "function") || k === null

/** A key absent when a snapshot was taken (in a snapshot's saved previous values). */
const absent: unique symbol = Symbol("effect-dstream/keyMap/absent")

/** Every key and value, in two arrays. @internal */
export interface Columns<K, V> {
  readonly keys: Array<K>
  readonly values: Array<V>
}

/** A snapshot not yet copied: each key's value before its first change since the snapshot. */
interface Pending<K, V> {
  readonly before: Map<K, V | typeof absent>
  result: Columns<K, V> | undefined
}

/** FNV-1a over `s[from, to)`, by UTF-16 code unit. */
const hashRange = (s: string, from: number, to: number): number => {
  let h = 0x811c9dc5
  for (let i = from; i < to; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619)
  return h
}

/** FNV-1a over `bytes[from, to)`: the same as {@link hashRange} of the same ASCII text. */
const hashBytes = (bytes: Uint8Array, from: number, to: number): number => {
  let h = 0x811c9dc5
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i], 16777619)
  return h
}

/**
 * Restored string keys and their values: key `i` is `text.slice(starts[i], starts[i + 1])`,
 * its value `values[i]` while `live[i]` is 1; `index` maps hashes to `i + 1` (0: empty slot).
 */
class Base<V> {
  readonly index: Int32Array
  readonly mask: number
  readonly live: Uint8Array
  alive: number

  /** `ascii`: the keys' UTF-8 bytes when they are all ASCII (hashed faster than the text). */
  constructor(
    readonly text: string,
    readonly starts: Uint32Array,
    public values: Float64Array | Array<V>,
    ascii: Uint8Array | undefined,
  ) {
    const n = starts.length - 1
    let slots = 16
    while (slots < n * 2) slots *= 2
    this.index = new Int32Array(slots)
    this.mask = slots - 1
    this.live = new Uint8Array(n).fill(1)
    this.alive = n
    const { index, mask } = this
    for (let i = 0; i < n; i++) {
      let slot =
        (ascii !== undefined ? hashBytes(ascii, starts[i], starts[i + 1]) : hashRange(text, starts[i], starts[i + 1])) &
        mask
      while (index[slot] !== 0) slot = (slot + 1) & mask
      index[slot] = i + 1
    }
  }

  /** The position of live key `k`, or -1. */
  find(k: string): number {
    const { index, mask, starts, text } = this
    let slot = hashRange(k, 0, k.length) & mask
    for (let e = index[slot]; e !== 0; e = index[slot]) {
      const i = e - 1
      const at = starts[i]
      if (starts[i + 1] - at === k.length && text.startsWith(k, at)) return this.live[i] === 1 ? i : -1
      slot = (slot + 1) & mask
    }
    return -1
  }

  /** The position of live key `s[from, to)`, or -1 (no string made for the key). */
  findRange(s: string, from: number, to: number): number {
    const { index, mask, starts, text } = this
    const length = to - from
    let slot = hashRange(s, from, to) & mask
    for (let e = index[slot]; e !== 0; e = index[slot]) {
      const i = e - 1
      const at = starts[i]
      if (starts[i + 1] - at === length) {
        let j = 0
        while (j < length && text.charCodeAt(at + j) === s.charCodeAt(from + j)) j++
        if (j === length) return this.live[i] === 1 ? i : -1
      }
      slot = (slot + 1) & mask
    }
    return -1
  }

  keyAt(i: number): string {
    return this.text.slice(this.starts[i], this.starts[i + 1])
  }

  set(i: number, v: V): void {
    const values = this.values
    if (!(values instanceof Float64Array)) values[i] = v
    else if (typeof v === "number") values[i] = v
    else (this.values = Array.from(values) as Array<V>)[i] = v
  }

  remove(i: number): void {
    this.live[i] = 0
    this.alive--
    if (!(this.values instanceof Float64Array)) this.values[i] = undefined as V
  }

  forEach<K>(f: (v: V, k: K) => void): void {
    const { live, values } = this
    for (let i = 0; i < live.length; i++) if (live[i] === 1) f(values[i] as V, this.keyAt(i) as K)
  }
}

/** Offsets of strings laid one after another in `text`, from their lengths; checks they add up. */
const startsOf = (text: string, lengths: Uint32Array): Uint32Array => {
  const n = lengths.length
  const starts = new Uint32Array(n + 1)
  let at = 0
  for (let i = 0; i < n; i++) starts[i + 1] = at += lengths[i]
  if (at !== text.length) throw new Error(`malformed keyed state: ${text.length} characters, lengths sum to ${at}`)
  return starts
}

/** @internal */
export class KeyMap<K, V> {
  private prim: Map<K, V> | undefined = new Map()
  private structural: MutableHashMap.MutableHashMap<K, V> | undefined
  /** Restored string keys not moved into `prim` (see {@link restoreColumns}). */
  private base: Base<V> | undefined
  /** A snapshot taken and not yet copied. */
  private pending: Pending<K, V> | undefined

  get size(): number {
    return this.prim !== undefined ? this.prim.size + (this.base?.alive ?? 0) : MutableHashMap.size(this.structural!)
  }

  get(k: K): V | undefined {
    if (this.prim !== undefined) {
      if (!isPrimitive(k)) return undefined
      const v = this.prim.get(k)
      if (v !== undefined || this.base === undefined || typeof k !== "string") return v
      const i = this.base.find(k)
      return i < 0 ? undefined : this.base.values[i] as V
    }
    return Option.getOrUndefined(MutableHashMap.get(this.structural!, k))
  }

  has(k: K): boolean {
    if (this.prim !== undefined) {
      return isPrimitive(k) &&
        (this.prim.has(k) || (this.base !== undefined && typeof k === "string" && this.base.find(k) >= 0))
    }
    return MutableHashMap.has(this.structural!, k)
  }

  set(k: K, v: V): void {
    if (this.pending !== undefined) this.remember(k)
    if (this.prim !== undefined) {
      if (isPrimitive(k)) {
        if (this.base !== undefined && typeof k === "string") {
          const i = this.base.find(k)
          if (i >= 0) return this.base.set(i, v)
        }
        this.prim.set(k, v)
        return
      }
      this.settle()
      this.materialize()
      this.structural = MutableHashMap.fromIterable(this.prim)
      this.prim = undefined
    }
    MutableHashMap.set(this.structural!, k, v)
  }

  delete(k: K): void {
    if (this.pending !== undefined) this.remember(k)
    if (this.prim !== undefined) {
      if (!this.prim.delete(k) && this.base !== undefined && typeof k === "string") {
        const i = this.base.find(k)
        if (i >= 0) this.base.remove(i)
      }
    } else MutableHashMap.remove(this.structural!, k)
  }

  /** Sets `keys[i]` to `values[i]` for every `i`: one tight loop (restoring a checkpoint). */
  setMany(keys: ArrayLike<K>, values: ArrayLike<V>): void {
    const n = keys.length
    let i = 0
    const prim = this.prim
    if (prim !== undefined && this.base === undefined && this.pending === undefined) {
      for (; i < n; i++) {
        const k = keys[i]
        if (!isPrimitive(k)) break
        prim.set(k, values[i])
      }
    }
    for (; i < n; i++) this.set(keys[i], values[i])
  }

  /**
   * Fills an empty table from restored columns: string key `i` is `text.slice(at, at +
   * lengths[i])` (the keys one after another), its value `values[i]`. The keys stay in `text`
   * (see the module's comment); no key may appear twice.
   */
  restoreColumns(
    text: string,
    lengths: Uint32Array,
    values: Float64Array | Array<V>,
    utf8?: Uint8Array | undefined,
  ): void {
    if (this.prim === undefined || this.size !== 0) throw new Error("restoreColumns needs an empty table")
    const n = lengths.length
    if (values.length !== n) throw new Error(`malformed keyed state: ${n} keys, ${values.length} values`)
    const starts = startsOf(text, lengths)
    const ascii = utf8 !== undefined && utf8.length === text.length ? utf8 : undefined
    this.base = n === 0 ? undefined : new Base<V>(text, starts, values, ascii)
  }

  /**
   * Sets string key `i` (`text[at, at + lengths[i])`, the keys one after another) to
   * `values[i]`, or with `values` undefined deletes it: a delta restored onto
   * {@link restoreColumns}'s table, without making a string for keys of the restored base.
   */
  applyColumns(text: string, lengths: Uint32Array, values: ArrayLike<V> | undefined): void {
    const starts = startsOf(text, lengths)
    const base = this.base
    const prim = this.prim
    if (base === undefined || prim === undefined || this.pending !== undefined) {
      for (let i = 0; i < lengths.length; i++) {
        const k = text.slice(starts[i], starts[i + 1]) as K
        if (values === undefined) this.delete(k)
        else this.set(k, values[i])
      }
      return
    }
    for (let i = 0; i < lengths.length; i++) {
      const from = starts[i]
      const to = starts[i + 1]
      const at = base.findRange(text, from, to)
      if (at >= 0) {
        if (values === undefined) base.remove(at)
        else base.set(at, values[i])
      } else if (values === undefined) prim.delete(text.slice(from, to) as K)
      else prim.set(text.slice(from, to) as K, values[i])
    }
  }

  /** Moves the restored base into the `Map` (before switching to structural keys). */
  private materialize(): void {
    const base = this.base
    if (base === undefined) return
    this.base = undefined
    const prim = this.prim!
    base.forEach<K>((v, k) => prim.set(k, v))
  }

  /**
   * The table's content as it is now, copied when the returned function is first called (by
   * the checkpoint writer, after the batch). Changes in between save each changed key's
   * previous value first, so the copy is the content at the snapshot.
   */
  snapshot(): () => Columns<K, V> {
    this.settle()
    if (this.prim === undefined) {
      const now = this.columns()
      return () => now
    }
    const p: Pending<K, V> = { before: new Map(), result: undefined }
    this.pending = p
    return () => {
      if (p.result === undefined) this.copyPending(p)
      return p.result!
    }
  }

  /** Copies a pending snapshot now (before a change that it cannot undo). */
  private settle(): void {
    if (this.pending !== undefined) this.copyPending(this.pending)
  }

  private copyPending(p: Pending<K, V>): void {
    if (this.pending === p) this.pending = undefined
    const now = this.columns()
    const before = p.before
    if (before.size === 0) {
      p.result = now
      return
    }
    const keys: Array<K> = []
    const values: Array<V> = []
    for (let i = 0; i < now.keys.length; i++) {
      const k = now.keys[i]
      if (before.has(k)) continue
      keys.push(k)
      values.push(now.values[i])
    }
    before.forEach((v, k) => {
      if (v === absent) return
      keys.push(k)
      values.push(v)
    })
    p.result = { keys, values }
  }

  /** While a snapshot is pending: saves `k`'s value before its first change. */
  private remember(k: K): void {
    const before = this.pending!.before
    if (this.prim === undefined || !isPrimitive(k)) return this.settle()
    if (before.has(k)) return
    // one lookup; `has` only for a key whose value is `undefined` (absent or stored as such)
    const v = this.get(k)
    before.set(k, v !== undefined || this.has(k) ? v as V : absent)
  }

  /** Every key and value, in two arrays (native copies on the fast path). */
  columns(): Columns<K, V> {
    if (this.prim !== undefined) {
      const keys = Array.from(this.prim.keys())
      const values = Array.from(this.prim.values())
      this.base?.forEach<K>((v, k) => {
        keys.push(k)
        values.push(v)
      })
      return { keys, values }
    }
    const keys: Array<K> = []
    const values: Array<V> = []
    for (const [k, v] of this.structural!) {
      keys.push(k)
      values.push(v)
    }
    return { keys, values }
  }

  clear(): void {
    this.settle()
    this.prim = new Map()
    this.structural = undefined
    this.base = undefined
  }

  /**
   * Calls `f` for every entry. `f` may set the entry it is given and delete entries; keys it
   * adds may or may not be visited. With `migrate`, up to that many restored keys visited (whose
   * strings the visit makes anyway) move into the `Map` as they go: a scan of every key each
   * batch (updateStateByKey) then stops re-making their strings after a few batches.
   */
  forEach(f: (v: V, k: K) => void, migrate = 0): void {
    if (this.prim === undefined) {
      for (const [k, v] of this.structural!) f(v, k)
      return
    }
    this.prim.forEach(f)
    const base = this.base
    if (base === undefined) return
    if (migrate <= 0) return base.forEach(f)
    const prim = this.prim
    const live = base.live
    for (let i = 0; i < live.length; i++) {
      if (live[i] !== 1) continue
      const k = base.keyAt(i) as K
      f(base.values[i] as V, k)
      if (migrate > 0 && live[i] === 1 && this.base === base && this.prim === prim) {
        prim.set(k, base.values[i] as V)
        base.remove(i)
        migrate--
      }
    }
    if (base.alive === 0 && this.base === base) this.base = undefined
  }

  /**
   * Calls `f` for every entry whose value passes `test` (as {@link forEach}); a restored key's
   * string is made only when its value passes.
   */
  forEachWhere(test: (v: V) => boolean, f: (v: V, k: K) => void): void {
    if (this.prim === undefined) {
      for (const [k, v] of this.structural!) if (test(v)) f(v, k)
      return
    }
    this.prim.forEach((v, k) => {
      if (test(v)) f(v, k)
    })
    const base = this.base
    if (base === undefined) return
    const { live } = base
    for (let i = 0; i < live.length; i++) {
      if (live[i] === 1 && test(base.values[i] as V)) f(base.values[i] as V, base.keyAt(i) as K)
    }
  }

  entries(): Array<readonly [K, V]> {
    const out: Array<readonly [K, V]> = []
    this.forEach((v, k) => out.push([k, v]))
    return out
  }
}
