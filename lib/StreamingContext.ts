/**
 * `StreamingContext`: the entry point. It owns the batch interval, the DStream graph, the
 * sources, the batch clock and the job scheduler, and has Spark's lifecycle
 * INITIALIZED → ACTIVE → STOPPED: start twice only warns; start after stop fails; one active
 * context per process; nothing can be added to the graph after start; a start with no output
 * operation fails and leaves the context STOPPED.
 *
 * @example
 * ```ts
 * const program = Effect.gen(function* () {
 *   const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
 *   ssc.socketTextStream("localhost", 9999)
 *     .flatMap((line) => line.split(" "))
 *     .mapToPair((w) => [w, 1])
 *     .reduceByKey((a, b) => a + b)
 *     .print()
 *   yield* ssc.start
 *   yield* ssc.awaitTermination
 * })
 * Runtime.runMain(program) // lib/Runtime.ts: the platform layers and signal handling
 * ```
 *
 * The context is platform-free: sources and outputs that read or write files (`textFileStream`,
 * `saveAsTextFiles`, a checkpoint directory, write-ahead logs, spilled blocks) use the
 * `FileSystem` and `Path` of the program (`Runtime.layer` provides them), captured by `make`.
 *
 * @module
 */
import {
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  FileSystem,
  Layer,
  Option,
  Path,
  PubSub,
  Scope,
  Stream,
} from "effect"
import * as BatchClock from "./BatchClock.ts"
import * as Checkpoint from "./Checkpoint.ts"
import * as DStream from "./DStream.ts"
import {
  type BatchJobError,
  describeCause,
  IllegalStateError,
  UnprocessedRecordsError,
  ValidationError,
} from "./Errors.ts"
import { formatProgress, type StreamingEvent } from "./Listener.ts"
import {
  fromStream as receiverFromStream,
  type FromStreamOptions,
  type Receiver,
  type ReceiverSettings,
  SocketConnector,
} from "./Receiver.ts"
import * as Time from "./Time.ts"
import { FileInputNode, type FileStreamOptions } from "../receivers/file.ts"
import { Graph } from "./_internal/graph.ts"
import { QueueInputNode, type QueueSource, ReceiverInputNode } from "./_internal/inputs.ts"
import {
  DeadLetterNode,
  type FailedRecord,
  type FailurePolicy,
  InputNode,
  type Node,
  type NodeContext,
  type NodeEnv,
  OutputNode,
} from "./_internal/node.ts"
import { JobScheduler } from "./_internal/scheduler.ts"
import * as Checkpointing from "./_internal/checkpointing.ts"
import { type SocketOptions, socketReceiver, socketTextReceiver } from "../receivers/socket.ts"

/**
 * Spark's `StreamingContextState`.
 *
 * @since 0.1.0
 * @category models
 */
export type State = "INITIALIZED" | "ACTIVE" | "STOPPED"

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The batch interval: how often the clock cuts a batch. */
  readonly batchInterval: Duration.Input
  /** Log one line per completed batch (records, scheduling delay, processing time). */
  readonly logProgress?: boolean | undefined
  /** Graceful stop's bound (Spark's `spark.streaming.gracefulStopTimeout`); default 10 × batch. */
  readonly gracefulStopTimeout?: Duration.Input | undefined
  /** Block interval, rate limits, backpressure and storage for every receiver of the context. */
  readonly receivers?: ReceiverSettings | undefined
  /**
   * What a failed output operation (or a failed computation of its batch) does, unless the
   * output sets its own `onFailure`: `"stop"` (default) stops the context and fails
   * `awaitTermination`; `"skip"` reports the failure (`OutputOperationCompleted` and
   * `BatchCompleted` carry the reason) and goes on, the batch counting as done (checkpointed,
   * inputs told); `{ retry: schedule, then }` runs it again on the `Schedule`, then stops or
   * skips (`then`, default `"stop"`).
   */
  readonly onFailure?: DStream.FailurePolicy | undefined
  /**
   * Bound of every output operation's run per batch, unless the output sets its own `timeout`;
   * default 10 × the batch interval, at least 30 seconds. A run that takes longer is interrupted
   * and fails with an `OutputTimeoutError` under the failure policy.
   */
  readonly outputTimeout?: Duration.Input | undefined
  /**
   * `"deadLetter"`: a record that a per-record operator (map, flatMap, filter, mapToPair,
   * keyBy, mapValues, flatMapValues, reduceByKey, countByValue, …) throws on goes to
   * `ssc.deadLetters` with the operator and the cause, and the batch goes on without it.
   * `"fail"` (default): it fails the batch.
   */
  readonly recordErrors?: "fail" | "deadLetter" | undefined
  /**
   * Publish a `SchedulingDelayGrowing` event and log a warning when the scheduling delay has
   * grown for this many consecutive batches (default 10).
   */
  readonly schedulingDelayWarning?: number | undefined
}

/**
 * Why `start` fails: started twice after a stop or with another context active, an invalid
 * graph, or a checkpoint directory that cannot be used (unreadable, locked by another process).
 *
 * @since 0.1.0
 * @category errors
 */
