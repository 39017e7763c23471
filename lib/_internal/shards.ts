/**
 * Sharded keyed state: one {@link Shard} per (repartition or input) partition this process owns.
 * A shard holds its keys' states, how far it has applied its input (for exactly-once state, see
 * {@link admit}), and the keys changed since its last changelog append. `updateStateByKey` and
 * `mapWithState` run here shard by shard, with Spark's semantics within a shard.
 * @internal
 */
import { Option, Schema } from "effect"
import { type MappingFunction, StateImpl } from "../State.ts"
import {
  changeRecord,
  controlRecord,
  jsonText,
  type Position,
  type RestorePoint,
  type Restorer,
  sourcesList,
} from "./changelog.ts"
import type { OutgoingRecord } from "./kafkaClient.ts"
import { KeyMap } from "./keyMap.ts"
import { removed } from "./state.ts"

/** A key's state with the time it was last touched (mapWithState with a timeout). @internal */
export interface Timed<S> {
  readonly state: S
  readonly time: number
}

/** Keys and states to and from the changelog's JSON texts. @internal */
export interface ShardCodec<K, S> {
  readonly keyText: (k: K) => string
  readonly parseKey: (text: string) => K
  /** To and from a JSON value. */
  readonly encodeState: (s: S) => unknown
  readonly decodeState: (u: unknown) => S
}

/** A codec from Schemas (JSON of their encoded forms), or plain JSON without. @internal */
export const shardCodec = <K, S>(
  key: Schema.Codec<K, any> | undefined,
  state: Schema.Codec<S, any> | undefined,
): ShardCodec<K, S> => {
  const side = <A>(schema: Schema.Codec<A, any> | undefined) => {
    if (schema === undefined) return { encode: (a: A): unknown => a, decode: (u: unknown) => u as A }
    const json = Schema.toCodecJson(schema as Schema.Codec<A, any, never, never>)
    const encode = Schema.encodeUnknownSync(json) as (a: A) => unknown
    const decode = Schema.decodeUnknownSync(json) as (u: unknown) => A
    // the common primitives: a string, or a finite number, is its own JSON form (no Schema parse)
    const primitive = (schema as unknown) === Schema.String
      ? "string"
      : (schema as unknown) === Schema.Number
      ? "number"
      : undefined
    if (primitive === undefined) return { encode, decode }
    const plain = (u: unknown) => typeof u === primitive && (primitive === "string" || Number.isFinite(u))
    return {
      encode: (a: A): unknown => (plain(a) ? a : encode(a)),
      decode: (u: unknown): A => (plain(u) ? u as A : decode(u)),
    }
  }
  const k = side(key)
  const s = side(state)
  return {
    keyText: (a) => JSON.stringify(k.encode(a)),
    parseKey: (t) => k.decode(JSON.parse(t)),
    encodeState: s.encode,
    decodeState: s.decode,
  }
}

/** Where a repartitioned record came from: its source partition, offset, and index within it. @internal */
export interface Source {
  readonly partition: number
  readonly offset: number
  readonly index: number
}

/** One input record of a shard: its offset in the shard's partition, key, value, source. @internal */
export interface ShardRecord<K, V> {
  readonly offset: number
  readonly key: K
  readonly value: V
  readonly source: Source | undefined
}

/** One shard: the state of the keys of one partition. @internal */
export class Shard<K, E> {
  /** Key → state, or → {@link Timed} record with a timeout. */
  readonly state = new KeyMap<K, E>()
  /** Highest offset of the shard's partition applied (or skipped as a duplicate); -1: none. */
  applied = -1
  /** Per source partition, the highest (offset, index) applied. */
  readonly sources = new Map<number, readonly [number, number]>()
  /** The owner's token: the offset of its claim in the changelog. */
  token = -1
  /** The last valid control record read before the claim. */
  base = -1
  /** The next batch number of this owner's appends. */
  seq = 0
  /** Keys set or removed since the last append. */
  changed = new KeyMap<K, E | typeof removed>()
  /** The position advanced since the last append. */
  moved = false
  /** Records skipped as already applied (replays). */
  duplicates = 0
  /**
   * Offset after the last record this owner wrote to its changelog partition while every record
   * since its claim was its own (the acknowledged offsets were contiguous); `-1` once another
   * writer's record came between (a zombie, a newer claim): from then on the shard is no restore
   * point (no cache, no standby from it).
   */
  logEnd = -1
  /** The offset and value text of this owner's last marker. */
  markerOffset = -1
  marker = ""
  /** The state equals what the log holds up to {@link logEnd} (no batch applied since the last acknowledged append). */
  synced = false
  /** Epoch ms of the last cache written (0: none). */
  cachedAt = 0

  constructor(readonly partition: number) {}

  get position(): Position {
    return { applied: this.applied, sources: this.sources }
  }

  set(k: K, e: E): void {
    this.state.set(k, e)
    this.changed.set(k, e)
  }

