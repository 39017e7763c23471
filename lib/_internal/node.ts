/**
 * The DStream graph's nodes (Spark's `DStream` class hierarchy): each node has parents, a slide
 * duration and `compute(t)` returning the batch for time `t`, or `undefined` when the node has
 * no batch at `t`. Results are memoised per batch time and forgotten after the remember
 * duration. Everything here runs inside one batch on the job fiber: plain loops, no
 * per-element Effect.
 * @internal
 */
import { Effect } from "effect"
import type { FileSystem, Path, Schedule, Scope } from "effect"
import { IllegalStateError, ValidationError } from "../Errors.ts"
import type { BatchInfo, StreamingEvent } from "../Listener.ts"
import type { ReceiverSettings } from "../Receiver.ts"
import * as Time from "../Time.ts"

/** Services a node's computation may use. @internal */
export type NodeEnv = FileSystem.FileSystem | Path.Path

/** What an input gets from the running context at start. @internal */
export interface InputRuntime {
  readonly publish: (event: StreamingEvent) => Effect.Effect<void>
  readonly startTime: number
}

/** A batch: a plain array. @internal */
export type Batch<A> = ReadonlyArray<A>

/** What a node needs to know of its context. @internal */
export interface NodeContext {
  readonly batchMillis: number
  readonly lifecycle: () => "INITIALIZED" | "ACTIVE" | "STOPPED"
  readonly register: (node: Node<any>) => void
  readonly checkpointDir: () => string | undefined
  /** Runs `finalizer` when the context stops (or now, if it already has). */
  readonly onStop: (finalizer: () => Effect.Effect<unknown>) => void
  /** Settings for every receiver of the context (receivers' own settings win). */
  readonly receiverSettings?: ReceiverSettings | undefined
  /** `"deadLetter"`: per-record errors of fused operators go to `deadLetter` instead of failing the batch. */
  readonly recordErrors?: "fail" | "deadLetter" | undefined
  /** Receives a record that failed in batch `t` (only called with `recordErrors: "deadLetter"`). */
  readonly deadLetter?: ((t: number, failed: FailedRecord) => void) | undefined
}

/**
 * What to do when an output operation (or the computation of its batch) fails: `"stop"` stops
 * the context; `"skip"` reports the failure and goes on, the batch counting as done; `retry`
 * runs it again on the `Schedule` (which receives the failure), then stops or skips.
 * @internal
 */
export type FailurePolicy =
  | "stop"
  | "skip"
  | { readonly retry: Schedule.Schedule<unknown, unknown>; readonly then?: "stop" | "skip" | undefined }

/**
 * A record an operator failed on, routed to the dead letters (`recordErrors: "deadLetter"`).
 * @internal
 */
export interface FailedRecord {
  /** The record the operator was given. */
  readonly record: unknown
  /** The operator that threw: `map`, `filter`, `reduceByKey`, … */
  readonly operator: string
  /** What it threw. */
  readonly cause: unknown
  /** The batch being computed. */
  readonly batchTime: number
}

/** Carries a per-record failure out of a fused loop. @internal */
class RecordFailure {
  constructor(readonly record: unknown, readonly operator: string, readonly cause: unknown) {}
}

/** Wraps a per-element function so that what it throws names the operator and its record. */
const guard = <A>(push: (a: A) => void, operator: string): (a: A) => void => (a) => {
  try {
    push(a)
  } catch (cause) {
    throw cause instanceof RecordFailure ? cause : new RecordFailure(a, operator, cause)
  }
}

/**
 * Pushes every element of `input` through `push`. With dead letters, a record whose push throws
 * is handed to the context's dead letters and the loop goes on with the next record; without,
 * this is the plain loop (the try/catch is outside it, so it costs nothing until a record fails).
 */
const pushAll = <A>(node: Node<any>, t: number, input: Batch<A>, push: (a: A) => void): void => {
  const n = input.length
  if (node.ctx.recordErrors !== "deadLetter") {
    for (let i = 0; i < n; i++) push(input[i])
    return
  }
  let i = 0
  while (i < n) {
    try {
      for (; i < n; i++) push(input[i])
    } catch (error) {
      const failure = error instanceof RecordFailure ? error : new RecordFailure(input[i], node.kind, error)
      node.ctx.deadLetter?.(t, {
        record: failure.record,
        operator: failure.operator,
        cause: failure.cause,
        batchTime: t,
      })
      i++
    }
  }
}