export type StartError =
  | IllegalStateError
  | ValidationError
  | Checkpoint.CheckpointError
  | Checkpoint.CheckpointLockedError

/**
 * Why `awaitTermination` fails: the batch failure that stopped the context, or a graceful stop
 * that left records unprocessed.
 *
 * @since 0.1.0
 * @category errors
 */
export type TerminationError = BatchJobError | UnprocessedRecordsError

/**
 * Options of {@link StreamingContext.stop}.
 *
 * @since 0.1.0
 * @category models
 */
export interface StopOptions {
  /** Stop receivers first and process everything they received (default `false`). */
  readonly graceful?: boolean | undefined
  /** Bound for the graceful drain; default the context's `gracefulStopTimeout`. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * The streaming context.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamingContext<in R = never> {
  /** How often a batch is cut. */
  readonly batchInterval: Duration.Duration
  /** The current lifecycle state. */
  readonly state: Effect.Effect<State>
  /**
   * Starts the clock, receivers and jobs. Warns if already started; fails with
   * `IllegalStateError` after a stop or while another context is active, and with
   * `ValidationError` when the graph is invalid (the context is then STOPPED), with
   * `CheckpointLockedError` when another running context holds the checkpoint directory.
   */
  readonly start: Effect.Effect<void, StartError>
  /**
   * Waits until the context stops; fails with the `BatchJobError` that stopped it, or with the
   * `UnprocessedRecordsError` of a graceful stop that left received records unprocessed. If the
   * waiting fiber is interrupted (Ctrl-C under `Runtime.runMain`), the context is stopped gracefully.
   */
  readonly awaitTermination: Effect.Effect<void, BatchJobError | UnprocessedRecordsError>
  /** Like `awaitTermination`, but gives up after `timeout`: `true` if stopped, `false` on time-out. */
  readonly awaitTerminationOrTimeout: (
    timeout: Duration.Input,
  ) => Effect.Effect<boolean, BatchJobError | UnprocessedRecordsError>
  /**
   * Stops the context (idempotent). Graceful: receivers stop first, everything received is
   * processed. A graceful stop that hits its timeout (or is forced by a second SIGINT / SIGTERM
   * under `Runtime.runMain`) with received records unprocessed fails with an `UnprocessedRecordsError`
   * naming how many, unless a write-ahead log keeps them for the next run.
   */
  readonly stop: {
    (options?: StopOptions & { readonly graceful?: false | undefined }): Effect.Effect<void>
    (options: StopOptions): Effect.Effect<void, UnprocessedRecordsError>
  }
  /** Every stream remembers its batches for at least `duration` (Spark's `ssc.remember`). */
  readonly remember: (duration: Duration.Input) => void
  /** Sets the checkpoint directory (stateful operators require one). */
  readonly checkpoint: (directory: string) => void
  /** The checkpoint directory, if set. */
  readonly checkpointDirectory: string | undefined

  /** A stream of the given batches, for tests: one per batch (`oneAtATime`) or all at once. */
  readonly queueStream: <A>(
    queue: QueueSource<A>,
    options?: { readonly oneAtATime?: boolean; readonly defaultBatch?: ReadonlyArray<A> },
  ) => DStream.DStream<A, R>
  /** UTF-8 lines from a TCP server, reconnecting with backoff when it goes away. */
  readonly socketTextStream: (
    host: string,
    port: number,
    options?: SocketOptions & { readonly maxLineBytes?: number },
  ) => DStream.DStream<string, R>
  /** Records decoded from a TCP server's byte stream by `decode`. */
  readonly socketStream: <A>(
    host: string,
    port: number,
    decode: (bytes: Stream.Stream<Uint8Array, unknown>) => Stream.Stream<A, unknown>,
    options?: SocketOptions,
  ) => DStream.DStream<A, R>
  /** Lines of new files appearing in a directory (Spark's `textFileStream`). */
  readonly textFileStream: (directory: string, options?: FileStreamOptions) => DStream.DStream<string, R>
  /** Records decoded from new files appearing in a directory (Spark's `fileStream`). */
  readonly fileStream: <A>(
    directory: string,
    decode: (bytes: Uint8Array, path: string) => Iterable<A>,
    options?: FileStreamOptions,
  ) => DStream.DStream<A, R>
  /** A stream fed by a custom receiver. */
  readonly receiverStream: <A>(receiver: Receiver<A, R>) => DStream.DStream<A, R>
  /**
   * Any Effect `Stream` as an input: records arriving between ticks go to the next batch; a
   * failure is a receiver error and the stream runs again after the restart schedule; a finite
   * stream ends its input (see `Receiver.fromStream`).
   */
  readonly fromStream: <A, E>(stream: Stream.Stream<A, E, R>, options?: FromStreamOptions) => DStream.DStream<A, R>
  /** Union of many streams with the same slide. */
  readonly union: <A>(streams: ReadonlyArray<DStream.DStream<A>>) => DStream.DStream<A, R>
  /** A batch-level function over many streams' batches of the same time. */
  readonly transform: <B>(
    streams: ReadonlyArray<DStream.DStream<unknown>>,
    f: (batches: ReadonlyArray<ReadonlyArray<unknown>>, time: number) => DStream.BatchResult<B, R>,
  ) => DStream.DStream<B, R>

