/**
 * The stateful nodes: Spark's `StateDStream` (updateStateByKey) and `MapWithStateDStream`
 * (mapWithState, stateSnapshots). The keyed state is a table owned by the node, mutated in
 * place batch by batch on the job fiber: mapWithState touches only the keys with data (plus,
 * on checkpoint batches with a timeout, a scan for idle keys); updateStateByKey calls its
 * function for every key, as Spark does. Checkpoints snapshot the tables (see checkpointing.ts).
 * @internal
 */
import { Effect, Option, Schema } from "effect"
import { IllegalStateError } from "../Errors.ts"
import { type MappingFunction, StateImpl, type StateSpecSchemas } from "../State.ts"
import * as Time from "../Time.ts"
import { KeyMap } from "./keyMap.ts"
import { type Batch, Node, type NodeEnv } from "./node.ts"

/** A node whose data goes into checkpoints. @internal */
export interface Checkpointed {
  /** A stable name, if the user gave one. */
  readonly checkpointName: string | undefined
  /** JSON-encodable data. */
  snapshotCheckpoint(): unknown
  /** Restores `snapshotCheckpoint` data; throws an Error describing what does not match. */
  restoreCheckpoint(data: unknown, time: number): void
}

/** @internal */
export const isCheckpointed = (node: Node<any>): node is Node<any> & Checkpointed =>
  "snapshotCheckpoint" in node && typeof node.snapshotCheckpoint === "function"

/** Encoders/decoders of keys and states: Schema JSON codecs, or the values as they are. @internal */
export interface Codecs<K, S> {
  readonly encodeKey: (k: K) => unknown
  readonly decodeKey: (u: unknown) => K
  readonly encodeState: (s: S) => unknown
  readonly decodeState: (u: unknown) => S
}

const identity = (u: any): any => u

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
        this.apply(s, skipped)
        this.lastTime = last = s
      }
      const input = yield* this.parent.getOrCompute(t)
      const out = this.apply(t, input)
      this.lastTime = t
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
    readonly initial: ReadonlyArray<readonly [K, S]> | undefined,
    readonly codecs: Codecs<K, S>,
    name: string | undefined,
  ) {
    super(parent, name)
  }

  protected apply(t: number, input: Batch<readonly [K, V]> | undefined): Batch<readonly [K, S]> | undefined {
    if (!this.hasState) {
      if (input === undefined) return undefined
      if (this.initial !== undefined) { for (const [k, s] of this.initial) this.state.set(k, s) }
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
    const none: ReadonlyArray<V> = []
    const removed: Array<K> = []
    this.state.forEach((s, k) => {
      const vs = groups.get(k)
      if (vs !== undefined) groups.delete(k)
      const next = this.update(t, k, vs ?? none, Option.some(s))
      if (Option.isSome(next)) {
        if (next.value !== s) this.state.set(k, next.value)
        out.push([k, next.value])
      } else {
        removed.push(k)
      }
    })
    for (let i = 0; i < removed.length; i++) this.state.delete(removed[i])
    groups.forEach((vs, k) => {
      const next = this.update(t, k, vs, Option.none())
      if (Option.isSome(next)) {
        this.state.set(k, next.value)
        out.push([k, next.value])
      }
    })
    return out
  }

  snapshotCheckpoint(): unknown {
    const entries: Array<readonly [unknown, unknown]> = []
    const { encodeKey, encodeState } = this.codecs
    this.state.forEach((s, k) => entries.push([encodeKey(k), encodeState(s)]))
    return { hasState: this.hasState, lastTime: this.lastTime, entries }
  }

  restoreCheckpoint(data: unknown, time: number): void {
    const d = data as { hasState: boolean; lastTime?: number; entries: ReadonlyArray<readonly [unknown, unknown]> }
    if (typeof d !== "object" || d === null || !Array.isArray(d.entries)) throw new Error("not updateStateByKey data")
    const { decodeKey, decodeState } = this.codecs
    for (const [k, s] of d.entries) this.state.set(decodeKey(k), decodeState(s))
    this.hasState = d.hasState === true
    this.lastTime = typeof d.lastTime === "number" ? d.lastTime : time
  }
}

/** A key's state in mapWithState, with the time it was last touched (for timeouts). @internal */
interface StateRecord<S> {
  state: S
  time: number
}

/**
 * mapWithState: the function is called once per record of the batch, in order, and once per
 * key timing out (on checkpoint batches). The batch is what the function emitted.
 * @internal
 */
export class MapWithStateNode<K, V, S, T> extends KeyedStateNode<K, V, T> {
  readonly kind = "MapWithStateDStream"
  readonly state = new KeyMap<K, StateRecord<S>>()
  private initialized = false
  private readonly handle = new StateImpl<S>()
  private lastValue: Option.Some<V> | undefined = undefined
  /** The user's function when the spec came from `StateSpec.function` (see State.ts). */
  private readonly total: ((key: K, value: Option.Option<V>, state: StateImpl<S>) => T) | undefined

