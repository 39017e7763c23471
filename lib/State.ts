/**
 * Keyed state for `mapWithState` and `updateStateByKey` (Spark's `State` and `StateSpec`).
 *
 * A {@link State} is the handle a `mapWithState` function gets for one key: it can read, update
 * or remove the key's state, and tells whether the key is timing out. A {@link StateSpec} is the
 * immutable description of a `mapWithState` operation: the function, an initial state, an idle
 * timeout, and the Schemas that encode keys and states in checkpoints.
 *
 * @example
 * ```ts
 * import { Option } from "effect"
 * import { StateSpec } from "effect-dstream"
 *
 * const spec = StateSpec.function((word: string, one: Option.Option<number>, state: State.State<number>) => {
 *   const sum = Option.getOrElse(one, () => 0) + Option.getOrElse(state.getOption(), () => 0)
 *   state.update(sum)
 *   return [word, sum] as const
 * }).timeout("30 seconds")
 * pairs.mapWithState(spec)
 * ```
 *
 * @module
 */
import { Data, type Duration, Option } from "effect"
import type { TaggedErrorClass } from "./_internal/taggedError.ts"
import type { Schema } from "effect"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Time from "./Time.ts"

/** @internal */
export const StateErrorBase: TaggedErrorClass<"StateError", {
  readonly message: string
}> = Data.TaggedError("StateError")

/**
 * A `State` was used in a way Spark forbids: `get` on a missing state, `update` or `remove`
 * after `remove`, or either on a state that is timing out. Thrown from inside the user's
 * function; it fails the batch (`BatchJobError` with this as `cause`).
 *
 * @since 0.1.0
 * @category errors
 */
export class StateError extends StateErrorBase {}

/**
 * The state of one key, as seen by a `mapWithState` function.
 *
 * @since 0.1.0
 * @category models
 */
export interface State<S> {
  /** `true` when the key has state. */
  exists(): boolean
  /** The state; throws {@link StateError} `State is not set` when there is none. */
  get(): S
  /** The state, if any. */
  getOption(): Option.Option<S>
  /** Sets the state; throws after `remove` or while timing out. */
  update(newState: S): void
  /** Removes the state; throws when already removed or timing out. */
  remove(): void
  /** `true` in the last call for a key whose state timed out (its value is `None`). */
  isTimingOut(): boolean
  /** `true` after `update` in this call. */
  isUpdated(): boolean
  /** `true` after `remove` in this call. */
  isRemoved(): boolean
}

/**
 * The mutable implementation of {@link State} (Spark's `StateImpl`); the engine re-wraps one
 * instance for every record, so a call allocates nothing.
 *
 * @since 0.1.0
 * @category constructors
 */
export class StateImpl<S> implements State<S> {
  private value: S | undefined = undefined
  private defined = false
  private timingOut = false
  private updated = false
  private removed = false
  private lastSome: Option.Some<S> | undefined = undefined

  /** Points the handle at a key's current state (`None`: no state). */
  wrap(state: Option.Option<S>): this {
    this.defined = Option.isSome(state)
    this.value = this.defined ? (state as Option.Some<S>).value : undefined
    this.timingOut = false
    this.updated = false
    this.removed = false
    return this
  }

  /** Like {@link wrap} with a present state, without allocating an `Option`. */
  wrapValue(defined: boolean, value: S | undefined): this {
    this.defined = defined
    this.value = value
    this.timingOut = false
    this.updated = false
    this.removed = false
    return this
  }

  /** Points the handle at a state that is timing out (read-only). */
  wrapTimingOut(value: S): this {
    this.wrapValue(true, value)
    this.timingOut = true
    return this
  }

