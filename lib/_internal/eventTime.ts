/**
 * Event-time nodes: the watermark (Structured Streaming's `EventTimeWatermarkExec`) and the
 * event-time window aggregations (tumbling, sliding, session) whose open windows live in a
 * keyed-state node, checkpointed with the graph and dropped once the watermark passes their
 * end. Everything runs inside one batch on the job fiber: plain loops, no per-element Effect.
 * @internal
 */
import { Data, Effect } from "effect"
import type { StreamingEvent } from "../Listener.ts"
import * as Time from "../Time.ts"
import { KeyMap } from "./keyMap.ts"
import { type Batch, Node, type NodeEnv } from "./node.ts"
import { type Checkpointed, type Codecs, KeyedStateNode } from "./state.ts"
import type { TaggedErrorClass } from "./taggedError.ts"

/** @internal */
export const EventTimeErrorBase: TaggedErrorClass<"EventTimeError", {
  readonly message: string
}> = Data.TaggedError("EventTimeError")

/**
 * A record's event time is not a finite number of epoch milliseconds, or an event-time
 * operator was set up wrongly. Fails the batch (`BatchJobError` with this as `cause`).
 *
 * @since 0.1.0
 * @category errors
 */
export class EventTimeError extends EventTimeErrorBase {}

/** How records are assigned to windows. @internal */
export type WindowAssigner =
  | { readonly _tag: "Sliding"; readonly size: number; readonly slide: number; readonly offset: number }
  | { readonly _tag: "Session"; readonly gap: number }

/** The aggregation of a window: first value, add a value, merge two accumulators, result. @internal */
export interface Aggregation<V, C, R> {
  readonly first: (v: V) => C
  readonly add: (c: C, v: V) => C
  readonly merge: ((a: C, b: C) => C) | undefined
  readonly finish: (c: C) => R
}

/** One emitted window (public shape in EventTime.ts). @internal */
export interface Result<K, R> {
  readonly key: K
  readonly start: number
  readonly end: number
  readonly value: R
}

/** A record dropped as late (public shape in EventTime.ts). @internal */
export interface Late<A> {
  readonly record: A
  readonly window: { readonly start: number; readonly end: number }
  readonly watermark: number
}

/** One batch of an event-time window operator, for `progress()`. @internal */
export interface Progress {
  readonly batchTime: number
  readonly watermark: number | undefined
  readonly lateRecords: number
  readonly emitted: number
  readonly openWindows: number
}

const encodeTime = (t: number): number | null => (Number.isFinite(t) ? t : null)
const decodeTime = (u: unknown): number => (typeof u === "number" ? u : -Infinity)

/**
 * `withWatermark`: passes its parent's batches through and tracks the maximum event time.
 * The watermark in effect for a batch is the one computed at the end of the batch before it
 * (max event time seen − delay, never decreasing).
 * @internal
 */
export class WatermarkNode<A> extends Node<A> implements Checkpointed {
  readonly kind = "EventTimeWatermark"
  readonly checkpointName: string | undefined = undefined
  maxEventTime = -Infinity
  /** Batch time of the last batch with records. */
  lastDataTime: number | undefined = undefined
  /** The watermark for the next batch. */
  watermark = -Infinity
  /** The watermark in effect for each computed batch time. */
  private readonly effective = new Map<number, number>()

  constructor(
    readonly parent: Node<A>,
    readonly eventTime: (a: A) => number,
    readonly delayMillis: number,
    /** Quiet batches advance event time with the batch clock after this long without records. */
    readonly idleMillis: number | undefined,
  ) {
    super(parent.ctx, [parent], parent.slideMillis)
  }

