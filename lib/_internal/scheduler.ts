/**
 * Spark's JobGenerator and JobScheduler in one place: the clock fiber cuts batches (asks each
 * input to allocate what it received, then queues the batch time), and the job fiber runs the
 * queued batches one at a time in time order, output operations in registration order,
 * publishing listener events and forgetting old batches afterwards.
 * @internal
 */
import { Clock, Deferred, Effect, Exit, Fiber, Queue, type Scope, Stream } from "effect"
import * as BatchClock from "../BatchClock.ts"
import { BatchJobError, describeCause } from "../Errors.ts"
import { type BatchInfo, makeBatchInfo, type OutputOperationInfo, type StreamInputInfo } from "../Listener.ts"
import type { StreamingEvent } from "../Listener.ts"
import type { Graph } from "./graph.ts"
import type { NodeEnv } from "./node.ts"

interface PendingBatch {
  readonly time: number
  readonly submissionTime: number
}

/** @internal */
export class JobScheduler {
  private pending!: Queue.Queue<PendingBatch>
  private clockFiber: Fiber.Fiber<void> | undefined
  private jobFiber: Fiber.Fiber<void> | undefined
  private processing = false
  private queued = 0
  private waiters: Array<{ readonly time: number; readonly deferred: Deferred.Deferred<void> }> = []
  private batchDone: Deferred.Deferred<void> = Deferred.makeUnsafe()
  /** Time of the last completed batch. */
  lastCompleted = -Infinity
  /** Time of the last batch the clock cut. */
  lastSubmitted = -Infinity
  /** Runs after a batch's outputs succeed, before `BatchCompleted` (the checkpoint write). */
  afterBatch: ((time: number) => Effect.Effect<void, unknown, NodeEnv>) | undefined

  constructor(
    readonly graph: Graph,
    readonly publish: (event: StreamingEvent) => Effect.Effect<void>,
    readonly onError: (error: BatchJobError) => Effect.Effect<void>,
  ) {}

