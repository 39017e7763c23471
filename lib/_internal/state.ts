/**
 * The stateful nodes: Spark's `StateDStream` (updateStateByKey) and `MapWithStateDStream`
 * (mapWithState, stateSnapshots). The keyed state is a table owned by the node, mutated in
 * place batch by batch on the job fiber: mapWithState touches only the keys with data (plus,
 * on checkpoint batches with a timeout, a scan for idle keys); updateStateByKey calls its
 * function for every key, as Spark does. While checkpointing, each node also records the keys
 * it changed, so a checkpoint holds the whole table or only the changes (see checkpointing.ts).
 * @internal
 */
import { Effect, Option, Schema } from "effect"
import { IllegalStateError } from "../Errors.ts"
import { type MappingFunction, StateImpl, type StateSpecSchemas } from "../State.ts"
import * as Time from "../Time.ts"
import { decodeColumn, decodeStrings, encodeColumn } from "./columns.ts"
import { KeyMap } from "./keyMap.ts"
import { type Batch, Node, type NodeEnv } from "./node.ts"

/** A node whose data goes into checkpoints. @internal */
export interface Checkpointed {
  /** A stable name, if the user gave one. */
  readonly checkpointName: string | undefined
  /** The data to checkpoint: JSON values, `Uint8Array`s where binary (see Checkpoint.encode). */
  snapshotCheckpoint(): unknown
  /** Restores `snapshotCheckpoint` data; throws an Error describing what does not match. */
  restoreCheckpoint(data: unknown, time: number): void
}

/** @internal */
export const isCheckpointed = (node: Node<any>): node is Node<any> & Checkpointed =>
  "snapshotCheckpoint" in node && typeof node.snapshotCheckpoint === "function"

/**
 * A checkpointed node whose checkpoints can be incremental: after `trackChanges`, it records
 * the keys changed since the last capture; `captureCheckpoint` takes, on the job fiber, the
 * whole state (`full`) or only what changed, and returns the encoding to run later, off the
 * batch (by the checkpoint writer). `restoreCheckpoint` then gets the full data first and each
 * delta after it, in order.
 * @internal
 */
export interface Incremental {
  trackChanges(): void
  captureCheckpoint(full: boolean): () => unknown
  /** How many keys a delta captured now would hold, and how many keys the state has. */
  changeCount(): { readonly changed: number; readonly size: number }
}

/** @internal */
export const isIncremental = (node: Node<any>): node is Node<any> & Checkpointed & Incremental =>
  isCheckpointed(node) && "captureCheckpoint" in node && typeof node.captureCheckpoint === "function"

/**
 * Keyed state as checkpoint format 2 writes it: columns (see columns.ts) of the Schema-encoded
 * keys and states (and, for mapWithState, the times keys were last touched); a delta also lists
 * the keys removed since the previous checkpoint.
 */
interface KeyedData {
  readonly format: 2
  readonly full: boolean
  readonly hasState: boolean
  readonly lastTime: number | undefined
  readonly keys: Uint8Array
  readonly states: Uint8Array
  readonly times?: Uint8Array | undefined
  readonly removed: Uint8Array
}

/** What one capture took from the state: plain references, encoded later. */
interface Captured<K, S> {
  readonly keys: Array<K>
  readonly states: Array<S>
  readonly times: Array<number> | undefined
  readonly removed: Array<K>
}

/**
 * Keys a delta may hold at least before the next checkpoint is a full one (checkpointing.ts
 * writes a full one once the deltas since the last hold more than this and than half the
 * state). @internal
 */
export const minChainKeys = 50_000

/** A removed key in a table of changes. @internal */
export const removed: unique symbol = Symbol("effect-dstream/state/removed")

/**
 * A delta from the tables of changes of the batches since the last capture, oldest first (a
 * later table's entry wins), each entry a state, a frozen record (`timed`) or {@link removed}:
 * run by the writer.
 */