  compute(t: number): Effect.Effect<Batch<A> | undefined, unknown, NodeEnv> {
    return Effect.flatMap(this.parent.getOrCompute(t), (batch) => {
      this.effective.set(t, this.watermark)
      if (batch === undefined || batch.length === 0) {
        this.advanceIdle(t)
        return Effect.succeed(batch)
      }
      this.lastDataTime = t
      let max = this.maxEventTime
      const eventTime = this.eventTime
      for (let i = 0; i < batch.length; i++) {
        const e = eventTime(batch[i])
        if (!(e > max)) {
          if (typeof e !== "number" || !Number.isFinite(e)) return Effect.fail(badTime(e, batch[i], t))
          continue
        }
        if (!Number.isFinite(e)) return Effect.fail(badTime(e, batch[i], t))
        max = e
      }
      this.maxEventTime = max
      const next = max - this.delayMillis
      if (next > this.watermark) this.watermark = next
      return Effect.succeed(batch)
    })
  }

  /** A quiet batch: after `idleMillis` without records, event time moves on with the batch clock. */
  private advanceIdle(t: number): void {
    const last = this.lastDataTime
    if (this.idleMillis === undefined || last === undefined || t - last < this.idleMillis) return
    const next = this.maxEventTime + (t - last) - this.delayMillis
    if (next > this.watermark) this.watermark = next
  }

  /** The watermark in effect for batch `t`. */
  watermarkFor(t: number): number {
    return this.effective.get(t) ?? this.watermark
  }

  override clearMetadata(t: number): void {
    super.clearMetadata(t)
    const limit = t - (this.rememberMillis ?? this.slideMillis)
    for (const time of this.effective.keys()) if (time <= limit) this.effective.delete(time)
  }

  snapshotCheckpoint(): unknown {
    return {
      maxEventTime: encodeTime(this.maxEventTime),
      watermark: encodeTime(this.watermark),
      lastDataTime: this.lastDataTime ?? null,
    }
  }

  restoreCheckpoint(data: unknown): void {
    const d = data as { maxEventTime?: unknown; watermark?: unknown }
    if (typeof d !== "object" || d === null || !("watermark" in d)) throw new Error("not watermark data")
    this.maxEventTime = decodeTime(d.maxEventTime)
    this.watermark = decodeTime(d.watermark)
    const last = (d as { lastDataTime?: unknown }).lastDataTime
    this.lastDataTime = typeof last === "number" ? last : undefined
  }
}

const badTime = (e: unknown, record: unknown, t: number): EventTimeError =>
  new EventTimeError({
    message: `Cannot read the event time of a record in batch ${Time.format(t)}: the event-time function returned ${
      typeof e === "number" ? String(e) : JSON.stringify(e) ?? String(e)
    } for ${describe(record)}; return finite epoch milliseconds`,
  })

const describe = (record: unknown): string => {
  try {
    return JSON.stringify(record) ?? String(record)
  } catch {
    return String(record)
  }
}

/** An open window's accumulator for one key. */
interface Entry<C> {
  acc: C
  /** Batch time of the last record added (update mode emits entries touched this batch). */
  touched: number
}

/** A tumbling or sliding window: all keys with records in it. */
interface Bucket<K, C> {
  readonly start: number
  readonly end: number
  readonly entries: KeyMap<K, Entry<C>>
}

/** An open session of one key. */
interface Session<C> {
  start: number
  end: number
  acc: C
  touched: number
  dead: boolean
}

/**
 * An event-time window aggregation: records go to the windows their event time falls in,
 * unless the window's end is at or below the watermark in effect (late: side output). Append
 * mode emits each window once, in the batch whose watermark is at or above its end; update
 * mode emits every window changed by the batch. Either way the window's state is dropped once
 * the watermark passes its end.
 * @internal
 */
export class EventWindowNode<K, V, C, R> extends KeyedStateNode<K, V, Result<K, R>> {
  readonly kind = "EventTimeWindowDStream"
  private readonly buckets = new Map<number, Bucket<K, C>>()
  private readonly sessions = new KeyMap<K, Array<Session<C>>>()
  private open = 0
  private readonly lateAt = new Map<number, Array<Late<readonly [K, V]>>>()
  private readonly progressAt = new Map<number, Progress>()