  /**
   * Starts the clock and job fibers in `scope`, the first batch at `firstTime`; `recovered`
   * batch times (pending or missed before a restart) are queued first.
   */
  start(
    firstTime: number,
    scope: Scope.Scope,
    recovered: ReadonlyArray<number> = [],
  ): Effect.Effect<void, never, NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      this.pending = yield* Queue.unbounded<PendingBatch>()
      this.jobFiber = yield* Effect.forkIn(this.runJobs(), scope)
      for (const t of recovered) yield* this.cut(t)
      this.clockFiber = yield* Effect.forkIn(
        BatchClock.ticks(firstTime, this.graph.batchMillis).pipe(Stream.runForEach((t) => this.cut(t))),
        scope,
      )
    })
  }

  /** Cuts batch `t`: inputs allocate what they received, then the batch is queued. */
  private cut(time: number): Effect.Effect<void> {
    return Effect.gen({ self: this }, function* () {
      for (const input of this.graph.inputs) yield* input.allocate(time)
      const submissionTime = yield* Clock.currentTimeMillis
      this.lastSubmitted = time
      this.queued++
      yield* this.publish({
        _tag: "BatchSubmitted",
        batchInfo: makeBatchInfo({ batchTime: time, streamIdToInputInfo: this.inputInfos(time), submissionTime }),
      })
      yield* Queue.offer(this.pending, { time, submissionTime })
    }).pipe(Effect.uninterruptible) // allocated records must reach the queue
  }

  private inputInfos(time: number): Record<number, StreamInputInfo> {
    const infos: Record<number, StreamInputInfo> = {}
    for (const input of this.graph.inputs) {
      const info = input.inputInfo.get(time)
      if (info !== undefined) {
        infos[input.streamId] = { streamId: input.streamId, name: input.name, ...info }
      }
    }
    return infos
  }

  private runJobs(): Effect.Effect<void, never, NodeEnv> {
    return Effect.forever(
      Effect.flatMap(Queue.take(this.pending), (batch) => this.runBatch(batch)),
    ) as Effect.Effect<never, never, NodeEnv>
  }

  private runBatch(batch: PendingBatch): Effect.Effect<void, never, NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      const { time, submissionTime } = batch
      this.processing = true
      const processingStartTime = yield* Clock.currentTimeMillis
      const outputInfos: Array<OutputOperationInfo> = []
      const info = (end?: number): BatchInfo =>
        makeBatchInfo({
          batchTime: time,
          streamIdToInputInfo: this.inputInfos(time),
          submissionTime,
          processingStartTime,
          processingEndTime: end,
          outputOperationInfos: outputInfos,
        })
      yield* this.publish({ _tag: "BatchStarted", batchInfo: info() })
      const outputs = this.graph.outputs
      for (let id = 0; id < outputs.length; id++) {
        const output = outputs[id]
        const job = yield* Effect.exit(output.generateJob(time))
        if (Exit.isFailure(job)) {
          return yield* this.fail(
            new BatchJobError({ batchTime: time, outputId: -1, cause: Exit.isFailure(job) ? causeOf(job) : undefined }),
          )
        }
        if (job.value === undefined) continue
        const startTime = yield* Clock.currentTimeMillis
        const started: OutputOperationInfo = {
          batchTime: time,
          id,
          name: output.label,
          startTime,
          endTime: undefined,
          failureReason: undefined,
        }
        yield* this.publish({ _tag: "OutputOperationStarted", outputOperationInfo: started })
        const result = yield* Effect.exit(job.value)
        const endTime = yield* Clock.currentTimeMillis
        const failure = Exit.isFailure(result) ? causeOf(result) : undefined
        const completed: OutputOperationInfo = {
          ...started,
          endTime,
          failureReason: failure === undefined ? undefined : describeCause(failure),
        }
        outputInfos.push(completed)
        yield* this.publish({ _tag: "OutputOperationCompleted", outputOperationInfo: completed })
        if (failure !== undefined) {
          return yield* this.fail(new BatchJobError({ batchTime: time, outputId: id, cause: failure }))
        }
      }
      if (this.afterBatch !== undefined) {
        const written = yield* Effect.exit(this.afterBatch(time))
        if (Exit.isFailure(written)) {
          return yield* this.fail(new BatchJobError({ batchTime: time, outputId: -1, cause: causeOf(written) }))
        }
      }
      const processingEndTime = yield* Clock.currentTimeMillis
      const completedInfo = info(processingEndTime)
      for (const input of this.graph.inputs) input.batchCompleted(completedInfo)
      yield* this.publish({ _tag: "BatchCompleted", batchInfo: completedInfo })
      this.graph.clearMetadata(time)
      this.processing = false
      this.queued--
      this.completed(time)
    }).pipe(Effect.onExit((exit) =>
      Effect.sync(() => {
        if (Exit.isFailure(exit)) {
          this.processing = false
          this.queued--
        }
      })
    ))
  }

  private fail(error: BatchJobError): Effect.Effect<void> {
    return Effect.andThen(this.onError(error), Effect.never)
  }

  private completed(time: number): void {
    this.lastCompleted = time
    const ready = this.waiters.filter((w) => w.time <= time)
    this.waiters = this.waiters.filter((w) => w.time > time)
    for (const w of ready) Deferred.doneUnsafe(w.deferred, Exit.void)
    const done = this.batchDone
    this.batchDone = Deferred.makeUnsafe()
    Deferred.doneUnsafe(done, Exit.void)
  }

  /** Waits until the batch of `time` (or a later one) has completed. */
  awaitBatch(time: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.lastCompleted >= time) return Effect.void
      const deferred = Deferred.makeUnsafe<void>()
      this.waiters.push({ time, deferred })
      return Deferred.await(deferred)
    })
  }

  /** `true` when no batch is queued or running. */
  get idle(): boolean {
    return this.queued === 0 && !this.processing
  }

  /**
   * Graceful drain (Spark's `JobGenerator.stop(processReceivedData = true)`): waits until no
   * input holds unallocated records, stops the clock, then waits until every cut batch has
   * been processed (with the clock still running, slow batches would never let it go idle).
   */
  drain(): Effect.Effect<void> {
    return Effect.gen({ self: this }, function* () {
      while (this.graph.inputs.some((i) => i.hasPending())) {
        yield* Deferred.await(this.batchDone)
      }
      yield* this.stopClock()
      while (!this.idle) {
        yield* Deferred.await(this.batchDone)
      }
    })
  }

  /** Stops cutting batches. */
  stopClock(): Effect.Effect<void> {
    return Effect.suspend(() => this.clockFiber ? Fiber.interrupt(this.clockFiber) : Effect.void)
  }

  /** Stops the job fiber (interrupting a running batch). */
  stopJobs(): Effect.Effect<void> {
    return Effect.suspend(() => this.jobFiber ? Fiber.interrupt(this.jobFiber) : Effect.void)
  }

  /** Releases anyone waiting for a batch (the context stopped). */
  releaseWaiters(): void {
    for (const w of this.waiters) Deferred.doneUnsafe(w.deferred, Exit.void)
    this.waiters = []
    Deferred.doneUnsafe(this.batchDone, Exit.void)
  }
}

const causeOf = (exit: Exit.Failure<unknown, unknown>): unknown => {
  const fail = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (fail !== undefined && fail._tag === "Fail") return fail.error
  const die = exit.cause.reasons.find((r) => r._tag === "Die")
  if (die !== undefined && die._tag === "Die") return die.defect
  return exit.cause
}