  /** Listener events from the moment the returned stream is subscribed (scoped subscription). */
  readonly events: Effect.Effect<Stream.Stream<StreamingEvent>, never, Scope.Scope>
  /** Calls `listener` for every event, in order, on the publishing fiber. */
  readonly addStreamingListener: (listener: (event: StreamingEvent) => void | Effect.Effect<void>) => void
  /**
   * Waits until the batch of `time` (or a later one) has completed, with its checkpoint (if one
   * was taken) written, or the context stopped.
   */
  readonly awaitBatch: (time: number) => Effect.Effect<void>
  /**
   * The records per-record operators failed on, per batch, with the operator and the cause
   * (needs `recordErrors: "deadLetter"`; throws an `IllegalStateError` otherwise). Outputs reading
   * it run after the batch's other outputs.
   */
  readonly deadLetters: DStream.DStream<FailedRecord, R>
}

/**
 * The `StreamingContext` service key.
 *
 * @since 0.1.0
 * @category services
 */
export const StreamingContext: Context.Service<StreamingContext, StreamingContext> = Context.Service<StreamingContext>(
  "effect-dstream/StreamingContext",
)

let active: { readonly ctx: ContextImpl; readonly startedAt: string } | undefined
/** Set when a stop left received records unprocessed (Runtime.runMain then exits with status 1). */
let unprocessedReported = false

class ContextImpl implements StreamingContext, NodeContext {
  private lifecycleState: State = "INITIALIZED"
  readonly batchMillis: number
  readonly batchInterval: Duration.Duration
  readonly graph: Graph
  private checkpointPath: string | undefined
  private readonly listeners: Array<(event: StreamingEvent) => void | Effect.Effect<void>> = []
  private readonly stopFinalizers: Array<() => Effect.Effect<unknown>> = []
  private readonly terminated = Deferred.makeUnsafe<void, BatchJobError | UnprocessedRecordsError>()
  /** The batch failure that stopped the context; `awaitTermination` fails with it after the stop. */
  private batchFailure: BatchJobError | undefined = undefined
  /** Completed by a forced stop (second signal): the graceful drain gives up at once. */
  private readonly forced = Deferred.makeUnsafe<void>()
  private scope: Scope.Closeable | undefined
  private scheduler: JobScheduler | undefined
  private stopping: Effect.Effect<void, UnprocessedRecordsError> | undefined
  private readonly gracefulTimeoutMillis: number
  private readonly outputTimeoutMillis: number
  private readonly delayWarningBatches: number
  readonly onFailure: FailurePolicy
  readonly recordErrors: "fail" | "deadLetter"
  private deadLetterNode: DeadLetterNode | undefined
  /** Dead letters per batch time: count and first, for the log. */
  private readonly deadLetterCounts = new Map<number, { count: number; first: FailedRecord }>()
  /** The checkpoint `getOrCreate` recovers from. */
  recovered: Checkpoint.Checkpoint | undefined = undefined
  /** The checkpoint store `getOrCreate` read from, used again at start (one store, one place). */
  checkpointStore: Checkpoint.CheckpointStoreShape | undefined = undefined
  readonly receiverSettings: ReceiverSettings | undefined

  constructor(
    options: Options,
    private readonly pubsub: PubSub.PubSub<StreamingEvent>,
    /** The services captured by `make<R>`: every job, transform and receiver runs with them. */
    private readonly services: Context.Context<never> = Context.empty(),
  ) {
    this.batchMillis = Time.millis(options.batchInterval, "Batch interval")
    this.batchInterval = Duration.millis(this.batchMillis)
    this.graph = new Graph(this.batchMillis)
    this.gracefulTimeoutMillis = options.gracefulStopTimeout === undefined
      ? 10 * this.batchMillis
      : Time.millis(options.gracefulStopTimeout, "Graceful stop timeout")
    this.receiverSettings = options.receivers
    this.outputTimeoutMillis = options.outputTimeout === undefined
      ? Math.max(10 * this.batchMillis, 30_000)
      : Time.millis(options.outputTimeout, "Output timeout")
    const warnAfter = options.schedulingDelayWarning ?? 10
    if (!Number.isSafeInteger(warnAfter) || warnAfter < 1) {
      throw new ValidationError({
        message: `Scheduling delay warning must be a positive whole number of batches: ${JSON.stringify(warnAfter)}`,
      })
    }
    this.delayWarningBatches = warnAfter
    this.onFailure = DStream.validatePolicy(options.onFailure ?? "stop", "onFailure")
    const recordErrors = options.recordErrors ?? "fail"
    if (recordErrors !== "fail" && recordErrors !== "deadLetter") {
      throw new ValidationError({
        message: `recordErrors must be "fail" or "deadLetter": ${JSON.stringify(recordErrors)}`,
      })
    }
    this.recordErrors = recordErrors
    if (options.logProgress) {
      this.listeners.push((e) => e._tag === "BatchCompleted" ? Effect.logInfo(formatProgress(e.batchInfo)) : undefined)
    }
  }