/** Wall-clock time (`performance.now()`) when the job fiber last yielded or woke up. */
let lastYield = 0

/**
 * The job fiber yields at a yield point once it has run this long without yielding: often enough
 * for a stop, a timeout, the batch clock and the receivers (a CPU-bound batch gives way every
 * few milliseconds), rarely enough that a small batch pays no scheduler round trip per node.
 */
const yieldAfterMillis = 2

/**
 * A yield point of the job fiber (between nodes, between outputs): yields when the fiber has run
 * {@link yieldAfterMillis} since it last yielded or woke up, else goes on at once. Which points
 * yield changes only when other fibers run, never what a batch computes.
 * @internal
 */
export const yieldPoint: Effect.Effect<void> = Effect.suspend(() =>
  performance.now() - lastYield < yieldAfterMillis
    ? Effect.void
    : Effect.andThen(Effect.yieldNow, Effect.sync(markAwake))
)

/** Tells the yield points that the job fiber just woke up (it waited for a batch). @internal */
export const markAwake = (): void => {
  lastYield = performance.now()
}

let nextNodeId = 0

/** @internal */
export abstract class Node<A> {
  readonly id = nextNodeId++
  abstract readonly kind: string
  zeroTime: number | undefined = undefined
  rememberMillis: number | undefined = undefined
  checkpointMillis: number | undefined = undefined
  /** A lower bound for the remember duration (`DStream.remember`). */
  minRememberMillis: number | undefined = undefined
  /** Stateful nodes that need a checkpoint directory (Spark's `mustCheckpoint`). */
  mustCheckpoint = false
  /**
   * The operator, as the user wrote it, when this node reads or writes files (so needs the
   * program's FileSystem and Path): `start` fails naming it when the program provides none.
   */
  fileSystemUser: string | undefined = undefined
  /** The operator, as the user wrote it, when this node opens TCP connections (needs a SocketConnector). */
  socketUser: string | undefined = undefined
  readonly generated: Map<number, Batch<A>> = new Map()

  constructor(
    readonly ctx: NodeContext,
    readonly parents: ReadonlyArray<Node<any>>,
    readonly slideMillis: number,
  ) {
    const state = ctx.lifecycle()
    if (state === "ACTIVE") {
      throw new IllegalStateError({
        message: "Cannot add new inputs, transformations, or output operations after starting a context",
      })
    }
    if (state === "STOPPED") {
      throw new IllegalStateError({
        message: "Cannot add new inputs, transformations, or output operations after stopping a context",
      })
    }
    for (const p of parents) {
      if (p.ctx !== ctx) throw new ValidationError({ message: "Some of the DStreams belong to different contexts" })
    }
    ctx.register(this)
  }

  /** Computes the batch for a valid time `t`. */
  abstract compute(t: number): Effect.Effect<Batch<A> | undefined, unknown, NodeEnv>

  /** How long the parents must remember (windows ask for more). */
  parentRememberMillis(): number {
    return this.rememberMillis!
  }

  toString(): string {
    return this.kind
  }

  isTimeValid(t: number): boolean {
    if (this.zeroTime === undefined) {
      throw new IllegalStateError({ message: `${this.kind} has not been initialized` })
    }
    return t > this.zeroTime && (t - this.zeroTime) % this.slideMillis === 0
  }

  /** Spark's `getOrCompute`: memoised per time, `undefined` at invalid times. */
  getOrCompute(t: number): Effect.Effect<Batch<A> | undefined, unknown, NodeEnv> {
    return Effect.suspend(() => {
      if (!this.isTimeValid(t)) return Effect.succeed(undefined)
      const cached = this.generated.get(t)
      if (cached !== undefined) return Effect.succeed(cached)
      // A yield point after every node computed (parents compute first, so a yield before
      // would come before all the work): a batch of many nodes can be interrupted (stop,
      // timeouts) between them, and the clock and receivers get to run.
      return Effect.flatMap(this.compute(t), (batch) => {
        if (batch !== undefined) this.generated.set(t, batch)
        return Effect.as(yieldPoint, batch)
      })
    })
  }

