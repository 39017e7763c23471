/**
 * Input streams: queue (tests), receiver-based (sockets, custom receivers) and the supervisor
 * that runs a receiver as a scoped resource and restarts it on failure.
 * @internal
 */
import { Clock, Duration, Effect, Exit, Fiber, Queue, Schedule, Scope } from "effect"
import { describeCause, ReceiverError } from "../Errors.ts"
import type { ReceiverInfo } from "../Listener.ts"
import { defaultRestartSchedule, type Receiver, restartFailure, type Store } from "../Receiver.ts"
import { type Batch, InputNode, type InputRuntime, type NodeContext, type NodeEnv } from "./node.ts"


/** @internal */
export type QueueSource<A> = Array<ReadonlyArray<A>> | Queue.Queue<ReadonlyArray<A>>

/**
 * Spark's `QueueInputDStream`: each batch dequeues one queued batch (`oneAtATime`) or all of
 * them merged; an empty queue gives the default batch (empty unless given).
 * @internal
 */
export class QueueInputNode<A> extends InputNode<A> {
  readonly kind = "QueueInputDStream"
  readonly name = "queueStream"
  private readonly taken = new Map<number, Batch<A>>()

  constructor(
    ctx: NodeContext,
    readonly source: QueueSource<A>,
    readonly oneAtATime: boolean,
    readonly defaultBatch: Batch<A>,
  ) {
    super(ctx)
  }

  private dequeue(): Effect.Effect<Array<Batch<A>>> {
    const source = this.source
    if (Array.isArray(source)) {
      if (source.length === 0) return Effect.succeed([])
      return Effect.succeed(this.oneAtATime ? [source.shift()!] : source.splice(0, source.length))
    }
    const queue = source as Queue.Queue<Batch<A>>
    return this.oneAtATime
      ? Effect.map(Queue.poll(queue), (o) => o._tag === "Some" ? [o.value] : [])
      : Effect.orDie(Queue.clear(queue))
  }

  compute(t: number): Effect.Effect<Batch<A>> {
    return Effect.map(this.dequeue(), (batches) => {
      let batch: Batch<A>
      if (batches.length === 0) batch = this.defaultBatch
      else if (batches.length === 1) batch = batches[0]
      else batch = batches.flat() as Batch<A>
      this.record(t, batch.length)
      return batch
    })
  }
}

/**
 * A receiver-based input: the receiver stores records into a buffer; at each tick the buffer
 * becomes the batch of that time (Spark's block allocation at batch time).
 * @internal
 */
export class ReceiverInputNode<A> extends InputNode<A> {
  readonly kind = "ReceiverInputDStream"
  private buffer: Array<A> = []
  private readonly allocated = new Map<number, Batch<A>>()
  private fiber: Fiber.Fiber<void> | undefined
  private stopped = false
  lastError: { message: string; cause: unknown; time: number } | undefined

  constructor(ctx: NodeContext, readonly receiver: Receiver<A>) {
    super(ctx)
  }

  get name(): string {
    return this.receiver.name
  }

  /** Adds records to the current buffer. */
  storeRecords(records: ReadonlyArray<A>): void {
    if (records.length === 1) this.buffer.push(records[0])
    else for (let i = 0; i < records.length; i++) this.buffer.push(records[i])
  }

  override hasPending(): boolean {
    return this.buffer.length > 0
  }

  override allocate(t: number): Effect.Effect<void> {
    return Effect.sync(() => {
      const batch = this.buffer
      this.buffer = []
      this.allocated.set(t, batch)
      this.record(t, batch.length)
    })
  }

  compute(t: number): Effect.Effect<Batch<A>> {
    return Effect.sync(() => {
      const batch = this.allocated.get(t) ?? []
      this.allocated.delete(t)
      return batch
    })
  }

  override clearMetadata(t: number): void {
    super.clearMetadata(t)
    const limit = t - (this.rememberMillis ?? this.slideMillis)
    for (const time of this.allocated.keys()) if (time <= limit) this.allocated.delete(time)
  }

  info(active: boolean): ReceiverInfo {
    return {
      streamId: this.streamId,
      name: this.name,
      active,
      lastErrorMessage: this.lastError?.message,
      lastError: this.lastError?.cause,
      lastErrorTime: this.lastError?.time,
    }
  }