const capturedChanges = <K, S>(tables: ReadonlyArray<KeyMap<K, unknown>>, timed: boolean): Captured<K, S> => {
  let changed = tables[0] ?? new KeyMap<K, unknown>()
  if (tables.length > 1) {
    changed = new KeyMap<K, unknown>()
    for (const table of tables) table.forEach((v, k) => changed.set(k, v))
  }
  const c: Captured<K, S> = { keys: [], states: [], times: timed ? [] : undefined, removed: [] }
  changed.forEach((v, k) => {
    if (v === removed) c.removed.push(k)
    else if (timed) {
      const rec = v as StateRecord<S>
      c.keys.push(k)
      c.states.push(rec.state)
      c.times!.push(rec.time)
    } else {
      c.keys.push(k)
      c.states.push(v as S)
    }
  })
  return c
}

const encodeCaptured = <K, S>(
  c: Captured<K, S>,
  codecs: Codecs<K, S>,
  full: boolean,
  hasState: boolean,
  lastTime: number | undefined,
): KeyedData => {
  const { encodeKey, encodeState } = codecs
  // without Schemas the captured columns are encoded as they are (no copy of n keys and states)
  const keys: ReadonlyArray<unknown> = encodeKey === identity ? c.keys : c.keys.map(encodeKey)
  const states: ReadonlyArray<unknown> = encodeState === identity ? c.states : c.states.map(encodeState)
  return {
    format: 2,
    full,
    hasState,
    lastTime,
    keys: encodeColumn(keys),
    states: encodeColumn(states),
    times: c.times === undefined ? undefined : encodeColumn(c.times),
    removed: encodeColumn(c.removed.map(encodeKey)),
  }
}

const isKeyedData = (d: unknown): d is KeyedData =>
  typeof d === "object" && d !== null && (d as KeyedData).format === 2 && (d as KeyedData).keys instanceof Uint8Array &&
  (d as KeyedData).states instanceof Uint8Array && (d as KeyedData).removed instanceof Uint8Array

/**
 * Applies format-2 keyed data: a full one replaces the table, a delta removes and sets keys.
 * Each table entry is the decoded state, or `record(state, time)` when given (mapWithState with
 * a timeout). A full one of string keys without Schemas stays in its decoded columns (see
 * `KeyMap.restoreColumns`: no `Map` insert per key).
 */
const applyKeyedData = <K, S>(
  d: KeyedData,
  codecs: Codecs<K, S>,
  table: KeyMap<K, unknown>,
  record: ((s: S, at: number | undefined) => unknown) | undefined,
): void => {
  const { decodeKey, decodeState } = codecs
  const plain = plainCodecs(codecs)
  if (d.full) table.clear()
  const strings = plain ? decodeStrings(d.keys) : undefined
  const keys = strings === undefined ? decodeColumn(d.keys) : undefined
  const states = decodeColumn(d.states)
  const times = d.times === undefined ? undefined : decodeColumn(d.times)
  const n = strings !== undefined ? strings.lengths.length : keys!.length
  if (n !== states.length || (times !== undefined && times.length !== n)) {
    throw new Error(`malformed keyed state: ${n} keys, ${states.length} states`)
  }
  if (!d.full) {
    const removedStrings = plain ? decodeStrings(d.removed) : undefined
    if (removedStrings !== undefined) table.applyColumns(removedStrings.text, removedStrings.lengths, undefined)
    else {
      const removed = decodeColumn(d.removed)
      for (let i = 0; i < removed.length; i++) table.delete(decodeKey(removed[i]))
    }
  }
  if (strings !== undefined) {
    let values: Float64Array | Array<unknown>
    if (record !== undefined) {
      values = new Array<unknown>(n)
      for (let i = 0; i < n; i++) {
        values[i] = record(states[i] as S, times === undefined ? undefined : times[i] as number)
      }
    } else values = states instanceof Float64Array ? states : Array.from(states)
    if (d.full) table.restoreColumns(strings.text, strings.lengths, values, strings.utf8)
    else table.applyColumns(strings.text, strings.lengths, values)
  } else if (record === undefined && plain) {
    table.setMany(keys as ArrayLike<K>, states)
  } else if (record === undefined) {
    for (let i = 0; i < n; i++) table.set(decodeKey(keys![i]), decodeState(states[i]))
  } else {
    for (let i = 0; i < n; i++) {
      table.set(
        decodeKey(keys![i]),
        record(decodeState(states[i]), times === undefined ? undefined : times[i] as number),
      )
    }
  }
}