  remove(k: K): void {
    this.state.delete(k)
    this.changed.set(k, removed)
  }
}

/**
 * Exactly-once admission: `true` when record `r` of `shard` has not been applied before. A record
 * at or below the shard's applied offset is a replay of its own partition; a repartitioned
 * record whose (source offset, index) is at or below the highest applied from its source
 * partition was produced twice (its producer crashed between producing and committing the
 * source offset, and the source record was read again). Advances the shard's position.
 * @internal
 */
export const admit = (shard: Shard<any, any>, offset: number, source: Source | undefined): boolean => {
  // several records may share an offset (the pairs of one input record, when the input is the
  // shard's partition): their sources tell them apart
  if (offset < shard.applied || (offset === shard.applied && source === undefined)) {
    shard.duplicates++
    return false
  }
  shard.applied = offset
  shard.moved = true
  if (source === undefined) return true
  const high = shard.sources.get(source.partition)
  if (high !== undefined && (source.offset < high[0] || (source.offset === high[0] && source.index <= high[1]))) {
    shard.duplicates++
    return false
  }
  shard.sources.set(source.partition, [source.offset, source.index])
  return true
}

/** Loads a restored changelog into a fresh shard (`timed`: states are `[state, time]` pairs). @internal */
export const restoredShard = <K, S>(
  partition: number,
  restorer: Restorer,
  codec: ShardCodec<K, S>,
  timed: boolean,
): Shard<K, unknown> => {
  const shard = new Shard<K, unknown>(partition)
  for (const [k, v] of restorer.state) {
    const key = codec.parseKey(k)
    const u = JSON.parse(jsonText(v))
    if (timed) {
      if (!Array.isArray(u) || u.length !== 2 || typeof u[1] !== "number") {
        throw new Error(`malformed timed state of key ${k}: ${jsonText(v)}`)
      }
      shard.state.set(key, { state: codec.decodeState(u[0]), time: u[1] })
    } else shard.state.set(key, codec.decodeState(u))
  }
  shard.applied = restorer.position.applied
  for (const [s, high] of restorer.position.sources) shard.sources.set(s, high)
  shard.base = restorer.lastControl
  return shard
}

/** The JSON text of a shard entry as the changelog holds it. */
const entryText = <K, S>(codec: ShardCodec<K, S>, timed: boolean, e: unknown): string => {
  if (!timed) return JSON.stringify(codec.encodeState(e as S))
  const t = e as Timed<S>
  return JSON.stringify([codec.encodeState(t.state), t.time])
}

/**
 * The changelog append of a shard: its changed keys (tombstones for removals), then a marker
 * closing them. `undefined` when nothing changed. Clears the shard's changes.
 * @internal
 */
export const appendRecords = <K, S>(
  shard: Shard<K, unknown>,
  topic: string,
  codec: ShardCodec<K, S>,
  timed: boolean,
  generation: number,
  now: number,
): Array<OutgoingRecord> | undefined => {
  if (shard.changed.size === 0 && !shard.moved) return undefined
  const out: Array<OutgoingRecord> = []
  const { token, seq, partition } = shard
  shard.changed.forEach((e, k) => {
    out.push(
      changeRecord(topic, partition, codec.keyText(k), e === removed ? null : entryText(codec, timed, e), token, seq),
    )
  })
  out.push(markerRecord(shard, topic, generation, now))
  shard.changed = new KeyMap()
  shard.moved = false
  shard.seq++
  return out
}

/** The marker closing an append of `shard`: its token, batch, applied offset and source positions. */
const markerRecord = (shard: Shard<any, unknown>, topic: string, generation: number, now: number): OutgoingRecord =>
  controlRecord(topic, shard.partition, {
    kind: "marker",
    token: shard.token,
    base: shard.base,
    batch: shard.seq,
    applied: shard.applied,
    sources: sourcesList(shard.position),
    generation,
  }, now)

/**
 * The corrections a new owner writes after its claim: the current value, or a tombstone, of
 * every key in `keys` (key texts), then a marker.
 * @internal
 */
export const correctionRecords = <K, S>(
  shard: Shard<K, unknown>,
  topic: string,
  keys: Iterable<string>,
  codec: ShardCodec<K, S>,
  timed: boolean,
  generation: number,
  now: number,
): Array<OutgoingRecord> => {
  const out: Array<OutgoingRecord> = []
  const { token, seq, partition } = shard
  for (const text of keys) {
    const e = shard.state.get(codec.parseKey(text))
    out.push(changeRecord(topic, partition, text, e === undefined ? null : entryText(codec, timed, e), token, seq))
  }
  out.push(markerRecord(shard, topic, generation, now))
  shard.seq++
  return out
}

// ---- the operators, shard by shard -------------------------------------------------------------

/**
 * updateStateByKey on one shard: `update` sees every key of the shard with state or admitted
 * data (values empty without data); `None` removes the key. Pushes the shard's whole state to `out`.
 * @internal
 */