  /**
   * Without FileSystem and Path, throws a `ValidationError` naming what needs them: the nodes
   * that read or write files, and a checkpoint directory without a `CheckpointStore` service.
   */
  private requireNoFiles(callerHasStore: boolean): void {
    const users = this.graph.nodes.flatMap((n) => n.fileSystemUser === undefined ? [] : [n.fileSystemUser])
    if (
      this.checkpointPath !== undefined && this.checkpointStore === undefined && !callerHasStore &&
      Option.isNone(Context.getOption(this.services, Checkpoint.CheckpointStore))
    ) {
      users.unshift(`checkpoint("${this.checkpointPath}")`)
    }
    const named = [...new Set(users)]
    if (named.length === 0) return
    throw new ValidationError({
      message: `Cannot start StreamingContext: ${named.join(", ")} ${
        named.length === 1 ? "reads or writes" : "read or write"
      } files, and the program provides no FileSystem and Path: ${provideHint}`,
    })
  }

  /** Without a SocketConnector, throws a `ValidationError` naming the socket sources. */
  private requireNoSockets(): void {
    const named = [...new Set(this.graph.nodes.flatMap((n) => n.socketUser === undefined ? [] : [n.socketUser]))]
    if (named.length === 0) return
    throw new ValidationError({
      message: `Cannot start StreamingContext: ${named.join(", ")} ${
        named.length === 1 ? "opens" : "open"
      } TCP connections, and the program provides no Receiver.SocketConnector: ${provideHint}`,
    })
  }

  /** The FileSystem and Path of this context's jobs: captured by `make`, else the caller's. */
  platform = (): Effect.Effect<Context.Context<NodeEnv> | undefined> => platformOf(this.services)

  // ---- NodeContext ----
  lifecycle = (): State => this.lifecycleState
  register = (node: Node<any>): void => {
    this.graph.nodes.push(node)
    if (node instanceof InputNode) {
      node.streamId = this.graph.inputs.length
      this.graph.inputs.push(node)
    } else if (node instanceof OutputNode) {
      this.graph.outputs.push(node)
    }
  }
  checkpointDir = (): string | undefined => this.checkpointPath
  onStop = (finalizer: () => Effect.Effect<unknown>): void => {
    this.stopFinalizers.push(finalizer)
  }
  deadLetter = (t: number, failed: FailedRecord): void => {
    const seen = this.deadLetterCounts.get(t)
    if (seen === undefined) this.deadLetterCounts.set(t, { count: 1, first: failed })
    else seen.count++
    this.deadLetterNode?.add(t, failed)
  }