/** Encoders/decoders of keys and states: Schema JSON codecs, or the values as they are. @internal */
export interface Codecs<K, S> {
  readonly encodeKey: (k: K) => unknown
  readonly decodeKey: (u: unknown) => K
  readonly encodeState: (s: S) => unknown
  readonly decodeState: (u: unknown) => S
}

const identity = (u: any): any => u

/** `true` when the codecs leave keys and states as they are (no Schemas). */
const plainCodecs = (codecs: Codecs<any, any>): boolean =>
  codecs.decodeKey === identity && codecs.decodeState === identity

const codec = <A>(schema: Schema.Codec<A, any> | undefined) => {
  if (schema === undefined) return { encode: identity, decode: identity }
  const json = Schema.toCodecJson(schema as Schema.Codec<A, any, never, never>)
  return {
    encode: Schema.encodeUnknownSync(json) as (a: A) => unknown,
    decode: Schema.decodeUnknownSync(json) as (u: unknown) => A,
  }
}

/** @internal */
export const makeCodecs = <K, S>(schemas: StateSpecSchemas<K, S>): Codecs<K, S> => {
  const k = codec(schemas.key)
  const s = codec(schemas.state)
  return { encodeKey: k.encode, decodeKey: k.decode, encodeState: s.encode, decodeState: s.decode }
}

/**
 * Common part: the state advances batch by batch. If a batch time was skipped (nothing asked
 * for this node's batch then), the parent's batches in between are folded in first, so the
 * state never misses data.
 * @internal
 */
export abstract class KeyedStateNode<K, V, Out> extends Node<Out> implements Checkpointed {
  override mustCheckpoint = true
  /** Time of the last batch folded into the state. */
  lastTime: number | undefined = undefined
  /**
   * While checkpointing: the keys set or removed by the current batch, each with what it holds
   * now (the state, a frozen record, or {@link removed}). One table per batch, not one since the
   * last capture: a table of every change since then would grow (and rehash) in whichever batch
   * crosses its next size, often the checkpoint batch itself; the writer merges them.
   */
  protected changed: KeyMap<K, unknown> | undefined = undefined
  /** The tables of the earlier batches since the last capture, and their entries in all. */
  private earlier: Array<KeyMap<K, unknown>> = []
  private earlierEntries = 0
  /**
   * The changes since the last capture outgrew any delta (the initial state's load, a batch
   * touching most keys): the next checkpoint is a full one, so they are no longer recorded.
   */
  private overflowed = false

  constructor(
    readonly parent: Node<readonly [K, V]>,
    readonly checkpointName: string | undefined,
  ) {
    super(parent.ctx, [parent], parent.slideMillis)
  }

  /** Folds the parent's batch of `t` (or its absence) into the state; the node's batch. */
  protected abstract apply(t: number, input: Batch<readonly [K, V]> | undefined): Batch<Out> | undefined
  abstract snapshotCheckpoint(): unknown
  abstract restoreCheckpoint(data: unknown, time: number): void
  /** Keys in the state (infinite by default: the recorded changes are never dropped). */
  protected stateSize(): number {
    return Number.POSITIVE_INFINITY
  }