  /**
   * The batch at `t` as parts to read one after another, each made when read, when this node
   * can give it so (a receiver input holding lines as bytes), else `undefined`: fused readers
   * (pipes, folds) then never hold all of a large batch's records at once, so young
   * collections do not copy them. A batch read this way is not memoised as an array; a later
   * `getOrCompute` of `t` makes it again.
   */
  batchParts(_t: number): Effect.Effect<ReadonlyArray<() => Batch<A>> | undefined> {
    return Effect.succeed(undefined)
  }

  /** Spark's `initialize(zeroTime)`: zero time, default checkpoint interval and remember duration. */
  initialize(zero: number): void {
    if (this.zeroTime !== undefined && this.zeroTime !== zero) {
      throw new IllegalStateError({
        message: `Zero time of ${this.kind} is already ${Time.format(this.zeroTime)}, cannot initialize it again to ${
          Time.format(zero)
        }`,
      })
    }
    this.zeroTime = zero
    if (this.mustCheckpoint && this.checkpointMillis === undefined) {
      this.checkpointMillis = this.defaultCheckpointMillis()
    }
    if (this.rememberMillis === undefined) {
      this.rememberMillis = this.checkpointMillis !== undefined && this.checkpointMillis >= this.slideMillis
        ? 2 * this.checkpointMillis
        : this.slideMillis
      if (this.minRememberMillis !== undefined && this.minRememberMillis > this.rememberMillis) {
        this.rememberMillis = this.minRememberMillis
      }
    }
    for (const p of this.parents) p.initialize(zero)
  }

  /** Spark's default for streams that must checkpoint: a slide multiple of at least 10 s. */
  defaultCheckpointMillis(): number {
    return this.slideMillis * Math.ceil(10_000 / this.slideMillis)
  }

  /** Spark's `remember(duration)`: raise the remember duration, then propagate to parents. */
  remember(ms: number | undefined): void {
    if (ms !== undefined && (this.rememberMillis === undefined || ms > this.rememberMillis)) {
      this.rememberMillis = ms
    }
    for (const p of this.parents) p.remember(this.parentRememberMillis())
  }

  /** Spark's `clearMetadata(time)`: forget batches with time <= t − remember. */
  clearMetadata(t: number): void {
    const limit = t - (this.rememberMillis ?? this.slideMillis)
    for (const time of this.generated.keys()) {
      if (time <= limit) this.generated.delete(time)
    }
    for (const p of this.parents) p.clearMetadata(t)
  }

  /** Checks made when the context starts; throws `ValidationError`. */
  validateAtStart(): void {
    if (this.mustCheckpoint && this.ctx.checkpointDir() === undefined) {
      throw new ValidationError({
        message: `Cannot start: ${this.kind} needs a checkpoint directory; set it with ssc.checkpoint(directory)`,
      })
    }
    if (this.checkpointMillis !== undefined) {
      if (this.checkpointMillis < this.slideMillis) {
        throw new ValidationError({
          message: `The checkpoint interval of ${this.kind} (${
            Time.format(this.checkpointMillis)
          }) is lower than its slide (${Time.format(this.slideMillis)}); set it to at least ${
            Time.format(this.slideMillis)
          }`,
        })
      }
      if (this.checkpointMillis % this.slideMillis !== 0) {
        throw new ValidationError({
          message: `The checkpoint interval of ${this.kind} (${
            Time.format(this.checkpointMillis)
          }) is not a multiple of its slide (${Time.format(this.slideMillis)})`,
        })
      }
    }
    for (const p of this.parents) p.validateAtStart()
  }

  /** All nodes reachable from this one (itself included). */
  collect(into: Set<Node<any>> = new Set()): Set<Node<any>> {
    if (into.has(this)) return into
    into.add(this)
    for (const p of this.parents) p.collect(into)
    return into
  }
}

/** A per-element stage: given the downstream push, the upstream push. @internal */
export type Stage<A, B> = (push: (b: B) => void) => (a: A) => void

/**
 * Narrow per-element operators (map, filter, flatMap, mapToPair, …) fused into one loop: a
 * chain of them reads the parent batch once and allocates only the output array.
 * @internal
 */
export class PipeNode<A, B> extends Node<B> {
  constructor(
    ctx: NodeContext,
    readonly source: Node<A>,
    readonly stage: Stage<A, B>,
    readonly kind: string,
  ) {
    super(ctx, [source], source.slideMillis)
  }