  constructor(
    parent: Node<readonly [K, V]>,
    readonly fn: MappingFunction<K, V, S, T>,
    readonly initial: ReadonlyArray<readonly [K, S]> | undefined,
    readonly timeoutMillis: number | undefined,
    readonly codecs: Codecs<K, S>,
    name: string | undefined,
    total?: ((key: K, value: Option.Option<V>, state: StateImpl<S>) => T) | undefined,
  ) {
    super(parent, name)
    this.total = total
  }

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
    if (this.timeoutMillis !== undefined && this.isCheckpointTime(t)) this.timeOut(t, out)
    return out
  }

  /** Loads the initial state (first batch); a method of its own so `apply`'s loops stay small. */
  private loadInitial(t: number): void {
    if (this.initial !== undefined) { for (const [k, s] of this.initial) this.state.set(k, { state: s, time: t }) }
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

  /** After the user's call for a record of key `k` whose state was `rec`: keeps the handle's state. */
  private keep(t: number, k: K, rec: StateRecord<S> | undefined, withTimeout: boolean): void {
    const handle = this.handle
    if (handle.isRemoved()) {
      if (rec !== undefined) this.state.delete(k)
    } else if (handle.isUpdated() || (withTimeout && handle.exists())) {
      if (rec !== undefined) {
        rec.state = handle.current() as S
        rec.time = t
      } else {
        this.state.set(k, { state: handle.current() as S, time: t })
      }
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
    const withTimeout = this.timeoutMillis !== undefined
    for (let i = 0; i < input.length; i++) {
      const kv = input[i]
      const k = kv[0]
      const rec = state.get(k)
      handle.wrapValue(rec !== undefined, rec?.state)
      const mapped = f(k, this.someValue(kv[1]), handle)
      this.keep(t, k, rec, withTimeout)
      out.push(mapped)
    }
  }

  private applyPartial(t: number, input: Batch<readonly [K, V]>, out: Array<T>): void {
    const handle = this.handle
    const state = this.state
    const withTimeout = this.timeoutMillis !== undefined
    for (let i = 0; i < input.length; i++) {
      const kv = input[i]
      const k = kv[0]
      const rec = state.get(k)
      handle.wrapValue(rec !== undefined, rec?.state)
      const mapped = this.fn(t, k, this.someValue(kv[1]), handle)
      this.keep(t, k, rec, withTimeout)
      if (Option.isSome(mapped)) out.push(mapped.value)
    }
  }

  /** Checkpoint batches with a timeout: one call for each key idle longer than the timeout. */
  private timeOut(t: number, out: Array<T>): void {
    const state = this.state
    const threshold = t - this.timeoutMillis!
    const expired: Array<readonly [K, S]> = []
    state.forEach((rec, k) => {
      if (rec.time < threshold) expired.push([k, rec.state])
    })
    for (let i = 0; i < expired.length; i++) {
      const [k, s] = expired[i]
      const mapped = this.fn(t, k, Option.none(), this.handle.wrapTimingOut(s))
      state.delete(k)
      if (Option.isSome(mapped)) out.push(mapped.value)
    }
  }

  /** The whole state, as `stateSnapshots()` emits it. */
  entries(): Array<readonly [K, S]> {
    const out: Array<readonly [K, S]> = []
    this.state.forEach((rec, k) => out.push([k, rec.state]))
    return out
  }

  snapshotCheckpoint(): unknown {
    const entries: Array<readonly [unknown, unknown, number]> = []
    const { encodeKey, encodeState } = this.codecs
    this.state.forEach((rec, k) => entries.push([encodeKey(k), encodeState(rec.state), rec.time]))
    return { initialized: this.initialized, lastTime: this.lastTime, entries }
  }

  restoreCheckpoint(data: unknown, time: number): void {
    const d = data as {
      initialized: boolean
      lastTime?: number
      entries: ReadonlyArray<readonly [unknown, unknown, number]>
    }
    if (typeof d !== "object" || d === null || !Array.isArray(d.entries)) throw new Error("not mapWithState data")
    const { decodeKey, decodeState } = this.codecs
    for (const [k, s, at] of d.entries) this.state.set(decodeKey(k), { state: decodeState(s), time: at })
    this.initialized = d.initialized === true
    this.lastTime = typeof d.lastTime === "number" ? d.lastTime : time
  }
}

/** `stateSnapshots()`: the whole state of a mapWithState after each of its batches. @internal */
export class StateSnapshotsNode<K, S> extends Node<readonly [K, S]> {
  readonly kind = "StateSnapshotsDStream"
  constructor(readonly source: MapWithStateNode<K, any, S, any>) {
    super(source.ctx, [source], source.slideMillis)
  }
  compute(t: number): Effect.Effect<Batch<readonly [K, S]> | undefined, unknown, NodeEnv> {
    return Effect.map(this.source.getOrCompute(t), (b) => (b === undefined ? undefined : this.source.entries()))
  }
}