  override start(rt: InputRuntime): Effect.Effect<void, never, Scope.Scope | NodeEnv> {
    return Effect.gen({ self: this }, function*() {
      this.fiber = yield* Effect.forkScoped(supervise(this, rt))
    })
  }

  override stopReceiving(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.stopped = true
      return this.fiber ? Fiber.interrupt(this.fiber) : Effect.void
    })
  }

  get isStopped(): boolean {
    return this.stopped
  }
}

const makeStore = <A>(node: ReceiverInputNode<A>, rt: InputRuntime, stored: { count: number }): Store<A> => {
  const one = (record: A): Effect.Effect<void> =>
    Effect.sync(() => {
      node.storeRecords([record])
      stored.count++
    })
  const members = {
    all: (records: ReadonlyArray<A>) =>
      Effect.sync(() => {
        node.storeRecords(records)
        stored.count += records.length
      }),
    reportError: (message: string, cause?: unknown) =>
      Effect.flatMap(Clock.currentTimeMillis, (time) => {
        node.lastError = { message, cause, time }
        return rt.publish({ _tag: "ReceiverError", receiverInfo: node.info(true) })
      }),
    restart: (message: string, cause?: unknown, delay?: Duration.Input) =>
      restartFailure(node.name, message, cause, delay),
    isStopped: Effect.sync(() => node.isStopped),
    name: node.name,
    streamId: node.streamId,
  }
  const store: Store<A> = Object.assign(one, members)
  return store
}

/**
 * Spark's `ReceiverSupervisor`: runs the receiver's scoped `run`; when it fails or ends,
 * reports a receiver-error event, waits for the restart schedule (or the delay the receiver
 * asked for) and runs it again. The schedule starts afresh after a run that stored records.
 * Ends when interrupted (context stop) or when the schedule is exhausted.
 * @internal
 */
const supervise = <A>(node: ReceiverInputNode<A>, rt: InputRuntime): Effect.Effect<void> =>
  Effect.gen(function*() {
    const schedule = node.receiver.restartSchedule ?? defaultRestartSchedule
    let step = yield* Schedule.toStep(schedule)
    yield* Effect.addFinalizer(() => rt.publish({ _tag: "ReceiverStopped", receiverInfo: node.info(false) }))
    yield* rt.publish({ _tag: "ReceiverStarted", receiverInfo: node.info(true) })
    while (true) {
      const stored = { count: 0 }
      const store = makeStore(node, rt, stored)
      const exit = yield* Effect.exit(Effect.scoped(node.receiver.run(store)))
      if (node.isStopped) return
      if (Exit.hasInterrupts(exit) && !Exit.hasFails(exit) && !Exit.hasDies(exit)) return
      const error = receiverErrorOf(node.name, exit)
      const now = yield* Clock.currentTimeMillis
      node.lastError = { message: error.message, cause: error.cause, time: now }
      yield* rt.publish({ _tag: "ReceiverError", receiverInfo: node.info(true) })
      yield* Effect.logWarning(`Restarting receiver ${node.name}: ${error.message}`)
      if (stored.count > 0) step = yield* Schedule.toStep(schedule)
      const next = yield* Effect.exit(step(now, error))
      if (Exit.isFailure(next)) {
        yield* Effect.logWarning(`Receiver ${node.name} stopped: its restart schedule is exhausted`)
        return
      }
      const delay = error.restartDelayMillis !== undefined
        ? Duration.millis(error.restartDelayMillis)
        : next.value[1]
      yield* Effect.sleep(delay)
    }
  }).pipe(Effect.scoped)

const receiverErrorOf = (name: string, exit: Exit.Exit<void, unknown>): ReceiverError => {
  if (Exit.isSuccess(exit)) {
    return new ReceiverError({ receiver: name, message: "Receiver stopped on its own; restarting it" })
  }
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (failure !== undefined && failure._tag === "Fail") {
    const e = failure.error
    if (e instanceof ReceiverError) return e
    return new ReceiverError({ receiver: name, message: `Receiver failed: ${describeCause(e)}`, cause: e })
  }
  const defect = exit.cause.reasons.find((r) => r._tag === "Die")
  const cause = defect !== undefined && defect._tag === "Die" ? defect.defect : exit.cause
  return new ReceiverError({ receiver: name, message: `Receiver died: ${describeCause(cause)}`, cause })
}