  /** `operator` names the operator in dead letters (`map`, `filter`, …; default `kind`). */
  static make<A, B>(parent: Node<A>, stage: Stage<A, B>, kind: string, operator: string = kind): Node<B> {
    // With dead letters, each operator's function names itself and its record when it throws.
    const own: Stage<A, B> = parent.ctx.recordErrors === "deadLetter" ? (push) => guard(stage(push), operator) : stage
    // Fuse with a parent pipe: compose stages, read the grandparent directly.
    if (parent instanceof PipeNode && parent.rememberMillis === undefined) {
      const inner = parent.stage as Stage<any, A>
      return new PipeNode(parent.ctx, parent.source, (push: (b: B) => void) => inner(own(push)), kind)
    }
    return new PipeNode(parent.ctx, parent, own, kind)
  }

  /** The batch being computed: what the stages push lands here. */
  private out: Array<B> = []
  /** The composed stages, built at the first batch and reused by every later one (see `chain`). */
  private pipe: ((a: A) => void) | undefined = undefined

  /**
   * The stages composed into one push function, built once: V8 optimises a chain of closures
   * made once far better than the same chain made anew for each batch (a word count's fused
   * loop ran 15 % slower with a chain per batch). A node's batch is computed synchronously from
   * start to end, so one output array per node, swapped per batch, is enough.
   */
  private chain(): (a: A) => void {
    return this.pipe ??= this.stage((b) => {
      this.out.push(b)
    })
  }

  compute(t: number): Effect.Effect<Batch<B> | undefined, unknown, NodeEnv> {
    return Effect.flatMap(this.source.batchParts(t), (parts) => {
      if (parts !== undefined) {
        const out: Array<B> = []
        this.out = out
        const push = this.chain()
        for (const part of parts) pushAll(this, t, part(), push)
        this.out = []
        return Effect.succeed(out)
      }
      return Effect.map(this.source.getOrCompute(t), (input) => {
        if (input === undefined) return undefined
        const out: Array<B> = []
        this.out = out
        pushAll(this, t, input, this.chain())
        this.out = []
        return out
      })
    })
  }
}

/** An accumulator a {@link FoldNode} pushes one batch's elements into. @internal */
export interface Fold<A, B> {
  readonly push: (a: A) => void
  readonly result: () => Batch<B>
}

/**
 * A per-batch aggregation (reduceByKey, countByValue, groupByKey, …) that reads its input
 * through the parent's fused pipe, so `flatMap → mapToPair → reduceByKey` is one loop with
 * no intermediate arrays.
 * @internal
 */
export class FoldNode<A, B> extends Node<B> {
  readonly source: Node<any>
  readonly stage: Stage<any, A> | undefined

  constructor(
    parent: Node<A>,
    readonly makeFold: (time: number) => Fold<A, B>,
    readonly kind: string,
    /** Names the operator in dead letters (`reduceByKey`, …). */
    readonly operator: string = kind,
  ) {
    const fused = parent instanceof PipeNode && parent.rememberMillis === undefined
    super(parent.ctx, [fused ? parent.source : parent], parent.slideMillis)
    this.source = fused ? parent.source : parent
    this.stage = fused ? parent.stage : undefined
  }

  /** The batch being computed's accumulator: the reused chain pushes into it. */
  private fold: Fold<A, B> | undefined = undefined
  /** The fused stages composed with the accumulator's push, built once (see `PipeNode.chain`). */
  private pipe: ((a: any) => void) | undefined = undefined

  private chain(fold: Fold<A, B>): (a: any) => void {
    const deadLetters = this.ctx.recordErrors === "deadLetter"
    // without stages nor dead letters the accumulator's own push is the whole loop body
    if (this.stage === undefined && !deadLetters) return fold.push
    if (this.pipe === undefined) {
      const leaf = (a: A) => this.fold!.push(a)
      const own = deadLetters ? guard(leaf, this.operator) : leaf
      this.pipe = this.stage === undefined ? own : this.stage(own)
    }
    return this.pipe
  }

  compute(t: number): Effect.Effect<Batch<B> | undefined, unknown, NodeEnv> {
    const run = (inputs: ReadonlyArray<() => Batch<any>>): Batch<B> => {
      const fold = this.makeFold(t)
      this.fold = fold
      const push = this.chain(fold)
      for (const input of inputs) pushAll(this, t, input(), push)
      this.fold = undefined
      return fold.result()
    }
    return Effect.flatMap(
      this.source.batchParts(t),
      (parts) =>
        parts !== undefined
          ? Effect.succeed(run(parts))
          : Effect.map(this.source.getOrCompute(t), (input) => input === undefined ? undefined : run([() => input])),
    )
  }
}