  compute(t: number): Effect.Effect<Batch<Out> | undefined, unknown, NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      let last = this.lastTime ?? this.zeroTime!
      // Asked again for the batch just folded in (it produced no batch, so it is not memoised).
      if (t === last && this.lastTime !== undefined) return this.generated.get(t)
      if (t <= last) {
        return yield* new IllegalStateError({
          message: `Cannot compute ${this.kind} at ${Time.format(t)}: its state has already advanced to ${
            Time.format(last)
          }`,
        })
      }
      for (let s = last + this.slideMillis; s < t; s += this.slideMillis) {
        const skipped = yield* this.parent.getOrCompute(s)
        this.nextChangeTable()
        this.apply(s, skipped)
        this.lastTime = last = s
        this.dropOversizedChanges()
      }
      const input = yield* this.parent.getOrCompute(t)
      this.nextChangeTable()
      const out = this.apply(t, input)
      this.lastTime = t
      this.dropOversizedChanges()
      return out
    })
  }

  /**
   * Spark remembers a stateful stream's batches for 2 × its checkpoint interval, to recompute
   * state from lineage. Recovery here restores whole snapshots, so by default only the current
   * batch is kept (a 1 M-key state batch is large).
   */
  override initialize(zero: number): void {
    const explicit = this.rememberMillis !== undefined
    super.initialize(zero)
    if (!explicit) this.rememberMillis = Math.max(this.slideMillis, this.minRememberMillis ?? 0)
  }

  trackChanges(): void {
    this.changed = new KeyMap()
    this.earlier = []
    this.earlierEntries = 0
    this.overflowed = false
  }

  /** Before a batch is folded in: the previous batch's table of changes joins the earlier ones. */
  private nextChangeTable(): void {
    const changed = this.changed
    if (changed === undefined || changed.size === 0) return
    this.earlier.push(changed)
    this.earlierEntries += changed.size
    this.changed = new KeyMap()
  }

  /** Stops recording changes once a delta could not hold them (see {@link overflowed}). */
  private dropOversizedChanges(): void {
    const changed = this.changed
    if (changed === undefined) return
    if (this.earlierEntries + changed.size > Math.max(this.stateSize() / 2, minChainKeys)) {
      this.changed = undefined
      this.earlier = []
      this.earlierEntries = 0
      this.overflowed = true
    }
  }

  /**
   * Takes the recorded changes (the tables of the batches since the last capture, oldest
   * first), starting a new record; throws for a delta when they were dropped (the checkpoint
   * runtime captures a full one then: {@link changeCount} is infinite).
   */
  protected takeChanged(full: boolean): ReadonlyArray<KeyMap<K, unknown>> {
    if (this.overflowed && !full) throw new Error("the changes since the last checkpoint were not recorded")
    const tables = this.earlier
    if (this.changed !== undefined && this.changed.size > 0) tables.push(this.changed)
    this.changed = new KeyMap()
    this.earlier = []
    this.earlierEntries = 0
    this.overflowed = false
    return tables
  }

  /**
   * How many keys a delta captured now would hold at most (a key changed in several batches
   * counts once per batch; infinite: too many to record), and the state's.
   */
  changeCount(): { readonly changed: number; readonly size: number } {
    return {
      changed: this.overflowed ? Number.POSITIVE_INFINITY : this.earlierEntries + (this.changed?.size ?? 0),
      size: this.stateSize(),
    }
  }

  /** `true` at this node's checkpoint times (Spark's full-scan batches). */
  isCheckpointTime(t: number): boolean {
    return this.checkpointMillis !== undefined && (t - this.zeroTime!) % this.checkpointMillis === 0
  }
}

/**
 * updateStateByKey: every batch, the function sees every key with state or data (values empty
 * without data); `None` removes the key; the batch is the whole state.
 * @internal
 */
export class UpdateStateNode<K, V, S> extends KeyedStateNode<K, V, readonly [K, S]> {
  readonly kind = "StateDStream"
  readonly state = new KeyMap<K, S>()
  /** Spark: a previous state RDD exists (from the first batch the parent produced). */
  hasState = false

  constructor(
    parent: Node<readonly [K, V]>,
    readonly update: (time: number, key: K, values: ReadonlyArray<V>, state: Option.Option<S>) => Option.Option<S>,
    initial: ReadonlyArray<readonly [K, S]> | undefined,
    readonly codecs: Codecs<K, S>,
    name: string | undefined,
  ) {
    super(parent, name)
    this.initial = initial
  }

  /** The initial state, until the first batch loads it (then released). */
  initial: ReadonlyArray<readonly [K, S]> | undefined

