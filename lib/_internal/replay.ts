/**
 * The replay input: bounded history (an array or an Effect `Stream`) handed out batch by
 * batch, cut by record count or by event-time span, at each batch time the clock cuts. It
 * holds no timer of its own, so under a virtual clock (Replay.run) the batches come as fast
 * as they are processed.
 * @internal
 */
import { Cause, type Clock, Data, Duration, Effect, Pull, Stream } from "effect"
import type { Scope } from "effect"
import * as Time from "../Time.ts"
import {
  type Batch,
  type InputCheckpoint,
  InputNode,
  type InputRuntime,
  type NodeContext,
  type NodeEnv,
} from "./node.ts"
import type { TaggedErrorClass } from "./taggedError.ts"

/** @internal */
export const ReplayErrorBase: TaggedErrorClass<"ReplayError", {
  readonly message: string
  readonly cause?: unknown
}> = Data.TaggedError("ReplayError")

/**
 * Reading the replayed history failed (a file could not be read, the source stream failed), or
 * a record's event time is not a number. Fails the batch that needed the records.
 *
 * @since 0.1.0
 * @category errors
 */
export class ReplayError extends ReplayErrorBase {}

/** Where replayed records come from. @internal */
export type Source<A> =
  | { readonly _tag: "Array"; readonly records: ReadonlyArray<A> }
  | { readonly _tag: "Stream"; readonly stream: Stream.Stream<A, unknown, NodeEnv> }

/** How replayed records are cut into batches. @internal */
export type Cut<A> =
  | { readonly _tag: "Count"; readonly records: number }
  | { readonly _tag: "Span"; readonly eventTime: (a: A) => number; readonly spanMillis: number }

/**
 * The replay's clock: virtual (time moves only when the driver adjusts it, and sleepers wake
 * then, as with `TestClock`) until {@link goLive}; from then on it runs at the real clock's pace
 * from where the virtual time was (the real time plus a fixed offset), so batch times go on one
 * interval apart with no gap, and pending virtual sleeps end after the time they had left.
 * @internal
 */
export class ReplayClock implements Clock.Clock {
  private isLive = false
  private now = 0
  /** After the switch: this clock's time minus the real clock's (milliseconds, nanoseconds). */
  private offset = 0
  private offsetNanos = 0n
  private sleeps: Array<{ readonly at: number; readonly wake: () => void; timer?: ReturnType<typeof setTimeout> }> = []

  constructor(readonly real: Clock.Clock) {}

  get live(): boolean {
    return this.isLive
  }

  /** How far this clock is ahead of the real clock after the switch (milliseconds). */
  get offsetMillis(): number {
    return this.offset
  }

  currentTimeMillisUnsafe(): number {
    return this.isLive ? this.real.currentTimeMillisUnsafe() + this.offset : this.now
  }
  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.currentTimeMillisUnsafe())
  currentTimeNanosUnsafe(): bigint {
    return this.isLive ? this.real.currentTimeNanosUnsafe() + this.offsetNanos : BigInt(this.now) * 1_000_000n
  }
  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.currentTimeNanosUnsafe())
  monotonicTimeNanosUnsafe(): bigint {
    return this.currentTimeNanosUnsafe()
  }
  readonly monotonicTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.monotonicTimeNanosUnsafe())

  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.isLive) return this.real.sleep(duration)
      const at = this.now + Duration.toMillis(duration)
      if (!(at > this.now)) return Effect.void
      return Effect.callback<void>((resume) => {
        const entry: (typeof this.sleeps)[number] = { at, wake: () => resume(Effect.void) }
        this.sleeps.push(entry)
        return Effect.sync(() => {
          if (entry.timer !== undefined) clearTimeout(entry.timer)
          const i = this.sleeps.indexOf(entry)
          if (i >= 0) this.sleeps.splice(i, 1)
        })
      })
    })
  }

  /** Sets the virtual time (a resumed replay continues from its checkpoint's batch). */
  setTime(millis: number): void {
    this.now = millis
    this.wakeDue()
  }

  /** Moves the virtual time on, waking the sleepers now due (earliest first). */
  adjust(millis: number): void {
    this.setTime(this.now + millis)
  }

  private wakeDue(): void {
    const due = this.sleeps.filter((e) => e.at <= this.now).sort((a, b) => a.at - b.at)
    if (due.length === 0) return
    this.sleeps = this.sleeps.filter((e) => e.at > this.now)
    for (const e of due) e.wake()
  }

  /** Switches to real-time pace from the current virtual time. */
  goLive(): void {
    if (this.isLive) return
    this.offset = this.now - this.real.currentTimeMillisUnsafe()
    this.offsetNanos = BigInt(this.now) * 1_000_000n - this.real.currentTimeNanosUnsafe()
    this.isLive = true
    const pending = this.sleeps
    this.sleeps = []
    for (const e of pending) e.timer = setTimeout(e.wake, Math.max(0, e.at - this.now))
  }
}