  /** After each batch: log the records it sent to the dead letters. */
  private deadLettersDone(t: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.deadLetterNode?.forget(t)
      const seen = this.deadLetterCounts.get(t)
      if (seen === undefined) return Effect.void
      this.deadLetterCounts.delete(t)
      const where = this.deadLetterNode === undefined
        ? "were dropped (nothing reads ssc.deadLetters)"
        : "went to ssc.deadLetters"
      return Effect.logWarning(
        `Batch ${t} ms: ${seen.count} record(s) failed in operators and ${where}; first in "${seen.first.operator}": ${
          describeCause(seen.first.cause)
        }`,
      )
    })
  }

  get deadLetters(): DStream.DStream<FailedRecord> {
    if (this.recordErrors !== "deadLetter") {
      throw new IllegalStateError({
        message: `Cannot read ssc.deadLetters: make the context with recordErrors: "deadLetter"`,
      })
    }
    if (this.deadLetterNode === undefined) this.deadLetterNode = new DeadLetterNode(this)
    return DStream.fromNode(this.deadLetterNode)
  }

  get checkpointDirectory(): string | undefined {
    return this.checkpointPath
  }

  // ---- lifecycle ----
  get state(): Effect.Effect<State> {
    return Effect.sync(() => this.lifecycleState)
  }

  get start(): Effect.Effect<
    void,
    IllegalStateError | ValidationError | Checkpoint.CheckpointError | Checkpoint.CheckpointLockedError
  > {
    return Effect.gen({ self: this }, function* () {
      if (this.lifecycleState === "ACTIVE") {
        return yield* Effect.logWarning("StreamingContext has already been started")
      }
      if (this.lifecycleState === "STOPPED") {
        return yield* new IllegalStateError({ message: "Cannot start StreamingContext: it has already been stopped" })
      }
      if (active !== undefined) {
        return yield* new IllegalStateError({
          message:
            `Cannot start StreamingContext: only one may be active in a process, and the running one was started at ${active.startedAt}`,
        })
      }
      const now = yield* Clock.currentTimeMillis
      const first = BatchClock.firstBatchTime(now, this.batchMillis)
      // A context recovered by getOrCreate keeps the zero time of the run it continues.
      const zero = this.recovered !== undefined
        ? Checkpointing.payloadOf(this.recovered, this.checkpointPath ?? "").zeroTime
        : first - this.batchMillis
      const platform = yield* platformOf(this.services)
      const callerHasStore = Option.isSome(yield* Effect.serviceOption(Checkpoint.CheckpointStore))
      const hasConnector = Option.isSome(Context.getOption(this.services, SocketConnector)) ||
        Option.isSome(yield* Effect.serviceOption(SocketConnector))
      try {
        if (platform === undefined) this.requireNoFiles(callerHasStore)
        if (!hasConnector) this.requireNoSockets()
        this.graph.start(zero)
      } catch (error) {
        yield* Effect.logError("Error starting the context, marking it as stopped")
        this.lifecycleState = "STOPPED"
        if (error instanceof ValidationError || error instanceof IllegalStateError) return yield* error
        throw error
      }
      const scope = yield* Scope.make()
      this.scope = scope
      // Without a platform no node reads or writes files (requireNoFiles checked): the jobs get
      // the captured services only, and user code asking for FileSystem dies naming the service.
      const env: Context.Context<NodeEnv> = platform === undefined
        ? this.services as Context.Context<NodeEnv>
        : Context.merge(this.services, platform)
      // ---- checkpointing (stateful streams): open the store, restore a recovered snapshot ----
      const checkpoints = yield* Checkpointing.prepare(
        this.graph,
        this.checkpointPath,
        this.recovered,
        this.checkpointStore,
      ).pipe(
        Scope.provide(scope), // the checkpoint directory's lock is released when the context's scope closes
        Effect.provideContext(env),
        Effect.tapError(() =>
          Effect.andThen(
            Effect.logError("Error starting the context, marking it as stopped"),
            Effect.andThen(Effect.sync(() => (this.lifecycleState = "STOPPED")), Scope.close(scope, Exit.void)),
          )
        ),
      )
      this.recovered = undefined // restored: its data (possibly the whole state) can go
      const scheduler = new JobScheduler(this.graph, this.publish, (error) => this.failWith(error), {
        onFailure: this.onFailure,
        outputTimeoutMillis: this.outputTimeoutMillis,
        delayWarningBatches: this.delayWarningBatches,
      })
      this.scheduler = scheduler
      scheduler.afterBatch = checkpoints?.afterBatch
      scheduler.flushAfterBatch = checkpoints?.flush
      if (this.recordErrors === "deadLetter") scheduler.onBatchDone = (t) => this.deadLettersDone(t)
      this.lifecycleState = "ACTIVE"
      active = { ctx: this, startedAt: new Date(now).toISOString() }
      const rt = { publish: this.publish, startTime: now }
      yield* Effect.provideContext(
        Effect.gen({ self: this }, function* () {
          for (const input of this.graph.inputs) {
            yield* Scope.provide(input.start(rt), scope)
          }
          yield* scheduler.start(first, scope, checkpoints?.recoverTimes(first))
        }),
        env,
      ).pipe(Effect.orDie)
      yield* this.publish({ _tag: "StreamingStarted", time: now })
    })
  }

  /**
   * Hands `event` to the listeners in registration order, then to `events` subscribers. Listeners
   * that return nothing are called in one synchronous step (no generator, no step per listener);
   * one that returns an Effect is run before the next listener is called.
   */
  private readonly publish = (event: StreamingEvent): Effect.Effect<void> =>
    Effect.suspend(() => this.deliver(event, 0))

  private deliver(event: StreamingEvent, from: number): Effect.Effect<void> {
    const listeners = this.listeners
    for (let i = from; i < listeners.length; i++) {
      // Spark's listener bus logs a listener's exception and goes on; so do we
      let result: void | Effect.Effect<void>
      try {
        result = listeners[i](event)
      } catch (e) {
        return Effect.andThen(Effect.logWarning("Streaming listener failed", e), this.deliverFrom(event, i + 1))
      }
      if (Effect.isEffect(result)) {
        return Effect.andThen(
          Effect.catchCause(result, (cause) => Effect.logWarning("Streaming listener failed", cause)),
          this.deliverFrom(event, i + 1),
        )
      }
    }
    // the PubSub is unbounded: a publish never waits nor fails, so the synchronous one is the same
    PubSub.publishUnsafe(this.pubsub, event)
    return Effect.void
  }

  private deliverFrom(event: StreamingEvent, from: number): Effect.Effect<void> {
    return Effect.suspend(() => this.deliver(event, from))
  }

  private failWith(error: BatchJobError): Effect.Effect<void> {
    return Effect.gen({ self: this }, function* () {
      yield* Effect.logError(error.message)
      // awaitTermination fails once the context is fully stopped (another may start right away)
      this.batchFailure ??= error
      yield* Effect.forkDetach(this.stop())
    })
  }

  get awaitTermination(): Effect.Effect<void, BatchJobError | UnprocessedRecordsError> {
    return Deferred.await(this.terminated).pipe(
      Effect.onInterrupt(() => this.stop({ graceful: true })),
    )
  }

  awaitTerminationOrTimeout = (
    timeout: Duration.Input,
  ): Effect.Effect<boolean, BatchJobError | UnprocessedRecordsError> =>
    Deferred.await(this.terminated).pipe(
      Effect.as(true),
      Effect.timeoutOption(timeout),
      Effect.map((o) => o._tag === "Some"),
      Effect.onInterrupt(() => this.stop({ graceful: true })),
    )

  /** Makes a running graceful stop give up at once (a second signal under `Runtime.runMain`). */
  forceStop(): void {
    Deferred.doneUnsafe(this.forced, Exit.void)
  }

  /** What a person at the terminal is told on the first signal: a graceful stop, its bound, how to force it. */
  get stopNotice(): string {
    return `Stopping gracefully: processing what was received (up to ${
      Time.format(this.gracefulTimeoutMillis)
    }); press Ctrl-C again to stop at once`
  }

  stop(options?: StopOptions & { readonly graceful?: false | undefined }): Effect.Effect<void>
  stop(options: StopOptions): Effect.Effect<void, UnprocessedRecordsError>
  stop(options?: StopOptions): Effect.Effect<void, UnprocessedRecordsError> {
    const stopping = this.stopOnce(options)
    // Only a graceful stop reports unprocessed records (a stop already under way may be one).
    return options?.graceful === true ? stopping : Effect.ignore(stopping)
  }

  private stopOnce(options: StopOptions | undefined): Effect.Effect<void, UnprocessedRecordsError> {
    return Effect.suspend((): Effect.Effect<void, UnprocessedRecordsError> => {
      if (this.lifecycleState === "INITIALIZED") {
        this.lifecycleState = "STOPPED"
        return Effect.andThen(
          Effect.logWarning("StreamingContext has not been started yet"),
          Effect.andThen(this.runStopFinalizers(), Deferred.succeed(this.terminated, undefined)),
        )
      }
      if (this.stopping !== undefined) return this.stopping
      if (this.lifecycleState === "STOPPED") return Effect.logWarning("StreamingContext has already been stopped")
      const run = this.doStop(options?.graceful ?? false, options?.timeout)
      const once = Effect.runSync(Effect.cached(run))
      this.stopping = once
      return once
    })
  }

  private doStop(
    graceful: boolean,
    timeout: Duration.Input | undefined,
  ): Effect.Effect<void, UnprocessedRecordsError> {
    return Effect.gen({ self: this }, function* () {
      const scheduler = this.scheduler!
      for (const input of this.graph.inputs) yield* input.stopReceiving()
      let cutShort: "timeout" | "forced" | undefined
      const bound = timeout === undefined ? this.gracefulTimeoutMillis : Time.millis(timeout, "Stop timeout")
      if (graceful) {
        const drained = yield* Effect.raceFirst(
          Effect.map(Effect.timeoutOption(scheduler.drain(), bound), (o) => o._tag === "Some" ? undefined : "timeout"),
          Effect.as(Deferred.await(this.forced), "forced" as const),
        )
        cutShort = drained
      }
      yield* scheduler.stopClock()
      yield* scheduler.stopJobs()
      const unprocessed = scheduler.unprocessed()
      yield* Scope.close(this.scope!, Exit.void)
      this.lifecycleState = "STOPPED"
      if (active?.ctx === this) active = undefined
      scheduler.releaseWaiters()
      const now = yield* Clock.currentTimeMillis
      yield* this.publish({ _tag: "StreamingStopped", time: now })
      yield* this.runStopFinalizers()
      if (unprocessed.kept > 0) {
        yield* Effect.logWarning(
          this.checkpointPath === undefined
            // without a checkpoint directory there is no write-ahead log: only Kafka inputs keep records
            ? `Stopped with ${unprocessed.kept} received records not processed; their Kafka offsets are not committed, so the next run reads them again`
            : `Stopped with ${unprocessed.kept} received records not processed; the write-ahead log (or, for Kafka inputs, the uncommitted offsets) keeps them and the next run from checkpoint "${this.checkpointPath}" processes them`,
        )
      }
      if (unprocessed.lost > 0 && cutShort !== undefined) {
        const error = new UnprocessedRecordsError({
          records: unprocessed.lost,
          reason: cutShort,
          timeoutMillis: cutShort === "timeout" ? bound : undefined,
        })
        yield* Effect.logError(error.message)
        unprocessedReported = true
        yield* Deferred.fail(this.terminated, this.batchFailure ?? error)
        return yield* error
      }
      if (unprocessed.lost > 0) {
        yield* Effect.logWarning(`Stopped without processing ${unprocessed.lost} received records`)
      } else if (cutShort === "timeout") {
        yield* Effect.logWarning(`Graceful stop timed out after ${Time.format(bound)}; no received record was lost`)
      }
      yield* this.batchFailure !== undefined
        ? Deferred.fail(this.terminated, this.batchFailure)
        : Deferred.succeed(this.terminated, undefined)
    }).pipe(Effect.uninterruptible)
  }

  private runStopFinalizers(): Effect.Effect<void> {
    return Effect.forEach(this.stopFinalizers.splice(0), (f) => Effect.ignore(f()), { discard: true })
  }

  remember = (duration: Duration.Input): void => {
    this.graph.rememberMillis = Time.millis(duration, "Remember duration")
  }

  checkpoint = (directory: string): void => {
    if (this.lifecycleState !== "INITIALIZED") {
      throw new IllegalStateError({ message: "Cannot set the checkpoint directory after the context has started" })
    }
    this.checkpointPath = directory
  }

  // ---- sources ----
  queueStream = <A>(
    queue: QueueSource<A>,
    options?: { readonly oneAtATime?: boolean; readonly defaultBatch?: ReadonlyArray<A> },
  ): DStream.DStream<A> =>
    DStream.fromNode(new QueueInputNode<A>(this, queue, options?.oneAtATime ?? true, options?.defaultBatch ?? []))

  socketTextStream = (
    host: string,
    port: number,
    options?: SocketOptions & { readonly maxLineBytes?: number },
  ): DStream.DStream<string> =>
    this.socketInput(
      this.receiverStream(socketTextReceiver(host, port, options)),
      `socketTextStream("${host}", ${port})`,
    )

  socketStream = <A>(
    host: string,
    port: number,
    decode: (bytes: Stream.Stream<Uint8Array, unknown>) => Stream.Stream<A, unknown>,
    options?: SocketOptions,
  ): DStream.DStream<A> =>
    this.socketInput(
      this.receiverStream(socketReceiver(host, port, decode, options)),
      `socketStream("${host}", ${port})`,
    )

  private socketInput<A>(stream: DStream.DStream<A>, operator: string): DStream.DStream<A> {
    stream.node.socketUser = operator
    return stream
  }

  textFileStream = (directory: string, options?: FileStreamOptions): DStream.DStream<string> =>
    DStream.fromNode(new FileInputNode<string>(this, directory, "text", options))

  fileStream = <A>(
    directory: string,
    decode: (bytes: Uint8Array, path: string) => Iterable<A>,
    options?: FileStreamOptions,
  ): DStream.DStream<A> => DStream.fromNode(new FileInputNode<A>(this, directory, decode, options))

  receiverStream = <A>(receiver: Receiver<A>): DStream.DStream<A> =>
    DStream.fromNode(new ReceiverInputNode<A>(this, receiver))

  fromStream = <A, E>(stream: Stream.Stream<A, E>, options?: FromStreamOptions): DStream.DStream<A> =>
    this.receiverStream(receiverFromStream(stream, options))

  union = <A>(streams: ReadonlyArray<DStream.DStream<A>>): DStream.DStream<A> => DStream.unionAll(streams)

  transform = <B>(
    streams: ReadonlyArray<DStream.DStream<unknown>>,
    f: (batches: ReadonlyArray<ReadonlyArray<unknown>>, time: number) => DStream.BatchResult<B>,
  ): DStream.DStream<B> => DStream.transformAll(streams, f)

  // ---- events ----
  get events(): Effect.Effect<Stream.Stream<StreamingEvent>, never, Scope.Scope> {
    return Effect.map(PubSub.subscribe(this.pubsub), (sub) => Stream.fromSubscription(sub))
  }

  addStreamingListener = (listener: (event: StreamingEvent) => void | Effect.Effect<void>): void => {
    this.listeners.push(listener)
  }

  awaitBatch = (time: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (this.lifecycleState === "STOPPED") return Effect.void
      if (this.scheduler === undefined) {
        return Effect.fail(new IllegalStateError({ message: "Cannot await a batch: the context has not started" }))
          .pipe(Effect.orDie)
      }
      return this.scheduler.awaitBatch(time)
    })
}