  constructor(
    parent: Node<readonly [K, V]>,
    readonly watermark: WatermarkNode<any>,
    readonly eventTime: (kv: readonly [K, V]) => number,
    readonly assigner: WindowAssigner,
    readonly aggregation: Aggregation<V, C, R>,
    readonly mode: "append" | "update",
    readonly codecs: Codecs<K, C>,
    name: string | undefined,
  ) {
    super(parent, name)
  }

  /** `true` once a `late()` stream reads this operator's late records. */
  lateObserved = false

  /** Without a `late()` stream, late records are logged as a warning: never dropped silently. */
  override compute(t: number): Effect.Effect<Batch<Result<K, R>> | undefined, unknown, NodeEnv> {
    return Effect.tap(super.compute(t), () => {
      if (this.lateObserved) return Effect.void
      const late = this.lateAt.get(t)
      if (late === undefined || late.length === 0) return Effect.void
      return Effect.logWarning(
        `${late.length} late record(s) dropped by ${this.operatorName} in batch ${Time.format(t)} (watermark ${
          late[0].watermark
        } ms); read them with late()`,
      )
    })
  }

  /** The number of open windows (key × window) held in state. */
  get openWindows(): number {
    return this.open
  }

  lateRecords(t: number): ReadonlyArray<Late<readonly [K, V]>> {
    return this.lateAt.get(t) ?? []
  }

  progress(t: number): Progress | undefined {
    return this.progressAt.get(t)
  }

  /** The operator's name in listener events and logs. */
  get operatorName(): string {
    return this.checkpointName ?? `${this.kind} [${this.id}]`
  }

  /** The `EventTimeProgress` listener event of batch `t`, if the operator ran in it. */
  progressEvent(t: number): StreamingEvent | undefined {
    const p = this.progressAt.get(t)
    if (p === undefined) return undefined
    return {
      _tag: "EventTimeProgress",
      progress: {
        batchTime: t,
        operator: this.operatorName,
        watermark: p.watermark,
        lateRecords: p.lateRecords,
        emitted: p.emitted,
        openWindows: p.openWindows,
      },
    }
  }

  protected apply(t: number, input: Batch<readonly [K, V]> | undefined): Batch<Result<K, R>> {
    const wm = this.watermark.watermarkFor(t)
    const late: Array<Late<readonly [K, V]>> = []
    const out: Array<Result<K, R>> = []
    if (this.assigner._tag === "Sliding") this.applySliding(t, wm, input, late, out)
    else this.applySessions(t, wm, input, late, out)
    this.lateAt.set(t, late)
    this.progressAt.set(t, {
      batchTime: t,
      watermark: Number.isFinite(wm) ? wm : undefined,
      lateRecords: late.length,
      emitted: out.length,
      openWindows: this.open,
    })
    return out
  }

  private applySliding(
    t: number,
    wm: number,
    input: Batch<readonly [K, V]> | undefined,
    late: Array<Late<readonly [K, V]>>,
    out: Array<Result<K, R>>,
  ): void {
    const { size, slide, offset } = this.assigner as Extract<WindowAssigner, { _tag: "Sliding" }>
    const { first, add, finish } = this.aggregation
    const update = this.mode === "update"
    const dirty: Array<readonly [Bucket<K, C>, K, Entry<C>]> = []
    if (input !== undefined) {
      const eventTime = this.eventTime
      for (let i = 0; i < input.length; i++) {
        const kv = input[i]
        const e = eventTime(kv)
        const last = Math.floor((e - offset) / slide) * slide + offset
        for (let start = last; start > e - size; start -= slide) {
          const end = start + size
          if (end <= wm) {
            late.push({ record: kv, window: { start, end }, watermark: wm })
            continue
          }
          let bucket = this.buckets.get(start)
          if (bucket === undefined) {
            bucket = { start, end, entries: new KeyMap() }
            this.buckets.set(start, bucket)
          }
          const entry = bucket.entries.get(kv[0])
          if (entry === undefined) {
            const created = { acc: first(kv[1]), touched: t }
            bucket.entries.set(kv[0], created)
            this.open++
            if (update) dirty.push([bucket, kv[0], created])
          } else {
            entry.acc = add(entry.acc, kv[1])
            if (entry.touched !== t) {
              entry.touched = t
              if (update) dirty.push([bucket, kv[0], entry])
            }
          }
        }
      }
    }
    if (update) {
      for (const [bucket, key, entry] of dirty) {
        out.push({ key, start: bucket.start, end: bucket.end, value: finish(entry.acc) })
      }
    }
    // Finalise (append: emit) and drop every window the watermark has passed, in end order.
    const closed: Array<Bucket<K, C>> = []
    for (const bucket of this.buckets.values()) if (bucket.end <= wm) closed.push(bucket)
    if (closed.length === 0) return
    closed.sort((a, b) => a.end - b.end || a.start - b.start)
    for (const bucket of closed) {
      if (!update) {
        bucket.entries.forEach((entry, key) => {
          out.push({ key, start: bucket.start, end: bucket.end, value: finish(entry.acc) })
        })
      }
      this.open -= bucket.entries.size
      this.buckets.delete(bucket.start)
    }
  }

