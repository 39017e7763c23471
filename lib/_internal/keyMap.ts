/**
 * A key → value table for keyed operators: a native `Map` while every key is a primitive (the
 * fast path), switching once to Effect's structural `MutableHashMap` when a tuple or object key
 * appears, so `[a, b]` keys group by value as Spark's `equals`/`hashCode` would.
 * @internal
 */
import { MutableHashMap, Option } from "effect"

const isPrimitive = (k: unknown): boolean => (typeof k !== "object" && typeof k !== "function") || k === null

/** @internal */
export class KeyMap<K, V> {
  private prim: Map<K, V> | undefined = new Map()
  private structural: MutableHashMap.MutableHashMap<K, V> | undefined

  get size(): number {
    return this.prim !== undefined ? this.prim.size : MutableHashMap.size(this.structural!)
  }

  get(k: K): V | undefined {
    if (this.prim !== undefined) return isPrimitive(k) ? this.prim.get(k) : undefined
    return Option.getOrUndefined(MutableHashMap.get(this.structural!, k))
  }

  has(k: K): boolean {
    if (this.prim !== undefined) return isPrimitive(k) && this.prim.has(k)
    return MutableHashMap.has(this.structural!, k)
  }

  set(k: K, v: V): void {
    if (this.prim !== undefined) {
      if (isPrimitive(k)) {
        this.prim.set(k, v)
        return
      }
      this.structural = MutableHashMap.fromIterable(this.prim)
      this.prim = undefined
    }
    MutableHashMap.set(this.structural!, k, v)
  }

  delete(k: K): void {
    if (this.prim !== undefined) this.prim.delete(k)
    else MutableHashMap.remove(this.structural!, k)
  }

  /** Sets `keys[i]` to `values[i]` for every `i`: one tight loop (restoring a checkpoint). */
  setMany(keys: ArrayLike<K>, values: ArrayLike<V>): void {
    const n = keys.length
    let i = 0
    const prim = this.prim
    if (prim !== undefined) {
      for (; i < n; i++) {
        const k = keys[i]
        if (!isPrimitive(k)) break
        prim.set(k, values[i])
      }
    }
    for (; i < n; i++) this.set(keys[i], values[i])
  }

  /** Every key and value, in two arrays (native copies on the fast path). */
  columns(): { readonly keys: Array<K>; readonly values: Array<V> } {
    if (this.prim !== undefined) return { keys: Array.from(this.prim.keys()), values: Array.from(this.prim.values()) }
    const keys: Array<K> = []
    const values: Array<V> = []
    for (const [k, v] of this.structural!) {
      keys.push(k)
      values.push(v)
    }
    return { keys, values }
  }

  clear(): void {
    this.prim = new Map()
    this.structural = undefined
  }

  forEach(f: (v: V, k: K) => void): void {
    if (this.prim !== undefined) this.prim.forEach(f)
    else for (const [k, v] of this.structural!) f(v, k)
  }

  entries(): Array<readonly [K, V]> {
    const out: Array<readonly [K, V]> = []
    this.forEach((v, k) => out.push([k, v]))
    return out
  }
}