/**
 * The FileSystem and Path of sources and outputs: those `make` captured, else the caller's;
 * `undefined` when the program provides none (a pipeline without files needs none).
 */
const platformOf = (captured: Context.Context<never>): Effect.Effect<Context.Context<NodeEnv> | undefined> =>
  Effect.gen(function* () {
    const fs = Context.getOption(captured, FileSystem.FileSystem)
    const path = Context.getOption(captured, Path.Path)
    const fsService = Option.isSome(fs) ? fs : yield* Effect.serviceOption(FileSystem.FileSystem)
    const pathService = Option.isSome(path) ? path : yield* Effect.serviceOption(Path.Path)
    if (Option.isNone(fsService) || Option.isNone(pathService)) return undefined
    return Context.make(FileSystem.FileSystem, fsService.value).pipe(Context.add(Path.Path, pathService.value))
  })

/**
 * The FileSystem and Path `ssc`'s jobs use (captured by `make`, else the caller's), `undefined`
 * when the program provides none.
 * @internal
 */
export const platformOfContext = (ssc: StreamingContext): Effect.Effect<Context.Context<NodeEnv> | undefined> =>
  ssc instanceof ContextImpl ? ssc.platform() : platformOf(Context.empty())

/** How a program provides the platform, for the errors that ask for it. */
const provideHint =
  "run the program with Runtime.runMain, or provide Runtime.layer (or another platform's layers) to it"