/** A whole-batch function of one or more parents' batches and the batch time. @internal */
export type BatchFunction<A> = (
  inputs: ReadonlyArray<Batch<any>>,
  time: number,
) => Batch<A> | Effect.Effect<Batch<A>, unknown, NodeEnv>

/**
 * Whole-batch operators (mapPartitions, glom, union, transform, keyed aggregations, joins).
 * `missing` decides what happens when a parent has no batch: `"none"` gives no batch, a
 * string fails with that message followed by the time.
 * @internal
 */
export class BatchNode<A> extends Node<A> {
  constructor(
    ctx: NodeContext,
    parents: ReadonlyArray<Node<any>>,
    readonly fn: BatchFunction<A>,
    readonly kind: string,
    readonly missing: "none" | string = "none",
  ) {
    super(ctx, parents, sameSlide(parents))
  }

  compute(t: number): Effect.Effect<Batch<A> | undefined, unknown, NodeEnv> {
    return Effect.flatMap(
      Effect.forEach(this.parents, (p) => p.getOrCompute(t)),
      (inputs): Effect.Effect<Batch<A> | undefined, unknown, NodeEnv> => {
        for (const input of inputs) {
          if (input === undefined) {
            return this.missing === "none"
              ? Effect.succeed(undefined)
              : Effect.fail(new IllegalStateError({ message: `${this.missing} ${Time.format(t)}` }))
          }
        }
        const result = this.fn(inputs as ReadonlyArray<Batch<any>>, t)
        if (Effect.isEffect(result)) return result as Effect.Effect<Batch<A>, unknown, NodeEnv>
        if (result === null || result === undefined) {
          return Effect.fail(
            new IllegalStateError({
              message: `Transform function of ${this.kind} returned ${result}; return an empty array for no elements`,
            }),
          )
        }
        return Effect.succeed(result)
      },
    )
  }
}

/** The batches' elements in order, as one array (a single batch is returned as is). @internal */
export const concatBatches = <A>(batches: ReadonlyArray<Batch<A>>): Batch<A> => {
  if (batches.length === 1) return batches[0]
  let n = 0
  for (const b of batches) n += b.length
  const out = new Array<A>(n)
  let i = 0
  for (const b of batches) for (let j = 0; j < b.length; j++) out[i++] = b[j]
  return out
}

/** Parents of a multi-parent operator must share one slide duration. @internal */
export const sameSlide = (parents: ReadonlyArray<Node<any>>): number => {
  if (parents.length === 0) throw new ValidationError({ message: "The list of DStreams to combine is empty" })
  const slide = parents[0].slideMillis
  for (const p of parents) {
    if (p.slideMillis !== slide) {
      throw new ValidationError({
        message: `Cannot combine DStreams with different slide durations: ${
          parents.map((q) => Time.format(q.slideMillis)).join(", ")
        }`,
      })
    }
  }
  return slide
}

/**
 * An output operation (Spark's `ForEachDStream`): at each valid time with a parent batch, runs
 * its function once.
 * @internal
 */
export class OutputNode<A> extends Node<never> {
  readonly kind = "ForEachDStream"
  constructor(
    readonly parent: Node<A>,
    readonly fn: (batch: Batch<A>, time: number) => Effect.Effect<void, unknown, NodeEnv>,
    readonly label: string,
    readonly settings: OutputSettings = {},
  ) {
    super(parent.ctx, [parent], parent.slideMillis)
  }

  compute(): Effect.Effect<undefined> {
    return Effect.succeed(undefined)
  }

  /** The job for time `t`, or `undefined` when the parent has no batch then. */
  generateJob(t: number): Effect.Effect<Effect.Effect<void, unknown, NodeEnv> | undefined, unknown, NodeEnv> {
    return Effect.map(this.parent.getOrCompute(t), (batch) => batch === undefined ? undefined : this.fn(batch, t))
  }
}

/** An output's own failure policy and timeout (the context's apply otherwise). @internal */
export interface OutputSettings {
  readonly onFailure?: FailurePolicy | undefined
  /** Milliseconds, or `Infinity` for none. */
  readonly timeoutMillis?: number | undefined
}