  private applySessions(
    t: number,
    wm: number,
    input: Batch<readonly [K, V]> | undefined,
    late: Array<Late<readonly [K, V]>>,
    out: Array<Result<K, R>>,
  ): void {
    const gap = (this.assigner as Extract<WindowAssigner, { _tag: "Session" }>).gap
    const { first, add, finish } = this.aggregation
    const merge = this.aggregation.merge!
    const update = this.mode === "update"
    const dirty: Array<readonly [K, Session<C>]> = []
    if (input !== undefined) {
      const eventTime = this.eventTime
      for (let i = 0; i < input.length; i++) {
        const kv = input[i]
        const e = eventTime(kv)
        const start = e
        const end = e + gap
        if (end <= wm) {
          late.push({ record: kv, window: { start, end }, watermark: wm })
          continue
        }
        const key = kv[0]
        let list = this.sessions.get(key)
        if (list === undefined) {
          list = []
          this.sessions.set(key, list)
        }
        // Sessions whose span [start, end] overlaps the record's (touching counts, as in Spark).
        let target: Session<C> | undefined
        for (let j = 0; j < list.length; j++) {
          const s = list[j]
          if (s.start > end || start > s.end) continue
          if (target === undefined) {
            target = s
            continue
          }
          // A second overlapping session: merge it into the first, in start order.
          const [a, b] = s.start < target.start ? [s, target] : [target, s]
          target.acc = merge(a.acc, b.acc)
          target.start = Math.min(target.start, s.start)
          target.end = Math.max(target.end, s.end)
          s.dead = true
          list.splice(j--, 1)
          this.open--
        }
        if (target === undefined) {
          const created: Session<C> = { start, end, acc: first(kv[1]), touched: t, dead: false }
          list.push(created)
          this.open++
          if (update) dirty.push([key, created])
        } else {
          target.acc = add(target.acc, kv[1])
          if (start < target.start) target.start = start
          if (end > target.end) target.end = end
          if (target.touched !== t) {
            target.touched = t
            if (update) dirty.push([key, target])
          }
        }
      }
    }
    if (update) {
      for (const [key, s] of dirty) if (!s.dead) out.push({ key, start: s.start, end: s.end, value: finish(s.acc) })
    }
    if (this.open === 0) return
    const closed: Array<Result<K, R>> = []
    const emptied: Array<K> = []
    this.sessions.forEach((list, key) => {
      for (let j = 0; j < list.length; j++) {
        const s = list[j]
        if (s.end > wm) continue
        if (!update) closed.push({ key, start: s.start, end: s.end, value: finish(s.acc) })
        list.splice(j--, 1)
        this.open--
      }
      if (list.length === 0) emptied.push(key)
    })
    for (const key of emptied) this.sessions.delete(key)
    closed.sort((a, b) => a.end - b.end || a.start - b.start)
    for (const r of closed) out.push(r)
  }