  protected apply(t: number, input: Batch<readonly [K, V]> | undefined): Batch<readonly [K, S]> | undefined {
    if (!this.hasState) {
      if (input === undefined) return undefined
      if (this.initial !== undefined) {
        for (const [k, s] of this.initial) {
          this.state.set(k, s)
          this.changed?.set(k, s)
        }
      }
      this.initial = undefined
      this.hasState = true
    }
    const groups = new KeyMap<K, Array<V>>()
    if (input !== undefined) {
      for (let i = 0; i < input.length; i++) {
        const kv = input[i]
        const vs = groups.get(kv[0])
        if (vs === undefined) groups.set(kv[0], [kv[1]])
        else vs.push(kv[1])
      }
    }
    const out: Array<readonly [K, S]> = []
    const changed = this.changed
    const none: ReadonlyArray<V> = []
    const gone: Array<K> = []
    // Restored keys move into the Map as they are visited, a quarter million per batch.
    this.state.forEach((s, k) => {
      const vs = groups.get(k)
      if (vs !== undefined) groups.delete(k)
      const next = this.update(t, k, vs ?? none, Option.some(s))
      if (Option.isSome(next)) {
        if (next.value !== s) {
          this.state.set(k, next.value)
          changed?.set(k, next.value)
        }
        out.push([k, next.value])
      } else {
        gone.push(k)
      }
    }, 250_000)
    for (let i = 0; i < gone.length; i++) {
      this.state.delete(gone[i])
      changed?.set(gone[i], removed)
    }
    groups.forEach((vs, k) => {
      const next = this.update(t, k, vs, Option.none())
      if (Option.isSome(next)) {
        this.state.set(k, next.value)
        changed?.set(k, next.value)
        out.push([k, next.value])
      }
    })
    return out
  }

  captureCheckpoint(full: boolean): () => unknown {
    const changed = this.takeChanged(full)
    const { hasState, lastTime, codecs } = this
    if (!full) return () => encodeCaptured(capturedChanges<K, S>(changed, false), codecs, false, hasState, lastTime)
    return this.captureFull()
  }

  /** A full capture; the change record is left alone (the next delta still holds its keys). */
  private captureFull(): () => unknown {
    const { hasState, lastTime, codecs } = this
    // Copy-on-write: the table is copied by the writer, after the batch (see KeyMap.snapshot).
    const take = this.state.snapshot()
    return () => {
      const { keys, values } = take()
      return encodeCaptured({ keys, states: values, times: undefined, removed: [] }, codecs, true, hasState, lastTime)
    }
  }

  protected override stateSize(): number {
    return this.state.size
  }

  snapshotCheckpoint(): unknown {
    return this.captureFull()()
  }

  restoreCheckpoint(data: unknown, time: number): void {
    if (isKeyedData(data)) {
      applyKeyedData(data, this.codecs, this.state as KeyMap<K, unknown>, undefined)
      this.hasState = data.hasState === true
      this.lastTime = typeof data.lastTime === "number" ? data.lastTime : time
      return
    }
    const d = data as { hasState: boolean; lastTime?: number; entries: ReadonlyArray<readonly [unknown, unknown]> }
    if (typeof d !== "object" || d === null || !Array.isArray(d.entries)) throw new Error("not updateStateByKey data")
    const { decodeKey, decodeState } = this.codecs
    this.state.clear()
    for (const [k, s] of d.entries) this.state.set(decodeKey(k), decodeState(s))
    this.hasState = d.hasState === true
    this.lastTime = typeof d.lastTime === "number" ? d.lastTime : time
  }
}

/**
 * A key's state in mapWithState with a timeout, with the time it was last touched. Frozen: an
 * update stores a new record, so a table of changes can hold it as it was. @internal
 */
interface StateRecord<S> {
  readonly state: S
  readonly time: number
}

/**
 * mapWithState: the function is called once per record of the batch, in order, and once per
 * key timing out (on checkpoint batches). The batch is what the function emitted. Without a
 * timeout the table holds the states themselves (no record per key: a plain `Map`'s memory);
 * with one, a {@link StateRecord} per key.
 * @internal
 */
export class MapWithStateNode<K, V, S, T> extends KeyedStateNode<K, V, T> {
  readonly kind = "MapWithStateDStream"
  /** Key → state, or → {@link StateRecord} when `timed`. */
  readonly state = new KeyMap<K, unknown>()
  private readonly timed: boolean
  private initialized = false
  private readonly handle = new StateImpl<S>()
  private lastValue: Option.Some<V> | undefined = undefined
  /** The user's function when the spec came from `StateSpec.function` (see State.ts). */
  private readonly total: ((key: K, value: Option.Option<V>, state: StateImpl<S>) => T) | undefined