  exists(): boolean {
    return this.defined
  }
  get(): S {
    if (!this.defined) throw new StateError({ message: "State is not set" })
    return this.value as S
  }
  getOption(): Option.Option<S> {
    if (!this.defined) return Option.none()
    // Options are immutable values: hand out the last `Some` again while it holds the same state.
    const last = this.lastSome
    if (last !== undefined && last.value === this.value) return last
    return (this.lastSome = Option.some(this.value as S) as Option.Some<S>)
  }
  update(newState: S): void {
    if (this.removed) throw new StateError({ message: "Cannot update the state after it has been removed" })
    if (this.timingOut) throw new StateError({ message: "Cannot update the state that is timing out" })
    this.value = newState
    this.defined = true
    this.updated = true
  }
  remove(): void {
    if (this.timingOut) throw new StateError({ message: "Cannot remove the state that is timing out" })
    if (this.removed) throw new StateError({ message: "Cannot remove the state that has already been removed" })
    this.removed = true
    this.updated = false
    this.defined = false
    this.value = undefined
  }
  isTimingOut(): boolean {
    return this.timingOut
  }
  isUpdated(): boolean {
    return this.updated
  }
  isRemoved(): boolean {
    return this.removed
  }
  /** Internal: the current value (after the user's call). */
  current(): S | undefined {
    return this.value
  }
  /** The state as Spark prints it: the value, or `<state not set>`. */
  toString(): string {
    return this.defined ? String(this.value) : "<state not set>"
  }
}

/**
 * A fresh state handle, e.g. to unit-test a `mapWithState` function.
 *
 * @example
 * ```ts
 * const state = State.make<number>(Option.some(1))
 * state.update(2)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <S>(initial: Option.Option<S> = Option.none()): StateImpl<S> => new StateImpl<S>().wrap(initial)

/**
 * Schemas for keys and states in checkpoints. Without them keys and states are written as JSON
 * values as they are; with them, they are encoded with the Schema's JSON codec, so a checkpoint
 * written by an older build can be decoded by a newer one (e.g. an added optional field), and a
 * mismatch fails with a `CheckpointError` instead of producing garbage.
 *
 * @since 0.1.0
 * @category models
 */
export interface StateSchemas<K, S> {
  /** The keys' Schema (any encoded form). */
  readonly key?: Schema.Codec<K, any> | undefined
  /** The states' Schema (any encoded form). */
  readonly state?: Schema.Codec<S, any> | undefined
}

/**
 * The `mapWithState` function, with the batch time: return `Option.none()` to emit nothing.
 *
 * @since 0.1.0
 * @category models
 */
export type MappingFunction<K, V, S, T> = (
  time: number,
  key: K,
  value: Option.Option<V>,
  state: State<S>,
) => Option.Option<T>

/**
 * Spark's `StateSpec`: everything a `mapWithState` needs. Immutable: every method returns a new
 * spec.
 *
 * @since 0.1.0
 * @category models
 */
export interface StateSpec<K, V, S, T> extends Pipeable {
  /** The mapping function, called per key with data (and per timed-out key). */
  readonly fn: MappingFunction<K, V, S, T>
  /**
   * For `StateSpec.function`: the user's function, whose result is always emitted, so the
   * engine calls it directly instead of wrapping every result in an `Option`.
   * @internal
   */
  readonly total: ((key: K, value: Option.Option<V>, state: State<S>) => T) | undefined
  /** The initial states set by `initialState`, if any. */
  readonly initial: ReadonlyArray<readonly [K, S]> | undefined
  /** The idle timeout set by `timeout`, in milliseconds, if any. */
  readonly timeoutMillis: number | undefined
  /** The Schemas set by `withSchemas`. */
  readonly schemas: StateSpecSchemas<K, S>
  /** The name set by `named`, if any. */
  readonly checkpointName: string | undefined
  /** The state every key starts with (Spark's `initialState(rdd)`). */
  initialState(pairs: Iterable<readonly [K, S]>): StateSpec<K, V, S, T>
  /** Keys idle for longer than `duration` time out (checked on checkpoint batches). */
  timeout(duration: Duration.Input): StateSpec<K, V, S, T>
  /** Accepted for Spark compatibility; a batch is one partition here. */
  numPartitions(n: number): StateSpec<K, V, S, T>
  /** Schemas for keys and states in checkpoints (default: the values as JSON). */
  withSchemas(schemas: StateSchemas<K, S>): StateSpec<K, V, S, T>
  /** A stable name for this state in checkpoints (default: its position in the graph). */
  named(name: string): StateSpec<K, V, S, T>
}

/** @internal */
export interface StateSpecSchemas<K, S> {
  readonly key: Schema.Codec<K, any> | undefined
  readonly state: Schema.Codec<S, any> | undefined
}