/**
 * Creates a streaming context with the given batch interval. Nothing runs until `start`.
 *
 * @example
 * ```ts
 * const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <R = never>(options: Options): Effect.Effect<StreamingContext<R>, ValidationError, R> =>
  Effect.gen(function* () {
    const pubsub = yield* PubSub.unbounded<StreamingEvent>()
    const services = yield* Effect.context<R>()
    const ssc: StreamingContext = yield* Effect.try({
      try: () => new ContextImpl(options, pubsub, services as Context.Context<never>),
      catch: (error) => error instanceof ValidationError ? error : new ValidationError({ message: String(error) }),
    })
    // `R` exists in types only: the services captured above are provided to every job at start.
    return ssc as StreamingContext<R>
  })

/**
 * A layer providing a `StreamingContext`; the context is stopped when the layer is released.
 *
 * @example
 * ```ts
 * program.pipe(Effect.provide(StreamingContext.layer({ batchInterval: "1 second" })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<StreamingContext, ValidationError> =>
  Layer.effect(StreamingContext)(
    Effect.acquireRelease(make(options), (ssc) => ssc.stop()),
  )

/**
 * What a stop signal does under `Runtime.runMain`: the first (`count` 1) logs the stop notice of
 * the active context (which stops gracefully when its awaiting fiber is interrupted); a later
 * one forces the stop, the graceful drain giving up at once.
 * @internal
 */