  constructor(
    parent: Node<readonly [K, V]>,
    readonly fn: MappingFunction<K, V, S, T>,
    initial: ReadonlyArray<readonly [K, S]> | undefined,
    readonly timeoutMillis: number | undefined,
    readonly codecs: Codecs<K, S>,
    name: string | undefined,
    total?: ((key: K, value: Option.Option<V>, state: StateImpl<S>) => T) | undefined,
  ) {
    super(parent, name)
    this.initial = initial
    this.total = total
    this.timed = timeoutMillis !== undefined
  }

  /** The initial state, until the first batch loads it (then released). */
  initial: ReadonlyArray<readonly [K, S]> | undefined

  /** Spark's `DEFAULT_CHECKPOINT_DURATION_MULTIPLIER`: 10 slides. */
  override defaultCheckpointMillis(): number {
    return this.slideMillis * 10
  }

  protected apply(t: number, input: Batch<readonly [K, V]> | undefined): Batch<T> {
    if (!this.initialized) this.loadInitial(t)
    const out: Array<T> = []
    if (input !== undefined && input.length > 0) {
      if (this.total !== undefined) this.applyTotal(t, input, this.total, out)
      else this.applyPartial(t, input, out)
    }
    if (this.timed && this.isCheckpointTime(t)) this.timeOut(t, out)
    return out
  }

  /** Stores state `s` of key `k`, touched at `t`. */
  private put(k: K, s: S, t: number): void {
    const entry = this.timed ? { state: s, time: t } : s
    this.state.set(k, entry)
    this.changed?.set(k, entry)
  }

  /** Loads the initial state (first batch); a method of its own so `apply`'s loops stay small. */
  private loadInitial(t: number): void {
    if (this.initial !== undefined) { for (const [k, s] of this.initial) this.put(k, s, t) }
    this.initial = undefined
    this.initialized = true
  }

  /**
   * The value of the current record as an `Option`. Options are immutable values, so the `Some`
   * of the previous record is handed out again when the value is the same (`[word, 1]` pairs:
   * one allocation per batch instead of one per record).
   */
  private someValue(v: V): Option.Option<V> {
    const last = this.lastValue
    if (last !== undefined && last.value === v) return last
    return (this.lastValue = Option.some(v) as Option.Some<V>)
  }

  /** Points the handle at key `k`'s state (table entry `entry`); `true` if the key has state. */
  private wrap(k: K, entry: unknown): boolean {
    const exists = entry !== undefined || (!this.timed && this.state.has(k))
    this.handle.wrapValue(exists, this.timed ? (entry as StateRecord<S> | undefined)?.state : entry as S)
    return exists
  }

  /** After the user's call for a record of key `k` (with state if `exists`): keeps the handle's state. */
  private keep(t: number, k: K, exists: boolean): void {
    const handle = this.handle
    if (handle.isRemoved()) {
      if (exists) {
        this.state.delete(k)
        this.changed?.set(k, removed)
      }
    } else if (handle.isUpdated() || (this.timed && handle.exists())) {
      this.put(k, handle.current() as S, t)
    }
  }

  /** `StateSpec.function`: every call emits its result; no `Option` per result. */
  private applyTotal(
    t: number,
    input: Batch<readonly [K, V]>,
    f: (key: K, value: Option.Option<V>, state: StateImpl<S>) => T,
    out: Array<T>,
  ): void {
    const handle = this.handle
    const state = this.state
    for (let i = 0; i < input.length; i++) {
      const kv = input[i]
      const k = kv[0]
      const exists = this.wrap(k, state.get(k))
      const mapped = f(k, this.someValue(kv[1]), handle)
      this.keep(t, k, exists)
      out.push(mapped)
    }
  }

  private applyPartial(t: number, input: Batch<readonly [K, V]>, out: Array<T>): void {
    const handle = this.handle
    const state = this.state
    for (let i = 0; i < input.length; i++) {
      const kv = input[i]
      const k = kv[0]
      const exists = this.wrap(k, state.get(k))
      const mapped = this.fn(t, k, this.someValue(kv[1]), handle)
      this.keep(t, k, exists)
      if (Option.isSome(mapped)) out.push(mapped.value)
    }
  }