/**
 * `ssc.deadLetters`: the records fused operators failed on in each batch. Outputs reading it
 * run after the batch's other outputs, so a batch's dead letters are complete when they run.
 * @internal
 */
export class DeadLetterNode extends Node<FailedRecord> {
  readonly kind = "DeadLetterDStream"
  private readonly pending = new Map<number, Array<FailedRecord>>()

  constructor(ctx: NodeContext) {
    super(ctx, [], ctx.batchMillis)
  }

  add(t: number, failed: FailedRecord): void {
    const letters = this.pending.get(t)
    if (letters === undefined) this.pending.set(t, [failed])
    else letters.push(failed)
  }

  compute(t: number): Effect.Effect<Batch<FailedRecord>> {
    return Effect.sync(() => {
      const letters = this.pending.get(t) ?? []
      this.pending.delete(t)
      return letters
    })
  }

  /** Drops the dead letters of batches up to `t` (their outputs have run, or none reads them). */
  forget(t: number): void {
    for (const time of this.pending.keys()) if (time <= t) this.pending.delete(time)
  }
}

/**
 * An input's part in graph checkpoints (Spark's `DStreamCheckpointData` of an input): what it
 * must remember so that a recovered context re-runs its batches with the same data.
 * @internal
 */
export interface InputCheckpoint {
  /** Stable key of this input's data in the checkpoint. */
  readonly key: string
  /** The data to write with the graph checkpoint taken after batch `time`. */
  readonly snapshot: (time: number) => unknown
  /** Restores `snapshot` data of the checkpoint of `time`, before start; throws an Error on bad data. */
  readonly restore: (data: unknown, time: number) => void
  /**
   * After the checkpoint of `time` is durable; `oldestKept` is the oldest checkpoint still kept
   * (what it covers may be released: log segments deleted, offsets committed).
   */
  readonly written?: ((time: number, oldestKept: number) => Effect.Effect<void>) | undefined
}

/** Information about one input's batch (Spark's `StreamInputInfo`). @internal */
export interface InputInfo {
  readonly numRecords: number
  readonly metadata?: Record<string, unknown> | undefined
}

/**
 * An input stream (Spark's `InputDStream`): started with the context, told about each batch
 * time at the tick (`allocate`), computed like any node.
 * @internal
 */
export abstract class InputNode<A> extends Node<A> {
  /** Assigned by the context when the node registers (0, 1, 2, … in creation order). */
  declare streamId: number
  /** Per-batch input info, read by the scheduler for `BatchInfo`. */
  readonly inputInfo = new Map<number, InputInfo>()

  constructor(ctx: NodeContext) {
    super(ctx, [], ctx.batchMillis)
  }

  abstract readonly name: string

  /** Starts the source in the context's scope (receivers fork their supervisors here). */
  start(_rt: InputRuntime): Effect.Effect<void, unknown, Scope.Scope | NodeEnv> {
    return Effect.void
  }

  /** Called at the tick of batch `t`, before the batch is queued (Spark's block allocation). */
  allocate(_t: number): Effect.Effect<void> {
    return Effect.void
  }

  /** Stops receiving (graceful stop calls this first). */
  stopReceiving(): Effect.Effect<void> {
    return Effect.void
  }

  /** `true` while the source holds records not yet allocated to a batch. */
  hasPending(): boolean {
    return false
  }

  /** Records the source holds that are not yet allocated to a batch (a stop reports them). */
  storedRecords(): number {
    return 0
  }

  /**
   * `true` when records this input received but did not process survive a stop (a write-ahead
   * log holds them; a replayable source can read them again), so a stop need not report them.
   */
  keepsUnprocessed(): boolean {
    return false
  }

  /** This input's part in graph checkpoints, or `undefined` when it has nothing to keep. */
  checkpointData(): InputCheckpoint | undefined {
    return undefined
  }

  /** Told about every completed batch, in order (rate controllers feed on it). */
  batchCompleted(_info: BatchInfo): void {}

  protected record(t: number, numRecords: number, metadata?: Record<string, unknown>): void {
    this.inputInfo.set(t, { numRecords, metadata })
  }

  override clearMetadata(t: number): void {
    super.clearMetadata(t)
    const limit = t - (this.rememberMillis ?? this.slideMillis)
    for (const time of this.inputInfo.keys()) if (time <= limit) this.inputInfo.delete(time)
  }
}