  override clearMetadata(t: number): void {
    super.clearMetadata(t)
    const limit = t - (this.rememberMillis ?? this.slideMillis)
    for (const time of this.lateAt.keys()) if (time <= limit) this.lateAt.delete(time)
    for (const time of this.progressAt.keys()) if (time <= limit) this.progressAt.delete(time)
  }

  snapshotCheckpoint(): unknown {
    const { encodeKey, encodeState } = this.codecs
    if (this.assigner._tag === "Sliding") {
      const buckets: Array<readonly [number, number, Array<readonly [unknown, unknown]>]> = []
      for (const b of this.buckets.values()) {
        const entries: Array<readonly [unknown, unknown]> = []
        b.entries.forEach((e, k) => entries.push([encodeKey(k), encodeState(e.acc)]))
        buckets.push([b.start, b.end, entries])
      }
      return { lastTime: this.lastTime, buckets }
    }
    const sessions: Array<readonly [unknown, Array<readonly [number, number, unknown]>]> = []
    this.sessions.forEach((list, k) => {
      sessions.push([encodeKey(k), list.map((s) => [s.start, s.end, encodeState(s.acc)] as const)])
    })
    return { lastTime: this.lastTime, sessions }
  }

  restoreCheckpoint(data: unknown, time: number): void {
    const d = data as { lastTime?: number; buckets?: unknown; sessions?: unknown }
    if (typeof d !== "object" || d === null) throw new Error("not event-time window data")
    const { decodeKey, decodeState } = this.codecs
    if (this.assigner._tag === "Sliding") {
      if (!Array.isArray(d.buckets)) throw new Error("not tumbling or sliding window data")
      for (const [start, end, entries] of d.buckets as Array<[number, number, Array<[unknown, unknown]>]>) {
        const bucket: Bucket<K, C> = { start, end, entries: new KeyMap() }
        for (const [k, acc] of entries) bucket.entries.set(decodeKey(k), { acc: decodeState(acc), touched: -Infinity })
        this.open += bucket.entries.size
        this.buckets.set(start, bucket)
      }
    } else {
      if (!Array.isArray(d.sessions)) throw new Error("not session window data")
      for (const [k, list] of d.sessions as Array<[unknown, Array<[number, number, unknown]>]>) {
        const sessions = list.map(([start, end, acc]): Session<C> => ({
          start,
          end,
          acc: decodeState(acc),
          touched: -Infinity,
          dead: false,
        }))
        this.open += sessions.length
        this.sessions.set(decodeKey(k), sessions)
      }
    }
    this.lastTime = typeof d.lastTime === "number" ? d.lastTime : time
  }
}

/** `late()`: the records an event-time window operator dropped as late, per batch. @internal */
export class LateRecordsNode<K, V> extends Node<Late<readonly [K, V]>> {
  readonly kind = "LateRecordsDStream"
  constructor(readonly source: EventWindowNode<K, V, any, any>) {
    super(source.ctx, [source], source.slideMillis)
    source.lateObserved = true
  }
  compute(t: number): Effect.Effect<Batch<Late<readonly [K, V]>> | undefined, unknown, NodeEnv> {
    return Effect.map(this.source.getOrCompute(t), (b) => (b === undefined ? undefined : this.source.lateRecords(t)))
  }
}

/** `progress()`: one record per batch of an event-time window operator. @internal */
export class ProgressNode extends Node<Progress> {
  readonly kind = "EventTimeProgressDStream"
  constructor(readonly source: EventWindowNode<any, any, any, any>) {
    super(source.ctx, [source], source.slideMillis)
  }
  compute(t: number): Effect.Effect<Batch<Progress> | undefined, unknown, NodeEnv> {
    return Effect.map(this.source.getOrCompute(t), (b) => {
      const p = b === undefined ? undefined : this.source.progress(t)
      return p === undefined ? undefined : [p]
    })
  }
}