  /** Checkpoint batches with a timeout: one call for each key idle longer than the timeout. */
  private timeOut(t: number, out: Array<T>): void {
    const state = this.state
    const threshold = t - this.timeoutMillis!
    const expired: Array<readonly [K, S]> = []
    // Restored keys' strings are made only for the expired ones.
    state.forEachWhere((entry) => (entry as StateRecord<S>).time < threshold, (entry, k) => {
      expired.push([k, (entry as StateRecord<S>).state])
    })
    for (let i = 0; i < expired.length; i++) {
      const [k, s] = expired[i]
      const mapped = this.fn(t, k, Option.none(), this.handle.wrapTimingOut(s))
      state.delete(k)
      this.changed?.set(k, removed)
      if (Option.isSome(mapped)) out.push(mapped.value)
    }
  }

  /** The whole state, as `stateSnapshots()` emits it. */
  entries(): Array<readonly [K, S]> {
    const out: Array<readonly [K, S]> = []
    if (this.timed) this.state.forEach((rec, k) => out.push([k, (rec as StateRecord<S>).state]))
    else this.state.forEach((s, k) => out.push([k, s as S]))
    return out
  }

  captureCheckpoint(full: boolean): () => unknown {
    const changed = this.takeChanged(full)
    const { initialized, lastTime, codecs, timed } = this
    if (!full) return () => encodeCaptured(capturedChanges<K, S>(changed, timed), codecs, false, initialized, lastTime)
    return this.captureFull()
  }

  /** A full capture; the change record is left alone (the next delta still holds its keys). */
  private captureFull(): () => unknown {
    const { initialized, lastTime, codecs, timed } = this
    // Plain references (states, frozen records), copied out of the table by the writer, after
    // the batch (copy-on-write, see KeyMap.snapshot).
    const take = this.state.snapshot()
    return () => {
      const { keys, values } = take()
      const c: Captured<K, S> = { keys, states: values as Array<S>, times: undefined, removed: [] }
      if (timed) {
        const states = new Array<S>(values.length)
        const times = new Array<number>(values.length)
        for (let i = 0; i < values.length; i++) {
          const rec = values[i] as StateRecord<S>
          states[i] = rec.state
          times[i] = rec.time
        }
        return encodeCaptured({ ...c, states, times }, codecs, true, initialized, lastTime)
      }
      return encodeCaptured(c, codecs, true, initialized, lastTime)
    }
  }

  protected override stateSize(): number {
    return this.state.size
  }

  snapshotCheckpoint(): unknown {
    return this.captureFull()()
  }

  restoreCheckpoint(data: unknown, time: number): void {
    const timed = this.timed
    if (isKeyedData(data)) {
      applyKeyedData(
        data,
        this.codecs,
        this.state,
        timed ? (s: S, at): StateRecord<S> => ({ state: s, time: at ?? time }) : undefined,
      )
      this.initialized = data.hasState === true
      this.lastTime = typeof data.lastTime === "number" ? data.lastTime : time
      return
    }
    const d = data as {
      initialized: boolean
      lastTime?: number
      entries: ReadonlyArray<readonly [unknown, unknown, number]>
    }
    if (typeof d !== "object" || d === null || !Array.isArray(d.entries)) throw new Error("not mapWithState data")
    const { decodeKey, decodeState } = this.codecs
    this.state.clear()
    for (const [k, s, at] of d.entries) {
      this.state.set(decodeKey(k), timed ? { state: decodeState(s), time: at } : decodeState(s))
    }
    this.initialized = d.initialized === true
    this.lastTime = typeof d.lastTime === "number" ? d.lastTime : time
  }
}

/**
 * `stateSnapshots()`: the whole state of a mapWithState (in one process, or its owned shards in a
 * scale-out) after each of its batches. @internal
 */
export class StateSnapshotsNode<K, S> extends Node<readonly [K, S]> {
  constructor(
    readonly source: Node<unknown> & { entries(): Array<readonly [K, S]> },
    readonly kind: string = "StateSnapshotsDStream",
  ) {
    super(source.ctx, [source], source.slideMillis)
  }
  compute(t: number): Effect.Effect<Batch<readonly [K, S]> | undefined, unknown, NodeEnv> {
    return Effect.map(this.source.getOrCompute(t), (b) => (b === undefined ? undefined : this.source.entries()))
  }
}
