/**
 * Spark's JobGenerator and JobScheduler in one place: the clock fiber cuts batches (asks each
 * input to allocate what it received, then queues the batch time), and the job fiber runs the
 * queued batches one at a time in time order, output operations in registration order,
 * publishing listener events and forgetting old batches afterwards.
 * @internal
 */
import { Cause, Clock, Deferred, Duration, Effect, Exit, Fiber, Schedule, type Scope } from "effect"
import * as BatchClock from "../BatchClock.ts"
import { BatchJobError, describeCause, OutputTimeoutError } from "../Errors.ts"
import { type BatchInfo, makeBatchInfo, type OutputOperationInfo, type StreamInputInfo } from "../Listener.ts"
import type { StreamingEvent } from "../Listener.ts"
import type { Graph } from "./graph.ts"
import {
  DeadLetterNode,
  type FailurePolicy,
  markAwake,
  type Node,
  type NodeEnv,
  type OutputNode,
  yieldPoint,
} from "./node.ts"
import { EventWindowNode } from "./eventTime.ts"
import { batchSpan, outputSpan } from "./spans.ts"

interface PendingBatch {
  readonly time: number
  readonly submissionTime: number
}

/** The context's failure handling and delay monitoring. @internal */
export interface SchedulerSettings {
  /** Failure policy of outputs without their own. */
  readonly onFailure: FailurePolicy
  /** Timeout of outputs without their own, in milliseconds (`Infinity`: none). */
  readonly outputTimeoutMillis: number
  /** Warn when the scheduling delay has grown for this many consecutive batches. */
  readonly delayWarningBatches: number
}

/** Records a stop leaves unprocessed: `lost` ones are gone, `kept` ones a restart processes. @internal */
export interface Unprocessed {
  readonly lost: number
  readonly kept: number
}

/** How one output operation's run in a batch ended. */
type OutputOutcome = { readonly _tag: "Done" } | { readonly _tag: "Stop"; readonly error: BatchJobError }

const done: OutputOutcome = { _tag: "Done" }

/** @internal */
export class JobScheduler {
  /** Batches cut and not yet taken by the job fiber, in time order. */
  private readonly pending: Array<PendingBatch> = []
  /** Resumes the job fiber when it waits for a batch (set while it waits). */
  private resumeJobs: ((batch: Effect.Effect<PendingBatch>) => void) | undefined = undefined
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
  /**
   * Runs after a batch's outputs succeed (or failed and were skipped), before `BatchCompleted`
   * (the checkpoint write).
   */
  afterBatch:
    | ((time: number, fail: (cause: unknown) => Effect.Effect<void>) => Effect.Effect<void, unknown, NodeEnv>)
    | undefined
  /** Waits for work `afterBatch` left running (checkpoint writes); run when the jobs stop. */
  flushAfterBatch: Effect.Effect<void> | undefined
  /** Runs after `BatchCompleted` (dead-letter accounting). */
  onBatchDone: ((time: number) => Effect.Effect<void>) | undefined
  /** Batch times cut and not completed, in order. */
  private readonly inflight = new Set<number>()
  /** Outputs in run order: those reading the dead letters last. */
  private ordered: ReadonlyArray<readonly [number, OutputNode<any>]> = []
  /** Event-time window operators: their per-batch figures become `EventTimeProgress` events. */
  private eventTimeOperators: ReadonlyArray<EventWindowNode<any, any, any, any>> = []
  private lastDelay: number | undefined
  private delayGrowing = 0