/**
 * A live input that a replay runs under the virtual clock until it has caught up with the end
 * of its history, then on the real clock (Kafka: `Replay.kafkaThenLive`).
 * @internal
 */
export interface CatchUpInput {
  /** Before the context starts: resolve where to start and where history ends; `resumed` when a checkpoint says where it is. */
  readonly prepare: (resumed: boolean) => Effect.Effect<void, unknown>
  /** `true` once the batches cut so far reach the end of history observed by `prepare`. */
  readonly caughtUp: () => boolean
  /** `true` when records are waiting for the next batch (the driver waits for some before cutting one). */
  readonly hasRecords: () => boolean
  /** Describes how far it is, for messages. */
  readonly describe: () => string
}

/** The catch-up inputs of each context, for the driver. @internal */
export const catchUpInputs = new WeakMap<NodeContext, Array<CatchUpInput>>()

/** The replay inputs of each context, for the driver. @internal */
export const replayInputs = new WeakMap<NodeContext, Array<ReplayInputNode<any>>>()

/** @internal */
export class ReplayInputNode<A> extends InputNode<A> {
  readonly kind = "ReplayInputDStream"
  readonly name: string
  private buffer: Array<A> = []
  private head = 0
  private pull: Pull.Pull<ReadonlyArray<A>, unknown> | undefined
  private ended: boolean
  private failure: unknown = undefined
  /** Exclusive end of the event-time span of the next batch (span cuts). */
  private boundary: number | undefined = undefined
  private readonly batches = new Map<number, Batch<A>>()
  /** Records handed out so far. */
  consumed = 0
  /** Records handed out up to each batch time (for checkpoints). */
  private readonly consumedAt = new Map<number, number>()
  /** Records to skip at start: those a recovered checkpoint says were replayed already. */
  private skip = 0

  constructor(ctx: NodeContext, readonly source: Source<A>, readonly cut: Cut<A>, name: string) {
    super(ctx)
    this.name = name
    if (source._tag === "Array") {
      this.buffer = source.records as Array<A>
      this.ended = true
    } else {
      this.ended = false
    }
    const list = replayInputs.get(ctx) ?? []
    list.push(this)
    replayInputs.set(ctx, list)
  }