export const onStopSignal = (count: number): void => {
  const ctx = active?.ctx
  if (ctx === undefined) return
  if (count === 1) Effect.runFork(Effect.logWarning(ctx.stopNotice))
  else {
    Effect.runFork(Effect.logWarning("Stopping at once"))
    ctx.forceStop()
  }
}

/**
 * `true` once a stop left received records unprocessed (its `UnprocessedRecordsError` logged):
 * `Runtime.runMain` then exits with status 1.
 * @internal
 */
export const unprocessedRecordsReported = (): boolean => unprocessedReported

/**
 * The currently active context, if any (Spark's `StreamingContext.getActive`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const getActive: Effect.Effect<StreamingContext | undefined> = Effect.sync(() => active?.ctx)

// ---- recovery (getOrCreate) ----------------------------------------------------------------------

/**
 * Options of {@link getOrCreate}: the context's options (used when there is no checkpoint) and
 * `allowFreshStart`.
 *
 * @since 0.1.0
 * @category models
 */
export interface GetOrCreateOptions extends Partial<Options> {
  /**
   * Start from nothing even when the checkpoint directory held checkpoints before and lost them
   * (default `false`: that fails with `CheckpointMissingError`).
   */
  readonly allowFreshStart?: boolean | undefined
}

/**
 * Spark's `StreamingContext.getOrCreate`: if `directory` holds a checkpoint, builds a context
 * that continues from it — its state restored at start, the batches pending at the crash and
 * those missed while the process was down run first — otherwise a fresh one. Either way
 * `create` builds the pipeline on it (closures are not checkpointed; the graph is rebuilt from
 * code), and the context checkpoints into `directory`. The batch interval comes from the
 * checkpoint when there is one, else from `options` (default 1 second). A corrupt newest
 * checkpoint falls back to the previous one; when none is readable it fails with a
 * `CheckpointError`. When `directory` has no checkpoint but held some before (a marker beside
 * it survives its deletion), it fails with `CheckpointMissingError` instead of silently
 * starting from nothing, unless `allowFreshStart` is set.
 *
 * @example
 * ```ts
 * const ssc = yield* StreamingContext.getOrCreate("checkpoint", (ssc) => {
 *   ssc.socketTextStream("localhost", 9999).flatMap((l) => l.split(" ")).mapToPair((w) => [w, 1])
 *     .updateStateByKey((values, state) => Option.some(values.reduce((a, b) => a + b, Option.getOrElse(state, () => 0))))
 *     .print()
 * })
 * yield* ssc.start
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const getOrCreate = <R = never, E = never>(
  directory: string,
  create: (ssc: StreamingContext<R>) => void | Effect.Effect<void, E, R>,
  options?: GetOrCreateOptions,
): Effect.Effect<
  StreamingContext<R>,
  E | Checkpoint.CheckpointError | Checkpoint.CheckpointMissingError | ValidationError,
  R
> =>
  Effect.gen(function* () {
    const givenStore = yield* Effect.serviceOption(Checkpoint.CheckpointStore)
    const platform = yield* platformOf(Context.empty())
    // a CheckpointStore service holds the checkpoints; without one they are files in `directory`
    const latest = yield* (Option.isSome(givenStore)
      ? Checkpoint.readLatest(givenStore.value)
      : platform !== undefined
      ? Effect.provideContext(Checkpointing.readForRecovery(directory, options?.allowFreshStart ?? false), platform)
      : Effect.fail(
        new ValidationError({
          message:
            `Cannot recover from checkpoint directory "${directory}": getOrCreate reads it from the file system, and the program provides no FileSystem and Path: ${provideHint}`,
        }),
      ))
    const { allowFreshStart: _, ...contextOptions } = options ?? {}
    let batchInterval: Duration.Input = options?.batchInterval ?? "1 second"
    if (latest._tag === "Some") {
      const payload = yield* Effect.try({
        try: () => Checkpointing.payloadOf(latest.value, directory),
        catch: (e) => e as Checkpoint.CheckpointError,
      })
      batchInterval = payload.batchMillis
    }
    const ssc = yield* make<R>({ ...contextOptions, batchInterval })
    const impl = ssc as StreamingContext as ContextImpl
    if (latest._tag === "Some") impl.recovered = latest.value
    if (givenStore._tag === "Some") impl.checkpointStore = givenStore.value
    ssc.checkpoint(directory)
    const built = create(ssc)
    if (Effect.isEffect(built)) yield* built
    return ssc
  })