  constructor(
    readonly graph: Graph,
    readonly publish: (event: StreamingEvent) => Effect.Effect<void>,
    readonly onError: (error: BatchJobError) => Effect.Effect<void>,
    readonly settings: SchedulerSettings = {
      onFailure: "stop",
      outputTimeoutMillis: Infinity,
      delayWarningBatches: 10,
    },
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
      const indexed = this.graph.outputs.map((o, id) => [id, o] as const)
      const readsDeadLetters = (o: OutputNode<any>) => [...o.collect()].some((n) => n instanceof DeadLetterNode)
      this.ordered = [
        ...indexed.filter(([, o]) => !readsDeadLetters(o)),
        ...indexed.filter(([, o]) => readsDeadLetters(o)),
      ]
      const nodes = new Set<Node<any>>()
      for (const o of this.graph.outputs) o.collect(nodes)
      this.eventTimeOperators = [...nodes].filter((n) => n instanceof EventWindowNode)
      this.jobFiber = yield* Effect.forkIn(this.runJobs(), scope)
      for (const t of recovered) yield* this.cut(t, true)
      this.clockFiber = yield* Effect.forkIn(this.clock(firstTime), scope)
    })
  }

  /**
   * The batch clock (`BatchClock.ticks` as a plain loop, without a stream's per-element steps):
   * sleeps until each batch time in turn, then cuts it; a late tick still fires with its own time.
   */
  private clock(first: number): Effect.Effect<never> {
    const interval = this.graph.batchMillis
    let next = first
    // no yield after a cut: the next iteration sleeps until its time (or cuts a missed batch now)
    return Effect.forever(
      Effect.suspend(() => {
        const time = next
        next += interval
        return Effect.andThen(BatchClock.sleepUntil(time), this.cut(time))
      }),
      { disableYield: true },
    )
  }

  /**
   * Cuts batch `t`: inputs allocate what they received, then the batch is queued. A tick cut late
   * (the job fiber kept the clock fiber from running) is submitted at its batch time, so the
   * scheduling delay shows the real lag; recovered batches are submitted now.
   */
  private cut(time: number, recovered = false): Effect.Effect<void> {
    // no generator: the inputs allocate one after another (most allocate nothing), then the
    // batch is submitted in one synchronous step (handed to the job fiber, or queued for it)
    return Effect.uninterruptible( // allocated records must reach the job fiber
      Effect.andThen(
        Effect.suspend(() => this.allocateFrom(time, 0)),
        Clock.clockWith((clock) => {
          const now = clock.currentTimeMillisUnsafe()
          const submissionTime = recovered ? now : Math.min(now, time)
          this.lastSubmitted = time
          this.inflight.add(time)
          this.queued++
          return Effect.andThen(
            this.publish({
              _tag: "BatchSubmitted",
              batchInfo: makeBatchInfo({ batchTime: time, streamIdToInputInfo: this.inputInfos(time), submissionTime }),
            }),
            Effect.sync(() => this.submit({ time, submissionTime })),
          )
        }),
      ),
    )
  }

  /**
   * Hands a cut batch to the job fiber: resumes it at once when it waits (a waiting fiber resumed
   * from a callback runs on the caller's turn, as a completed Deferred's waiters do: no scheduler
   * round trip per batch, which a queue's take costs), else queues the batch for its next take.
   */
  private submit(batch: PendingBatch): void {
    const resume = this.resumeJobs
    if (resume === undefined) {
      this.pending.push(batch)
      return
    }
    this.resumeJobs = undefined
    resume(Effect.succeed(batch))
  }

  /** The next cut batch; waits for the clock when none is queued. */
  private readonly take: Effect.Effect<PendingBatch> = Effect.suspend(() => {
    const batch = this.pending.shift()
    if (batch !== undefined) return Effect.succeed(batch)
    return Effect.callback<PendingBatch>((resume) => {
      this.resumeJobs = resume
      return Effect.sync(() => {
        if (this.resumeJobs === resume) this.resumeJobs = undefined
      })
    })
  })

  /** Has inputs `i`, `i + 1`, … allocate batch `time`, in order; those that allocate nothing cost no step. */
  private allocateFrom(time: number, i: number): Effect.Effect<void> {
    const inputs = this.graph.inputs
    for (; i < inputs.length; i++) {
      const allocating = inputs[i].allocate(time)
      if (allocating === Effect.void) continue
      const next = i + 1
      return next === inputs.length
        ? allocating
        : Effect.andThen(allocating, Effect.suspend(() => this.allocateFrom(time, next)))
    }
    return Effect.void
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
    // `queued` is 0 when no batch is waiting: the take then suspends the fiber, which counts as
    // a yield for the yield points. No yield of its own after each batch (a scheduler round trip
    // per batch): the yield points inside a batch give way every few milliseconds, and the take
    // suspends when nothing is queued.
    return Effect.forever(
      Effect.suspend(() => {
        const waits = this.queued === 0
        return Effect.flatMap(this.take, (batch) => {
          if (waits) markAwake()
          // A defect outside the outputs' own handling (a bug in the batch machinery, a throwing
          // listener) fails the context with the batch's time instead of silently ending this
          // fiber, which would leave every `awaitBatch` and `awaitTermination` waiting forever.
          return Effect.catchCause(
            this.runBatch(batch),
            (cause) =>
              Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : this.fail(
                new BatchJobError({
                  batchTime: batch.time,
                  outputId: -1,
                  cause: Cause.squash(cause),
                  origin: "defect",
                }),
              ),
          )
        })
      }),
      { disableYield: true },
    ) as Effect.Effect<never, never, NodeEnv>
  }

  private runBatch(batch: PendingBatch): Effect.Effect<void, never, NodeEnv> {
    const records = () => {
      let n = 0
      for (const info of Object.values(this.inputInfos(batch.time))) n += info.numRecords
      return n
    }
    return batchSpan(
      Effect.gen({ self: this }, function* () {
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
        yield* this.watchDelay(time, processingStartTime - submissionTime)
        for (const [id, output] of this.ordered) {
          // a yield point between outputs: stop and timeouts can interrupt a long batch here
          yield* yieldPoint
          const outcome = yield* this.runOutput(id, output, time, outputInfos)
          if (outcome._tag === "Stop") return yield* this.fail(outcome.error)
        }
        if (this.afterBatch !== undefined) {
          const written = yield* Effect.exit(
            this.afterBatch(
              time,
              (cause) =>
                this.onError(new BatchJobError({ batchTime: time, outputId: -1, cause, origin: "computation" })),
            ),
          )
          if (Exit.isFailure(written)) {
            return yield* this.fail(
              new BatchJobError({ batchTime: time, outputId: -1, cause: causeOf(written), origin: "computation" }),
            )
          }
        }
        for (const op of this.eventTimeOperators) {
          const event = op.progressEvent(time)
          if (event !== undefined) yield* this.publish(event)
        }
        const processingEndTime = yield* Clock.currentTimeMillis
        const completedInfo = info(processingEndTime)
        for (const input of this.graph.inputs) input.batchCompleted(completedInfo)
        yield* this.publish({ _tag: "BatchCompleted", batchInfo: completedInfo })
        this.graph.clearMetadata(time)
        if (this.onBatchDone !== undefined) yield* this.onBatchDone(time)
        this.inflight.delete(time)
        this.processing = false
        this.queued--
        this.completed(time)
      }),
      { batchTime: batch.time, records },
    ).pipe(Effect.onExit((exit) =>
      Effect.sync(() => {
        if (Exit.isFailure(exit)) {
          this.processing = false
          this.queued--
        }
      })
    ))
  }

  /**
   * Runs output `id` for batch `time` under its failure policy and timeout: computes its batch
   * and runs its job (each attempt bounded by the timeout), retrying on the policy's schedule;
   * publishes its started / completed events (the completed one with the failure reason).
   */
  private runOutput(
    id: number,
    output: OutputNode<any>,
    time: number,
    outputInfos: Array<OutputOperationInfo>,
  ): Effect.Effect<OutputOutcome, never, NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      const policy = output.settings.onFailure ?? this.settings.onFailure
      const timeoutMillis = output.settings.timeoutMillis ?? this.settings.outputTimeoutMillis
      let started: OutputOperationInfo | undefined
      const start = Effect.suspend(() => {
        if (started !== undefined) return Effect.void
        return Clock.clockWith((clock) => {
          started = {
            batchTime: time,
            id,
            name: output.label,
            startTime: clock.currentTimeMillisUnsafe(),
            endTime: undefined,
            failureReason: undefined,
          }
          return this.publish({ _tag: "OutputOperationStarted", outputOperationInfo: started })
        })
      })
      // `computed` tells a failure of the graph computation (outputId -1) from one of the job
      let computed = false
      const attempt: Effect.Effect<boolean, unknown, NodeEnv> = Effect.suspend(() => {
        computed = false
        return Effect.flatMap(output.generateJob(time), (job) => {
          computed = true
          if (job === undefined) return Effect.succeed(false)
          return Effect.andThen(
            start,
            Effect.as(outputSpan(job, { batchTime: time, outputId: id, name: output.label }), true),
          )
        })
      })
      const bounded: Effect.Effect<boolean, unknown, NodeEnv> = Number.isFinite(timeoutMillis)
        ? Effect.flatMap(
          Effect.timeoutOption(attempt, timeoutMillis),
          (o) =>
            o._tag === "Some" ? Effect.succeed(o.value) : Effect.fail(
              new OutputTimeoutError({ batchTime: time, outputId: id, output: output.label, timeoutMillis }),
            ),
        )
        : attempt
      const retry = typeof policy === "object" ? policy.retry : undefined
      let step = retry === undefined ? undefined : yield* Schedule.toStep(retry)
      let attempts = 0
      while (true) {
        attempts++
        const exit = yield* Effect.exit(bounded)
        if (Exit.isSuccess(exit)) {
          if (!exit.value) return done // no batch for this output at `time`
          const completed: OutputOperationInfo = { ...started!, endTime: yield* Clock.currentTimeMillis }
          outputInfos.push(completed)
          yield* this.publish({ _tag: "OutputOperationCompleted", outputOperationInfo: completed })
          return done
        }
        const cause = causeOf(exit)
        const origin = !computed
          ? "computation" as const
          : cause instanceof OutputTimeoutError
          ? "timeout" as const
          : exit.cause.reasons.some((r) => r._tag === "Fail")
          ? "output" as const
          : "defect" as const
        if (step !== undefined) {
          const now = yield* Clock.currentTimeMillis
          const next = yield* Effect.exit(step(now, cause))
          if (Exit.isSuccess(next)) {
            const delay = next.value[1]
            yield* Effect.logWarning(
              `Batch ${time} ms: output operation ${id} ("${output.label}") failed (attempt ${attempts}), retrying in ${
                Duration.toMillis(delay)
              } ms: ${describeCause(cause)}`,
            )
            yield* Effect.sleep(delay)
            continue
          }
          step = undefined
        }
        // give up: report the failure, then stop or skip
        yield* start
        const reason = attempts > 1 ? `${describeCause(cause)} (after ${attempts} attempts)` : describeCause(cause)
        const completed: OutputOperationInfo = {
          ...started!,
          endTime: yield* Clock.currentTimeMillis,
          failureReason: reason,
        }
        outputInfos.push(completed)
        yield* this.publish({ _tag: "OutputOperationCompleted", outputOperationInfo: completed })
        const then = typeof policy === "object" ? (policy.then ?? "stop") : policy
        if (then === "skip") {
          yield* Effect.logWarning(
            `Batch ${time} ms: output operation ${id} ("${output.label}") failed and is skipped: ${reason}`,
          )
          return done
        }
        return {
          _tag: "Stop",
          error: new BatchJobError({ batchTime: time, outputId: computed ? id : -1, cause, origin }),
        } as const
      }
    })
  }

  /** Counts batches whose scheduling delay grew; warns every `delayWarningBatches` of them in a row. */
  private watchDelay(time: number, delay: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      const last = this.lastDelay
      this.lastDelay = delay
      this.delayGrowing = last !== undefined && delay > last ? this.delayGrowing + 1 : 0
      const n = this.settings.delayWarningBatches
      if (this.delayGrowing === 0 || this.delayGrowing % n !== 0) return Effect.void
      return Effect.andThen(
        Effect.logWarning(
          `Scheduling delay has grown for ${this.delayGrowing} consecutive batches, to ${delay} ms at batch ${time} ms: batches take longer than the batch interval (${this.graph.batchMillis} ms)`,
        ),
        this.publish({
          _tag: "SchedulingDelayGrowing",
          batchTime: time,
          schedulingDelay: delay,
          batches: this.delayGrowing,
        }),
      )
    })
  }

  /**
   * Records received and not processed: stored but not yet in a batch, or in a batch cut and not
   * completed. Inputs that keep what they did not process (write-ahead log) count as `kept`.
   */
  unprocessed(): Unprocessed {
    let lost = 0
    let kept = 0
    for (const input of this.graph.inputs) {
      let n = input.storedRecords()
      for (const t of this.inflight) n += input.inputInfo.get(t)?.numRecords ?? 0
      if (input.keepsUnprocessed()) kept += n
      else lost += n
    }
    return { lost, kept }
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

  /**
   * Waits until the batch of `time` (or a later one) has completed, and what `afterBatch` left
   * running then (its checkpoint write) is done.
   */
  awaitBatch(time: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      const flush = this.flushAfterBatch ?? Effect.void
      if (this.lastCompleted >= time) return flush
      const deferred = Deferred.makeUnsafe<void>()
      this.waiters.push({ time, deferred })
      return Effect.andThen(Deferred.await(deferred), flush)
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
    return Effect.suspend(() =>
      Effect.andThen(
        this.jobFiber ? Fiber.interrupt(this.jobFiber) : Effect.void,
        this.flushAfterBatch ?? Effect.void,
      )
    )
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