  override start(_rt: InputRuntime): Effect.Effect<void, unknown, Scope.Scope | NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      if (this.source._tag === "Stream") this.pull = yield* Stream.toPull(this.source.stream)
      // Resuming from a checkpoint: the records already replayed are skipped.
      while (this.skip > 0) {
        if (this.head >= this.buffer.length && !(yield* this.more())) break
        const n = Math.min(this.skip, this.buffer.length - this.head)
        this.head += n
        this.skip -= n
        this.consumed += n
      }
      if (this.skip > 0) {
        this.failure = new ReplayError({
          message: `Cannot resume the replay of "${this.name}": the checkpoint says ${
            this.consumed + this.skip
          } records were replayed, but the source has only ${this.consumed}`,
        })
      }
    })
  }

  /** `true` once every record has been handed to a batch (or reading failed). */
  get exhausted(): boolean {
    return (this.ended && this.head >= this.buffer.length) || this.failure !== undefined
  }

  /**
   * History is not data received and waiting: a graceful stop ends the replay where it is
   * (waiting for the rest could take as long as the history under a wall clock, and forever
   * under the replay's virtual clock).
   */
  override hasPending(): boolean {
    return false
  }

  /** Pulls one more chunk from the source stream; `false` at its end. */
  private more(): Effect.Effect<boolean> {
    return Effect.suspend(() => {
      if (this.ended || this.pull === undefined) return Effect.succeed(false)
      return this.pull.pipe(
        Effect.map((chunk) => {
          if (this.head > 0) {
            this.buffer = this.buffer.slice(this.head)
            this.head = 0
          }
          for (let i = 0; i < chunk.length; i++) this.buffer.push(chunk[i])
          return true
        }),
        Pull.catchDone(() =>
          Effect.sync(() => {
            this.ended = true
            return false
          })
        ),
        Effect.catchCause((cause) =>
          Effect.sync(() => {
            this.failure = Cause.squash(cause)
            this.ended = true
            return false
          })
        ),
      )
    })
  }

  override allocate(t: number): Effect.Effect<void> {
    return Effect.gen({ self: this }, function* () {
      if (this.failure !== undefined) return
      const cut = this.cut
      if (cut._tag === "Count") {
        while (this.buffer.length - this.head < cut.records && (yield* this.more()));
        const end = Math.min(this.buffer.length, this.head + cut.records)
        this.hand(t, end)
        return
      }
      // Span: the records (in source order) before the first one at or after the boundary.
      if (this.head >= this.buffer.length && !(yield* this.more())) return this.hand(t, this.head)
      if (this.boundary === undefined) {
        const first = this.timeOf(this.buffer[this.head])
        if (first === undefined) return
        this.boundary = (Math.floor(first / cut.spanMillis) + 1) * cut.spanMillis
      }
      let i = this.head
      for (;;) {
        if (i >= this.buffer.length) {
          const before = this.head
          if (!(yield* this.more())) break
          i -= before - this.head // the buffer may have been compacted
          continue
        }
        const e = this.timeOf(this.buffer[i])
        if (e === undefined) return
        if (e >= this.boundary) break
        i++
      }
      this.hand(t, i)
      // The next batch's span: the next one with records (empty spans are skipped).
      if (i < this.buffer.length) {
        const next = this.timeOf(this.buffer[i])
        if (next === undefined) return
        this.boundary = Math.max(
          this.boundary + cut.spanMillis,
          (Math.floor(next / cut.spanMillis) + 1) * cut.spanMillis,
        )
      } else {
        this.boundary += cut.spanMillis
      }
    })
  }

  private timeOf(a: A): number | undefined {
    const e = (this.cut as Extract<Cut<A>, { _tag: "Span" }>).eventTime(a)
    if (typeof e === "number" && Number.isFinite(e)) return e
    this.failure = new ReplayError({
      message: `Cannot cut a replay batch by event time: the event-time function returned ${String(e)} for ${
        JSON.stringify(a) ?? String(a)
      }; return finite epoch milliseconds`,
    })
    return undefined
  }

  private hand(t: number, end: number): void {
    const batch = this.head === 0 && end === this.buffer.length ? this.buffer : this.buffer.slice(this.head, end)
    this.head = end
    this.consumed += batch.length
    this.batches.set(t, batch)
    this.consumedAt.set(t, this.consumed)
    this.record(t, batch.length, { consumed: this.consumed })
    if (this.head === this.buffer.length && this.source._tag === "Stream") {
      this.buffer = []
      this.head = 0
    }
  }

  compute(t: number): Effect.Effect<Batch<A> | undefined, unknown, NodeEnv> {
    return Effect.suspend(() => {
      const batch = this.batches.get(t)
      if (batch !== undefined) return Effect.succeed(batch)
      if (this.failure !== undefined) {
        return Effect.fail(
          this.failure instanceof ReplayError ? this.failure : new ReplayError({
            message: `Cannot replay "${this.name}" at ${Time.format(t)}: ${
              this.failure instanceof Error ? this.failure.message : String(this.failure)
            }`,
            cause: this.failure,
          }),
        )
      }
      return Effect.succeed([])
    })
  }

  override clearMetadata(t: number): void {
    super.clearMetadata(t)
    const limit = t - (this.rememberMillis ?? this.slideMillis)
    for (const time of this.batches.keys()) if (time <= limit) this.batches.delete(time)
    for (const time of this.consumedAt.keys()) if (time < t) this.consumedAt.delete(time)
  }

  override checkpointData(): InputCheckpoint {
    return {
      key: `replay-${this.streamId}`,
      snapshot: (t) => ({ consumed: this.consumedAt.get(t) ?? this.consumed }),
      restore: (data) => {
        const consumed = (data as { consumed?: unknown } | null)?.consumed
        if (typeof consumed !== "number" || !Number.isInteger(consumed) || consumed < 0) {
          throw new Error(`not replay data: ${JSON.stringify(data)}`)
        }
        this.skip = consumed
      },
    }
  }
}