export const updateShard = <K, V, S>(
  shard: Shard<K, unknown>,
  records: ReadonlyArray<ShardRecord<K, V>>,
  t: number,
  update: (time: number, key: K, values: ReadonlyArray<V>, state: Option.Option<S>) => Option.Option<S>,
  out: Array<readonly [K, S]>,
): void => {
  const groups = new KeyMap<K, Array<V>>()
  for (let i = 0; i < records.length; i++) {
    const r = records[i]
    if (!admit(shard, r.offset, r.source)) continue
    const vs = groups.get(r.key)
    if (vs === undefined) groups.set(r.key, [r.value])
    else vs.push(r.value)
  }
  const none: ReadonlyArray<V> = []
  const gone: Array<K> = []
  const state = shard.state as KeyMap<K, S>
  state.forEach((s, k) => {
    const vs = groups.get(k)
    if (vs !== undefined) groups.delete(k)
    const next = update(t, k, vs ?? none, Option.some(s))
    if (Option.isSome(next)) {
      if (next.value !== s) shard.set(k, next.value)
      out.push([k, next.value])
    } else gone.push(k)
  })
  for (let i = 0; i < gone.length; i++) shard.remove(gone[i])
  groups.forEach((vs, k) => {
    const next = update(t, k, vs, Option.none())
    if (Option.isSome(next)) {
      shard.set(k, next.value)
      out.push([k, next.value])
    }
  })
}

/**
 * mapWithState on one shard: the function is called once per admitted record, in order (with
 * `timeoutMillis`, entries are {@link Timed} and `timeOut` calls it once per idle key).
 * @internal
 */
export class ShardMapper<K, V, S, T> {
  private readonly handle = new StateImpl<S>()
  constructor(readonly fn: MappingFunction<K, V, S, T>, readonly timeoutMillis: number | undefined) {}

  apply(shard: Shard<K, unknown>, records: ReadonlyArray<ShardRecord<K, V>>, t: number, out: Array<T>): void {
    const timed = this.timeoutMillis !== undefined
    const handle = this.handle
    for (let i = 0; i < records.length; i++) {
      const r = records[i]
      if (!admit(shard, r.offset, r.source)) continue
      const k = r.key
      const entry = shard.state.get(k)
      const exists = entry !== undefined || (!timed && shard.state.has(k))
      handle.wrapValue(exists, timed ? (entry as Timed<S> | undefined)?.state : entry as S)
      const mapped = this.fn(t, k, Option.some(r.value), handle)
      if (handle.isRemoved()) {
        if (exists) shard.remove(k)
      } else if (handle.isUpdated() || (timed && handle.exists())) {
        const s = handle.current() as S
        shard.set(k, timed ? { state: s, time: t } : s)
      }
      if (Option.isSome(mapped)) out.push(mapped.value)
    }
  }

  /** One call for each key of the shard idle for longer than the timeout; the key is removed. */
  timeOut(shard: Shard<K, unknown>, t: number, out: Array<T>): void {
    if (this.timeoutMillis === undefined) return
    const threshold = t - this.timeoutMillis
    const expired: Array<readonly [K, S]> = []
    shard.state.forEach((e, k) => {
      const rec = e as Timed<S>
      if (rec.time < threshold) expired.push([k, rec.state])
    })
    for (let i = 0; i < expired.length; i++) {
      const [k, s] = expired[i]
      const mapped = this.fn(t, k, Option.none(), this.handle.wrapTimingOut(s))
      shard.remove(k)
      if (Option.isSome(mapped)) out.push(mapped.value)
    }
  }
}

/** The states of a shard (without times). @internal */
export const shardEntries = <K, S>(shard: Shard<K, unknown>, timed: boolean, out: Array<readonly [K, S]>): void => {
  if (timed) shard.state.forEach((e, k) => out.push([k, (e as Timed<S>).state]))
  else shard.state.forEach((s, k) => out.push([k, s as S]))
}

/**
 * A shard as a restore point (see changelog.ts {@link RestorePoint}), or `undefined` when it is
 * none: not synced with its log, or another writer came between its appends.
 * @internal
 */
export const shardPoint = <K, S>(
  shard: Shard<K, unknown>,
  topic: string,
  codec: ShardCodec<K, S>,
  timed: boolean,
  generation: number,
): RestorePoint | undefined => {
  if (!shard.synced || shard.logEnd < 0 || shard.markerOffset !== shard.logEnd - 1) return undefined
  const entries: Array<readonly [string, string]> = []
  shard.state.forEach((e, k) => entries.push([codec.keyText(k), entryText(codec, timed, e)]))
  return {
    topic,
    partition: shard.partition,
    entries,
    latest: shard.token,
    position: { applied: shard.applied, sources: new Map(shard.sources) },
    batch: shard.seq - 1,
    generation,
    lastControl: shard.markerOffset,
    control: shard.marker,
    next: shard.logEnd,
  }
}