class StateSpecImpl<K, V, S, T> implements StateSpec<K, V, S, T> {
  constructor(
    readonly fn: MappingFunction<K, V, S, T>,
    readonly initial: ReadonlyArray<readonly [K, S]> | undefined,
    readonly timeoutMillis: number | undefined,
    readonly schemas: StateSpecSchemas<K, S>,
    readonly checkpointName: string | undefined,
    readonly total: ((key: K, value: Option.Option<V>, state: State<S>) => T) | undefined = undefined,
  ) {}
  pipe(): unknown {
    return pipeArguments(this, arguments)
  }
  initialState(pairs: Iterable<readonly [K, S]>): StateSpec<K, V, S, T> {
    return new StateSpecImpl(
      this.fn,
      Array.from(pairs),
      this.timeoutMillis,
      this.schemas,
      this.checkpointName,
      this.total,
    )
  }
  timeout(duration: Duration.Input): StateSpec<K, V, S, T> {
    const ms = Time.millis(duration, "State timeout")
    return new StateSpecImpl(this.fn, this.initial, ms, this.schemas, this.checkpointName, this.total)
  }
  numPartitions(n: number): StateSpec<K, V, S, T> {
    if (!(n >= 1)) throw new RangeError(`Number of partitions must be positive, got ${n}`)
    return this
  }
  withSchemas(schemas: StateSchemas<K, S>): StateSpec<K, V, S, T> {
    return new StateSpecImpl(
      this.fn,
      this.initial,
      this.timeoutMillis,
      {
        key: schemas.key ?? this.schemas.key,
        state: schemas.state ?? this.schemas.state,
      },
      this.checkpointName,
      this.total,
    )
  }
  named(name: string): StateSpec<K, V, S, T> {
    return new StateSpecImpl(this.fn, this.initial, this.timeoutMillis, this.schemas, name, this.total)
  }
}

const noSchemas = { key: undefined, state: undefined }

/**
 * A spec from a function of key, value and state whose result is always emitted (Spark's
 * `StateSpec.function((key, value, state) => mapped)`).
 *
 * @example
 * ```ts
 * const spec = StateSpec.function((key: string, value: Option.Option<number>, state: State.State<number>) => {
 *   state.update(Option.getOrElse(value, () => 0) + Option.getOrElse(state.getOption(), () => 0))
 *   return state.get()
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const stateSpecFunction = <K, V, S, T>(
  f: (key: K, value: Option.Option<V>, state: State<S>) => T,
): StateSpec<K, V, S, T> => {
  const fn: MappingFunction<K, V, S, T> = (_time, key, value, state) => Option.some(f(key, value, state))
  return new StateSpecImpl<K, V, S, T>(fn, undefined, undefined, noSchemas, undefined, f)
}

/**
 * A spec from a function that also gets the batch time and may emit nothing (Spark's
 * `StateSpec.function((time, key, value, state) => Option[mapped])`).
 *
 * @example
 * ```ts
 * const spec = StateSpec.functionWithTime((time: number, key: string, value: Option.Option<number>, state: State.State<number>) =>
 *   state.isTimingOut() ? Option.some(key) : Option.none())
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const stateSpecFunctionWithTime = <K, V, S, T>(f: MappingFunction<K, V, S, T>): StateSpec<K, V, S, T> =>
  new StateSpecImpl<K, V, S, T>(f, undefined, undefined, noSchemas, undefined)

/**
 * Spark's `StateSpec` companion: `StateSpec.function(f)` and `StateSpec.functionWithTime(f)`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const StateSpec = {
  function: stateSpecFunction,
  functionWithTime: stateSpecFunctionWithTime,
} as const

/**
 * Options of `updateStateByKey`.
 *
 * @since 0.1.0
 * @category models
 */
export interface UpdateStateOptions<K, S> {
  /** The state every key starts with (Spark's `initialRDD`); appears from the first batch. */
  readonly initialState?: Iterable<readonly [K, S]> | undefined
  /** Schemas for keys and states in checkpoints (default: the values as JSON). */
  readonly schemas?: StateSchemas<K, S> | undefined
  /** A stable name for this state in checkpoints (default: its position in the graph). */
  readonly name?: string | undefined
}

/**
 * `updateStateByKey` with the batch time and key (Spark 2.2's overload): called every batch
 * for every key with state or data.
 *
 * @since 0.1.0
 * @category models
 */
export interface UpdateStateWithTime<K, V, S> extends UpdateStateOptions<K, S> {
  /** The update function: the new state, or `Option.none()` to remove the key. */
  readonly update: (time: number, key: K, values: ReadonlyArray<V>, state: Option.Option<S>) => Option.Option<S>
}
